"""Table-driven tests of the pure LISTEN_*/WATCHDOG_* parsers (sd_listen_fds(3), sd_watchdog_enabled(3))."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockact import ActivationError, UsageError
from sockact._cparse import CParseError, parse_pid, safe_atoi
from sockact._env import Inherited, Repeat, parse_listen_env, parse_watchdog_env, successor_env, trampoline

PID = 4242
OK = "ok"

# (environ, expected fds, expected names) or (environ, errno)
CASES = [
    ({}, (), ()),
    ({"LISTEN_FDS": "1"}, (), ()),  # no LISTEN_PID: not for us
    ({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, (), ()),  # someone else's
    ({"LISTEN_PID": str(PID)}, (), ()),  # no LISTEN_FDS
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1"}, (3,), ("unknown",)),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "3"}, (3, 4, 5), ("unknown",) * 3),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}, (3, 4), ("a", "b")),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:"}, (3, 4), ("a", "")),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "::"}, (3, 4, 5), ("", "", "")),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": ""}, (3,), ("",)),
    ({"LISTEN_PID": " " + str(PID), "LISTEN_FDS": " 1"}, (3,), ("unknown",)),  # libsystemd skips leading space
    ({"LISTEN_PID": "+" + str(PID), "LISTEN_FDS": "+1"}, (3,), ("unknown",)),
    ({"LISTEN_PID": hex(PID), "LISTEN_FDS": "0x2"}, (3, 4), ("unknown",) * 2),  # base 0, like strtol
    ({"LISTEN_PID": "0" + oct(PID)[2:], "LISTEN_FDS": "0b10"}, (3, 4), ("unknown",) * 2),
    ({"LISTEN_PID": "0o" + oct(PID)[2:], "LISTEN_FDS": "0o2"}, (3, 4), ("unknown",) * 2),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "010"}, tuple(range(3, 11)), ("unknown",) * 8),  # octal 8
    ({"LISTEN_PID": str(PID), "LISTEN_FDNAMES": "a:b"}, (), ()),  # names alone mean nothing
    ({"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, errno.EINVAL),
    ({"LISTEN_PID": "", "LISTEN_FDS": "1"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID) + " ", "LISTEN_FDS": "1"}, errno.EINVAL),  # trailing space refused
    ({"LISTEN_PID": "0", "LISTEN_FDS": "1"}, errno.ERANGE),
    ({"LISTEN_PID": "-1", "LISTEN_FDS": "1"}, errno.ERANGE),
    ({"LISTEN_PID": "4294967296", "LISTEN_FDS": "1"}, errno.ERANGE),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "0"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "-1"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": ""}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "x"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1.0"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2147483645"}, errno.EINVAL),  # > INT_MAX - 3
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "99999999999"}, errno.ERANGE),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"}, errno.EINVAL),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": ":"}, errno.EINVAL),
    # libsystemd's splitting: a backslash takes the next character literally; a lone trailing one is
    # refused before LISTEN_PID is even read (both found by fuzzing against libsystemd)
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a\\:b"}, (3,), ("a:b",)),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a\\\\:b"}, (3, 4), ("a\\", "b")),
    ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "\\x41'q'"}, (3,), ("x41'q'",)),
    ({"LISTEN_FDNAMES": "a\\"}, errno.EINVAL),
    ({"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "\\"}, errno.EINVAL),
    (
        {"LISTEN_PID": str(PID), "LISTEN_FDS": "2000000000"},
        Repeat.counting(3, 2000000000),
        Repeat("unknown", 2000000000),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c[0]))
def test_parse_listen_env(case: tuple) -> None:
    environ, *expected = case
    if len(expected) == 1:
        with pytest.raises(ActivationError) as info:
            parse_listen_env(environ, PID)
        assert info.value.errno == expected[0]
        variable = next(v for v in ("LISTEN_FDNAMES", "LISTEN_FDS", "LISTEN_PID") if v in str(info.value))
        assert variable in environ  # the message names the variable at fault
    else:
        result = parse_listen_env(environ, PID)
        assert (result.fds, result.names) == tuple(expected)
        assert result.named == ("LISTEN_FDNAMES" in environ and bool(result.fds))


def test_pidfdid_foreign_means_not_ours() -> None:
    env = {"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_PIDFDID": "77"}
    assert parse_listen_env(env, PID, pidfd_id=78) == Inherited()
    assert parse_listen_env(env, PID, pidfd_id=77).fds == (3,)
    assert parse_listen_env(env, PID, pidfd_id=None).fds == (3,)  # kernel without pidfd ids: ignored
    with pytest.raises(ActivationError):
        parse_listen_env({**env, "LISTEN_PIDFDID": "zz"}, PID, pidfd_id=77)


@given(
    st.dictionaries(
        st.sampled_from(["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"]), st.text(max_size=12)
    ),
    st.integers(1, 2**31 - 1),
)
def test_parser_total(environ: dict[str, str], pid: int) -> None:
    """Any environment gives a result or an ActivationError, never another exception."""
    try:
        result = parse_listen_env(environ, pid)
    except ActivationError as exc:
        assert exc.errno in (errno.EINVAL, errno.ERANGE)
        return
    assert len(result.fds) == len(result.names)
    assert result.fds == tuple(range(3, 3 + len(result.fds)))


@given(st.integers(1, 2**31 - 1), st.integers(1, 500), st.lists(st.text("abc-_.", min_size=0, max_size=5), max_size=6))
def test_round_trip_with_successor_env(pid: int, _n: int, names: list[str]) -> None:
    """successor_env's output, with LISTEN_PID set as the trampoline would, parses back to the names."""
    names = [n or "x" for n in names]
    env, pid_vars = successor_env({"PATH": "/bin", "LISTEN_PIDFDID": "9"}, names, notify_socket="@n")
    env.update({var: str(pid) for var in pid_vars})
    result = parse_listen_env(env, pid, pidfd_id=1)
    assert list(result.names) == names
    assert "LISTEN_PIDFDID" not in env and env["NOTIFY_SOCKET"] == "@n"


