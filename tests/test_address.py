"""Table-driven tests of the ListenStream= address grammar (systemd.socket(5))."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockact import AddressError, parse_address

S, D, Q = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET
GOOD = [
    ("8080", socket.AF_INET6, S, ("::", 8080, 0, 0), True),
    ("0", socket.AF_INET6, S, ("::", 0, 0, 0), True),
    ("127.0.0.1:8080", socket.AF_INET, S, ("127.0.0.1", 8080), False),
    ("0.0.0.0:1", socket.AF_INET, S, ("0.0.0.0", 1), False),
    ("[::1]:8080", socket.AF_INET6, S, ("::1", 8080, 0, 0), False),
    ("[::1%1]:80", socket.AF_INET6, S, ("::1", 80, 0, 1), False),
    ("[::]:65535", socket.AF_INET6, S, ("::", 65535, 0, 0), False),
    ("/run/app.sock", socket.AF_UNIX, S, "/run/app.sock", False),
    ("@app", socket.AF_UNIX, S, b"\0app", False),
    ("udp:127.0.0.1:53", socket.AF_INET, D, ("127.0.0.1", 53), False),
    ("udp:5353", socket.AF_INET6, D, ("::", 5353, 0, 0), True),
    ("UDP:/run/x", socket.AF_UNIX, D, "/run/x", False),
    ("seqpacket:@x", socket.AF_UNIX, Q, b"\0x", False),
    ("tcp:[::1]:1", socket.AF_INET6, S, ("::1", 1, 0, 0), False),
]


@pytest.mark.parametrize(("text", "family", "type_", "sockaddr", "dual"), GOOD)
def test_parse(text: str, family: int, type_: int, sockaddr: object, dual: bool) -> None:
    addr = parse_address(text)
    assert (addr.family, addr.type, addr.sockaddr, addr.dual_stack) == (family, type_, sockaddr, dual)


BAD = [
    ("", "empty"),
    (" 80", "white space"),
    ("65536", "out of range"),
    ("localhost:80", "not an IPv4 address"),
    ("::1:80", "brackets"),
    ("[::1]", "[ADDR]:PORT"),
    ("[zz]:80", "not an IPv6 address"),
    ("1.2.3.4:http", "not a number"),
    ("seqpacket:80", "unix only"),
    ("@", "abstract name"),
    ("/" + "x" * 200, "longer than"),
    ("[::1%nosuchif0]:1", "no network interface"),
    ("relative/path", "expected a port"),
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_refused_with_text_and_forms(text: str, why: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    message = str(info.value)
    assert repr(text) in message and why in message and "Accepted forms" in message


def test_not_a_string() -> None:
    with pytest.raises(AddressError, match="must be a string"):
        parse_address(8080)  # type: ignore[arg-type]


def test_matches() -> None:
    a = parse_address("8080")
    assert a.matches(socket.AF_INET6, S, ("::", 8080, 0, 0))
    assert a.matches(socket.AF_INET, S, ("0.0.0.0", 8080))
    assert not a.matches(socket.AF_INET, S, ("127.0.0.1", 8080))
    assert not a.matches(socket.AF_INET6, D, ("::", 8080, 0, 0))
    assert not parse_address("127.0.0.1:0").matches(socket.AF_INET, S, ("127.0.0.1", 4242))
    assert parse_address("@x").matches(socket.AF_UNIX, S, b"\0x")
    assert parse_address("/a").matches(socket.AF_UNIX, S, "/a")
    assert not parse_address("/a").matches(socket.AF_INET, S, ("1.2.3.4", 1))


@given(st.text(max_size=40))
def test_total(text: str) -> None:
    """Any text parses or raises AddressError; never another exception."""
    try:
        addr = parse_address(text)
    except AddressError:
        return
    assert addr.text == text
    assert addr.family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


@given(st.ip_addresses(v=4), st.integers(0, 65535))
def test_ipv4_round_trip(ip: object, port: int) -> None:
    assert parse_address(f"{ip}:{port}").sockaddr == (str(ip), port)


@given(st.ip_addresses(v=6), st.integers(0, 65535))
def test_ipv6_round_trip(ip: object, port: int) -> None:
    assert parse_address(f"[{ip}]:{port}").sockaddr[:2] == (str(ip), port)
