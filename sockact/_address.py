"""systemd.socket(5) address grammar ⇄ socket family, type and sockaddr. Pure.

Accepted forms (``ListenStream=`` unless prefixed):

=====================  =====================================================
``8080``               every address, IPv6 dual-stack (``[::]:8080``)
``127.0.0.1:8080``     one IPv4 address
``[::1]:8080``         one IPv6 address (``[fe80::1%eth0]:8080`` with a scope)
``/run/app.sock``      a unix socket file
``@name``              a Linux abstract unix socket
``udp:ADDR``           the same, as ``ListenDatagram=``
``seqpacket:ADDR``     the same, as ``ListenSequentialPacket=`` (unix only)
``tcp:ADDR``           explicit ``ListenStream=``
=====================  =====================================================
"""

from __future__ import annotations

import ipaddress
import socket

from ._errors import AddressError
from ._record import Record

__all__ = ["Address", "TYPE_PREFIXES", "parse_address", "kind_name", "type_name"]

TYPE_PREFIXES = _TYPES = {
    "tcp": socket.SOCK_STREAM,
    "stream": socket.SOCK_STREAM,
    "udp": socket.SOCK_DGRAM,
    "datagram": socket.SOCK_DGRAM,
    "seqpacket": socket.SOCK_SEQPACKET,
}
ACCEPTED_FORMS = (
    "8080, 127.0.0.1:8080, [::1]:8080, /run/app.sock, @abstract-name; "
    "prefix udp: or seqpacket: for ListenDatagram=/ListenSequentialPacket= (systemd.socket(5))"
)
_UNIX_PATH_MAX = 108  # sizeof(sun_path)


class Address(Record):
    """A parsed listening address.

    ``sockaddr`` is what ``socket.bind()`` takes: ``(host, port)`` for IPv4, ``(host, port, 0,
    scope)`` for IPv6, a ``str`` path, or ``bytes`` (leading NUL) for an abstract name.
    ``dual_stack`` is True for a bare port: bound as ``[::]`` with ``IPV6_V6ONLY`` off.
    """

    text: str
    family: int
    type: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int] | str | bytes
    dual_stack: bool = False

    @property
    def port(self) -> int | None:
        """The TCP/UDP port, or None for a unix socket."""
        return self.sockaddr[1] if isinstance(self.sockaddr, tuple) else None

    def matches(self, family: int, type_: int, sockname: object) -> bool:
        """Whether a socket bound to ``sockname`` (as ``getsockname()`` returns it) is this address.

        A bare port matches any wildcard socket on that port, IPv6 or IPv4 (systemd falls back to
        ``0.0.0.0`` where IPv6 is off). A port of 0 matches nothing: an inherited socket always has a
        real port, and a successor finds its port-0 sockets by name.
        """
        if type_ != self.type:
            return False
        if self.family == socket.AF_UNIX:
            if family != socket.AF_UNIX:
                return False
            name = sockname.encode() if isinstance(sockname, str) else sockname
            want = self.sockaddr.encode() if isinstance(self.sockaddr, str) else self.sockaddr
            return name == want
        if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(sockname, tuple):
            return False
        assert isinstance(self.sockaddr, tuple)
        host, port = str(sockname[0]), int(sockname[1])
        want_port = self.sockaddr[1]
        if want_port != port:
            return False
        if self.dual_stack:
            return host in ("::", "0.0.0.0")
        if family != self.family:
            return False
        return bool(ipaddress.ip_address(host.split("%")[0]) == ipaddress.ip_address(self.sockaddr[0]))


def type_name(type_: int) -> str:
    """``stream``/``datagram``/``seqpacket`` for a socket type."""
    names: dict[int, str] = {
        socket.SOCK_STREAM: "stream",
        socket.SOCK_DGRAM: "datagram",
        socket.SOCK_SEQPACKET: "seqpacket",
    }
    return names.get(type_, f"type {type_}")


def kind_name(family: int, type_: int) -> str:
    """A human name such as ``inet6 stream`` or ``unix datagram``."""
    families: dict[int, str] = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}
    fam = families.get(family, f"family {family}")
    return f"{fam} {type_name(type_)}"


def _bad(text: str, why: str) -> AddressError:
    return AddressError(f"invalid address {text!r}: {why}. Accepted forms: {ACCEPTED_FORMS}.")


def _port(text: str, port_text: str) -> int:
    if not port_text.isascii() or not port_text.isdigit():
        raise _bad(text, f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise _bad(text, f"port {port} is out of range 0-65535")
    return port


def parse_address(text: str) -> Address:
    """Parse one address; raises AddressError naming the text and the accepted forms."""
    if not isinstance(text, str):
        raise AddressError(f"address must be a string, not {type(text).__name__}: {text!r}")
    type_ = socket.SOCK_STREAM
    rest = text
    prefix, sep, tail = text.partition(":")
    if sep and prefix.lower() in _TYPES and not prefix.isdigit():
        type_, rest = _TYPES[prefix.lower()], tail
    if not rest or rest != rest.strip():
        raise _bad(text, "empty or surrounded by white space")
    if rest[0] in "/@":
        if "\0" in rest:
            raise _bad(text, "NUL byte in a unix socket name")
        if rest[0] == "/":
            if len(rest.encode()) >= _UNIX_PATH_MAX:
                raise _bad(text, f"unix socket path longer than {_UNIX_PATH_MAX - 1} bytes")
            return Address(text, socket.AF_UNIX, type_, rest)
        if len(rest.encode()) > _UNIX_PATH_MAX - 1 or len(rest) == 1:
            raise _bad(text, "abstract name empty or too long")
        return Address(text, socket.AF_UNIX, type_, b"\0" + rest[1:].encode())
    if type_ == socket.SOCK_SEQPACKET:
        raise _bad(text, "seqpacket sockets are unix only (path or @name)")
    if rest.isascii() and rest.isdigit():
        return Address(text, socket.AF_INET6, type_, ("::", _port(text, rest), 0, 0), dual_stack=True)
    if rest.startswith("["):
        host, bracket, port_part = rest[1:].partition("]")
        if not bracket or not port_part.startswith(":"):
            raise _bad(text, "an IPv6 address needs the form [ADDR]:PORT")
        addr, _, scope = host.partition("%")
        try:
            ip = ipaddress.IPv6Address(addr)
        except ValueError as exc:
            raise _bad(text, f"{addr!r} is not an IPv6 address") from exc
        scope_id = 0
        if scope:
            if scope.isdigit():
                scope_id = int(scope)
            else:
                try:
                    scope_id = socket.if_nametoindex(scope)
                except OSError as exc:
                    raise _bad(text, f"no network interface named {scope!r}") from exc
        return Address(text, socket.AF_INET6, type_, (str(ip), _port(text, port_part[1:]), 0, scope_id))
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        raise _bad(text, "expected a port, ADDR:PORT, [ADDR]:PORT, a /path or an @name")
    try:
        ip4 = ipaddress.IPv4Address(host)
    except ValueError as exc:
        hint = "IPv6 addresses go in brackets: [ADDR]:PORT" if ":" in host else f"{host!r} is not an IPv4 address"
        raise _bad(text, hint) from exc
    return Address(text, socket.AF_INET, type_, (str(ip4), _port(text, port_text)))