def test_successor_env_drops_stale_and_sets_pid_vars() -> None:
    base = {
        "LISTEN_PID": "1",
        "LISTEN_FDS": "9",
        "LISTEN_FDNAMES": "z",
        "NOTIFY_SOCKET": "/old",
        "WATCHDOG_USEC": "1000",
        "WATCHDOG_PID": "1",
        "HOME": "/root",
    }
    env, pid_vars = successor_env(base, ["http", "admin"], notify_socket="@recv", upstream_notify_socket="/run/sd")
    assert env == {
        "LISTEN_FDS": "2",
        "LISTEN_FDNAMES": "http:admin",
        "NOTIFY_SOCKET": "@recv",
        "SOCKACT_UPSTREAM_NOTIFY_SOCKET": "/run/sd",
        "WATCHDOG_USEC": "1000",
        "HOME": "/root",
    }
    assert pid_vars == ("LISTEN_PID", "WATCHDOG_PID")
    assert (
        trampoline(pid_vars) == 'LISTEN_PID=$$; export LISTEN_PID; WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"'
    )
    with pytest.raises(UsageError, match="FileDescriptorName"):
        successor_env({}, ["a:b"], notify_socket=None)


WATCHDOG = [
    ({}, None),
    ({"WATCHDOG_USEC": "200000"}, 200000),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(PID)}, 200000),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, errno.EINVAL),
    ({"WATCHDOG_USEC": "abc"}, errno.EINVAL),
    ({"WATCHDOG_USEC": "18446744073709551615"}, errno.EINVAL),
    ({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"}, errno.EINVAL),
]


@pytest.mark.parametrize(("environ", "expected"), WATCHDOG)
def test_parse_watchdog_env(environ: dict[str, str], expected: int | None) -> None:
    if expected is not None and expected < 100:
        with pytest.raises(ActivationError) as info:
            parse_watchdog_env(environ, PID)
        assert info.value.errno == expected
    else:
        assert parse_watchdog_env(environ, PID) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12), (" 12", 12), ("0x1f", 31), ("017", 15), ("0b11", 3), ("0O17", 15), ("+5", 5), ("\t7", 7)],
)
def test_c_integers(text: str, value: int) -> None:
    assert safe_atoi(text) == value


@pytest.mark.parametrize("text", ["", " ", "1 ", "0x", "08", "1e3", "0b2", "--1", "١"])
def test_c_integers_refused(text: str) -> None:
    with pytest.raises(CParseError):
        safe_atoi(text)
    with pytest.raises(CParseError):
        parse_pid(text)
