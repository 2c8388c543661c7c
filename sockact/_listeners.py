"""``get_listeners()``: the sockets an app serves on, inherited when handed over, bound otherwise."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType

from ._address import Address, kind_name, parse_address
from ._bind import bind_all, unix_ids
from ._cparse import CParseError, parse_pid
from ._env import (
    UPSTREAM_NOTIFY_VAR,
    Inherited,
    Repeat,
    check_fdname,
    fdstore_max,
    parse_listen_fds,
    parse_listen_names,
)
from ._errors import ActivationError, AddressError, SockactError
from ._fds import FdInfo, claim_fds, close_fd, describe_fd, inspect_fd, own_pidfd_id, unset_listen_vars
from ._notify import fdstore as store_fds
from ._procenv import hide_notify_socket as hide_private
from ._procenv import process_environ

__all__ = ["Listeners", "get_listeners", "read_inherited", "DEFAULT_BACKLOG"]

DEFAULT_BACKLOG = 4096  # systemd's Backlog= default is SOMAXCONN (4096 on Linux ≥ 5.4)
_LISTED = 8  # inherited fds an error message lists before "… and N more"

log = logging.getLogger("sockact.listeners")


def read_inherited(
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    *,
    unset_environment: bool = True,
    names: bool = True,
) -> Inherited:
    """Parse LISTEN_* from ``environ`` (default ``os.environ``), claim the fds, optionally unset the variables.

    Like sd_listen_fds(3), the variables are removed even when they were not meant for this process
    or were invalid; unlike python-systemd, they are removed from ``os.environ`` itself, so a child
    started later with ``env=dict(os.environ)`` does not inherit them. ``names=False`` is
    sd_listen_fds(3), which never reads LISTEN_FDNAMES (every name is then ``unknown``).
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    try:
        fds = parse_listen_fds(env, os.getpid() if pid is None else pid, pidfd_id=_pidfd_id(env), names=names)
        claim_fds(fds)  # libsystemd's order: the fds first, then the names
        unnamed = Inherited(fds, Repeat("unknown", len(fds)))
        inherited = Inherited(fds, *parse_listen_names(env, fds)) if names else unnamed
    finally:
        if unset_environment:
            unset_listen_vars(env)
    return inherited


def _pidfd_id(env: Mapping[str, str]) -> int | None:
    return own_pidfd_id() if "LISTEN_PIDFDID" in env else None


def _unique_keys(names: Sequence[str]) -> list[str]:
    """Mapping keys for inherited names: the first keeps its name, later duplicates get ``name:2``, ``name:3``.

    ``:`` can never occur in a real FileDescriptorName=, so a key never collides with one.
    """
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}:{seen[name]}")
    return keys


class Listeners(Mapping[str, socket.socket]):
    """The app's listening sockets by name; a context manager that closes them.

    ``inherited`` and ``bound`` name which came from the service manager (or a predecessor) and
    which this process bound itself. ``unclaimed`` maps inherited fds that nothing asked for to their
    names; call :meth:`close_unclaimed` once the app is ready (tableflip's rule), or let :meth:`close`
    do it. ``fdnames`` gives each key's FileDescriptorName, which a successor receives.
    """

    def __init__(
        self,
        sockets: dict[str, socket.socket],
        *,
        inherited: frozenset[str] = frozenset(),
        unclaimed: dict[int, str] | None = None,
        fdnames: dict[str, str] | None = None,
    ) -> None:
        self._sockets = dict(sockets)
        self.inherited = inherited
        self.bound = frozenset(self._sockets) - inherited
        self.unclaimed: dict[int, str] = dict(unclaimed or {})
        self.fdnames = {key: (fdnames or {}).get(key, key) for key in self._sockets}
        self._closed = False

    def __getitem__(self, name: str) -> socket.socket:
        return self._sockets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sockets)

    def __len__(self) -> int:
        return len(self._sockets)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{name}={'inherited' if name in self.inherited else 'bound'}:{_sockname(sock)}"
            for name, sock in self._sockets.items()
        )
        return f"<Listeners {parts}>"

    def origins(self) -> list[tuple[str, str, bool]]:
        """Each socket as (name, address, inherited), in order: what the start line and STATUS= show.

        The address is the socket's own (``127.0.0.1:8000``, ``[::1]:80``, ``/run/app.sock``,
        ``@abstract``; ``?`` if it cannot be read)."""
        return [(name, _sockname(sock), name in self.inherited) for name, sock in self._sockets.items()]

    def passed_on(self) -> tuple[list[int], list[str]]:
        """The fds and FileDescriptorName=s to start a successor (or a child) with, in order."""
        return [sock.fileno() for sock in self._sockets.values()], [self.fdnames[key] for key in self._sockets]

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close_unclaimed(self) -> None:
        """Close the inherited fds nobody claimed. Idempotent."""
        while self.unclaimed:
            fd, _ = self.unclaimed.popitem()
            close_fd(fd)

    def close(self) -> None:
        """Close every socket and unclaimed fd. Idempotent. Unix socket files are left in place.

        Closing (never ``shutdown()``) matters: a successor holding copies of these sockets keeps
        serving on them.
        """
        if self._closed:
            return
        self._closed = True
        self.close_unclaimed()
        for sock in self._sockets.values():
            sock.close()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _bound_name(sock: socket.socket) -> object:
    """The address ``sock`` is bound to, or None when it cannot be read."""
    try:
        return sock.getsockname()
    except OSError:
        return None


def _sockname(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, bytes):  # an abstract unix name (Linux returns paths as str)
        return "@" + name[1:].decode(errors="replace") if name[:1] == b"\0" else name.decode(errors="replace")
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(name) or "?"  # an unnamed unix socket


def _parse_spec(spec: Mapping[str, str]) -> list[tuple[str, Address]]:
    items = []
    for name, text in spec.items():
        items.append((check_fdname(name), parse_address(text)))  # a successor gets it as FileDescriptorName=
    return items


def get_listeners(
    spec: Mapping[str, str] | None = None,
    *,
    backlog: int = DEFAULT_BACKLOG,
    require_activation: bool = False,
    unix_mode: int | None = None,
    unix_owner: str | int | None = None,
    unix_group: str | int | None = None,
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    fdstore: bool | None = None,
    bind_missing: bool = False,
    hide_notify_socket: bool = False,
) -> Listeners:
    """Return the app's listening sockets: inherited through LISTEN_FDS where possible, bound otherwise.

    ``spec`` maps a name to an address in systemd.socket(5) ``ListenStream=`` syntax (see
    ``sockact._address``). Each name is taken from the inherited fds by FileDescriptorName; failing
    that, by bound address and type (for ``unknown`` or unit-default names); what nothing matches is
    bound here, all or nothing. ``spec=None`` returns everything inherited, keyed by name (duplicate
    names become ``name:2``, ``name:3``, …). LISTEN_* are removed from ``environ`` (default
    ``os.environ``); ``pid`` defaults to ``os.getpid()`` — both are seams for tests.

    ``fdstore``: hand the sockets bound here to the service manager's fd store (FDSTORE=1 with
    FDNAME=<name>, sd_pid_notify_with_fds(3)), so that after an automatic restart they come back by
    name in LISTEN_FDS and connections wait in the backlog instead of being refused. None (default)
    does so when ``$FDSTORE`` is a positive number — systemd ≥ 254 sets it from
    FileDescriptorStoreMax=; on older systemd put the same ``Environment=FDSTORE=<n>`` in the unit.

    Unix sockets bound here get ``unix_mode``, ``unix_owner`` and ``unix_group`` (names or numbers;
    systemd.socket(5)'s SocketMode=, SocketUser=, SocketGroup=) before they listen. Inherited
    sockets are left as their manager made them.

    Under activation (LISTEN_FDS for this process), a spec entry that matches nothing inherited
    while inherited sockets go unclaimed is a unit/app mismatch (a FileDescriptorName= or an address
    that differs): an ActivationError listing both sides, unless ``bind_missing=True`` says to bind
    such entries here anyway. Entries left over once every inherited socket is claimed are bound,
    with a WARNING on the ``sockact.listeners`` logger; so are they in a successor of sockact's
    upgrader (SOCKACT_UPSTREAM_NOTIFY_SOCKET set), whose fds are its predecessor's listeners, not a
    unit's: a new version may add and drop listeners.

    NOTIFY_SOCKET stays in ``os.environ`` (python-systemd and sdnotify read it there);
    ``hide_notify_socket=True`` moves it into sockact's private store so that processes the app
    starts cannot speak to the manager as the service (sockact's own notify functions still can).

    Raises:
        ActivationError: LISTEN_* malformed; an fd not open, not a socket, or of the wrong kind for
            its address; a connected socket (Accept=yes); an inherited name that is no valid
            FileDescriptorName= (``spec=None``); a spec entry that matches no inherited socket while
            some go unclaimed (see above); ``require_activation=True`` and a name was not inherited.
        AddressError: an address could not be parsed or bound (nothing is left bound).
        NotifyError: the fd store was asked for and refused the sockets.
    """
    items = _parse_spec(spec) if spec is not None else []
    foreign = _foreign_listen_pid(os.environ if environ is None else environ, os.getpid() if pid is None else pid)
    inherited = read_inherited(environ, pid)
    infos, names, socks = _inspect(inherited)
    try:  # until the Listeners own them, the inherited fds are only borrowed: detached on every error
        if spec is None:
            claimed, fdnames = _claim_all(inherited, infos, names)
            to_bind: list[tuple[str, Address]] = []
        else:
            fdnames = {name: name for name, _ in items}
            claimed, to_bind = _match(items, inherited, infos, names, socks)
            if to_bind and require_activation:
                missing = ", ".join(f"{n}={a.text}" for n, a in to_bind)
                got = ", ".join(f"fd {f} {names[f]!r}" for f in inherited.fds)
                raise ActivationError(
                    f"require_activation=True but {missing} was not handed over; inherited: "
                    f"{got or 'nothing (LISTEN_FDS unset or not for us)'}. Add a matching ListenStream= with "
                    "FileDescriptorName= to the .socket unit, or allow binding."
                )
            if to_bind and inherited.fds:
                from_predecessor = UPSTREAM_NOTIFY_VAR in (process_environ() if environ is None else environ)
                _leftovers(to_bind, inherited, infos, names, claimed, bind_missing or from_predecessor)
        ids = unix_ids(unix_owner, unix_group)
        sockets = _open(
            to_bind, claimed, infos, socks, names, foreign, backlog=backlog, unix_mode=unix_mode, unix_ids=ids
        )
    except BaseException:
        for sock in socks.values():
            sock.detach()
        raise
    if foreign and to_bind:  # bound, but most likely not what the unit meant
        log.warning("%s", foreign)
    ordered = {name: sockets[name] for name in (fdnames if spec is not None else claimed)}
    taken = set(claimed.values())  # a set: LISTEN_FDS may pass thousands of fds
    unclaimed = {fd: names[fd] for fd in inherited.fds if fd not in taken}
    for fd in unclaimed:
        if fd in socks:
            socks[fd].detach()  # an unclaimed fd stays a bare fd (close_unclaimed closes it)
    listeners = Listeners(ordered, inherited=frozenset(claimed), unclaimed=unclaimed, fdnames=fdnames)
    if environ is None:  # sockact's hand-over variable never reaches the app's children; NOTIFY_SOCKET on request
        hide_private(notify_socket=hide_notify_socket)
    env = process_environ() if environ is None else environ
    if listeners.bound and (fdstore if fdstore is not None else fdstore_max(env) > 0):
        with _closing_on_error(listeners):
            for name in listeners.bound:
                store_fds([listeners[name]], name=listeners.fdnames[name], environ=env)
    return listeners


def _inspect(inherited: Inherited) -> tuple[dict[int, FdInfo], dict[int, str], dict[int, socket.socket]]:
    """Each inherited fd's kind and family (its address only when a match needs it), name and, for a
    socket, the socket object that adopts it (borrowed: the caller detaches what it does not keep); a
    connected socket (Accept=yes) is refused before any matching."""
    infos = {}
    socks: dict[int, socket.socket] = {}
    names = dict(zip(inherited.fds, inherited.names))
    try:
        for number in inherited.fds:
            try:
                info, sock = inspect_fd(number)
            except OSError as exc:  # claim_fds checked they are open; this is a race
                raise ActivationError(f"inherited fd {number} could not be inspected: {exc}") from exc
            infos[number] = info
            if sock is not None:
                socks[number] = sock
                if not info.listening and info.type != socket.SOCK_DGRAM:
                    _check_listenable(number, info, names[number], sock)
    except BaseException:
        for sock in socks.values():
            sock.detach()
        raise
    return infos, names, socks


def _claim_all(
    inherited: Inherited, infos: Mapping[int, FdInfo], names: Mapping[int, str]
) -> tuple[dict[str, int], dict[str, str]]:
    """``spec=None``: every inherited socket, by name (repeated names become ``name:2`` …)."""
    claimed, fdnames = {}, {}
    if not _valid_names(inherited.names):  # else one name is invalid: find it and say which
        for number in inherited.fds:
            if infos[number].kind == "socket":
                _check_inherited_name(number, names[number])
    for key, number in zip(_unique_keys(inherited.names), inherited.fds):
        if infos[number].kind == "socket":
            claimed[key] = number
            fdnames[key] = names[number]
    return claimed, fdnames


def _valid_names(names: Sequence[str]) -> bool:
    """Whether every name is a valid FileDescriptorName= (see ``check_fdname``), in one pass over
    them all rather than a check per fd: names split from LISTEN_FDNAMES hold no ``:``."""
    joined = "".join(names)
    return (
        all(0 < len(name) <= 255 for name in names) and ":" not in joined and joined.isascii() and joined.isprintable()
    )


def _match(
    items: Sequence[tuple[str, Address]],
    inherited: Inherited,
    infos: Mapping[int, FdInfo],
    names: Mapping[int, str],
    socks: Mapping[int, socket.socket],
) -> tuple[dict[str, int], list[tuple[str, Address]]]:
    """Each spec entry's inherited fd — by FileDescriptorName=, else by address among the fds whose
    name no entry asks for — and the entries nothing matched (to bind)."""
    claimed: dict[str, int] = {}
    to_bind = []
    wanted = {name for name, _ in items}
    for name, addr in items:
        fd: int | None = next((f for f in inherited.fds if names[f] == name and f not in claimed.values()), None)
        if fd is None:
            fd = next(
                (
                    f
                    for f in inherited.fds
                    if f not in claimed.values()
                    and names[f] not in wanted
                    and infos[f].kind == "socket"
                    and addr.matches(infos[f].family, infos[f].type, _bound_name(socks[f]))
                ),
                None,
            )
        if fd is None:
            to_bind.append((name, addr))
            continue
        _check_kind(name, addr, infos[fd], names[fd])
        claimed[name] = fd
    return claimed, to_bind


def _leftovers(
    to_bind: Sequence[tuple[str, Address]],
    inherited: Inherited,
    infos: Mapping[int, FdInfo],
    names: Mapping[int, str],
    claimed: Mapping[str, int],
    allowed: bool,
) -> None:
    """Under activation, entries nothing inherited matched: a unit/app mismatch while inherited sockets
    go unclaimed (ActivationError, unless ``allowed``: ``bind_missing=True``, or a successor of sockact's
    upgrader, whose new version may add and drop listeners); else bound here with a WARNING."""
    spare = [f for f in inherited.fds if f not in claimed.values() and infos[f].kind == "socket"]
    if spare and not allowed:
        raise _mismatch(to_bind, inherited, names, claimed, spare)
    log.warning(
        "%s: not handed over (LISTEN_FDS=%d), bound by this process%s",
        ", ".join(f"{n}={a.text}" for n, a in to_bind),
        len(inherited.fds),
        f"; unclaimed: {_inherited_list(spare, names)}" if spare else "",
    )


def _open(
    to_bind: Sequence[tuple[str, Address]],
    claimed: Mapping[str, int],
    infos: Mapping[int, FdInfo],
    socks: Mapping[int, socket.socket],
    names: Mapping[int, str],
    foreign: str | None,
    *,
    backlog: int,
    unix_mode: int | None,
    unix_ids: tuple[int, int],
) -> dict[str, socket.socket]:
    """Bind what is to be bound and adopt what was claimed, all or nothing: on any error the sockets
    bound here are closed and the inherited fds are left open, as they came (the caller detaches
    their socket objects)."""
    sockets: dict[str, socket.socket] = {}
    try:
        try:
            sockets.update(bind_all(to_bind, backlog=backlog, unix_mode=unix_mode, unix_ids=unix_ids))
        except AddressError as exc:
            if foreign:  # the "in use" is most likely the socket unit holding the address for us
                raise AddressError(f"{exc} ({foreign})", errno=exc.errno) from exc
            raise
        for name, fd in claimed.items():
            sock = sockets[name] = socks[fd]
            if infos[fd].type != socket.SOCK_DGRAM and not infos[fd].listening:
                try:
                    sock.listen(backlog)
                except OSError as exc:
                    raise ActivationError(
                        f"inherited fd {fd} named {names[fd]!r} cannot listen ({exc.strerror}); the .socket unit "
                        "must hand over a listening (Accept=no) socket",
                        errno=exc.errno,
                    ) from exc
    except BaseException:
        for name, sock in sockets.items():
            if name not in claimed:
                sock.close()
        raise
    return sockets


@contextlib.contextmanager
def _closing_on_error(listeners: Listeners) -> Iterator[None]:
    try:
        yield
    except BaseException:
        listeners.close()
        raise


def _check_kind(name: str, addr: Address, info: FdInfo, fdname: str) -> None:
    if info.kind != "socket":
        raise ActivationError(
            f"fd {info.fd} named {fdname!r} is a {info.kind}, not a socket, so it cannot serve {name}={addr.text!r}; "
            "fd-store files and FIFOs are available through sockact.daemon.listen_fds()"
        )
    inet = (socket.AF_INET, socket.AF_INET6)
    family_ok = info.family == addr.family or (info.family in inet and addr.family in inet)
    if not family_ok or info.type != addr.type:
        raise ActivationError(
            f"fd {info.fd} named {fdname!r} is an {kind_name(info.family, info.type)} socket but {name}={addr.text!r} "
            f"needs an {kind_name(addr.family, addr.type)} socket; fix ListenStream=/ListenDatagram= in the .socket "
            "unit or the address in the program"
        )


def _foreign_listen_pid(env: Mapping[str, str], pid: int) -> str | None:
    """Why LISTEN_FDS was ignored when LISTEN_PID is a valid pid that is not ``pid``, else None."""
    pid_text, fds_text = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if pid_text is None or fds_text is None:
        return None
    try:
        listen_pid = parse_pid(pid_text)
    except CParseError:
        return None  # read_inherited reports a malformed LISTEN_PID itself
    if listen_pid == pid:
        return None
    return (
        f"LISTEN_PID={pid_text} names another process (this is {pid}), so LISTEN_FDS={fds_text} was not for "
        "this one and its fds were ignored (sd_listen_fds(3)); if systemd started this program, something in "
        "between forked (a shell script without exec, a wrapper): exec the program directly"
    )


def _check_inherited_name(fd: int, name: str) -> None:
    try:
        check_fdname(name)
    except SockactError:
        raise ActivationError(
            f"LISTEN_FDNAMES gives fd {fd} the name {name[:40]!r}{'…' if len(name) > 40 else ''} ({len(name)} "
            "characters), which is no valid FileDescriptorName= (1-255 printable ASCII characters, no ':', "
            "systemd.socket(5)): fix FileDescriptorName= in the .socket unit or whatever set LISTEN_FDNAMES",
            errno=errno.EINVAL,
        ) from None


def _inherited_list(fds: Sequence[int], names: Mapping[int, str]) -> str:
    def one(fd: int) -> str:
        try:
            what = describe_fd(fd).describe()
        except OSError as exc:
            what = f"not inspectable: {exc.strerror}"
        return f"fd {fd} {names[fd]!r} ({what})"

    shown = ", ".join(one(fd) for fd in list(fds[:_LISTED]))
    return shown + (f", … and {len(fds) - _LISTED} more" if len(fds) > _LISTED else "")


def _mismatch(
    to_bind: Sequence[tuple[str, Address]],
    inherited: Inherited,
    names: Mapping[int, str],
    claimed: Mapping[str, int],
    spare: Sequence[int],
) -> ActivationError:
    asked = ", ".join(f"{n}={a.text!r}" for n, a in to_bind)
    taken = ", ".join(f"{n} from fd {f}" for n, f in claimed.items())
    return ActivationError(
        f"socket-activated (LISTEN_FDS={len(inherited.fds)}), but {asked} matches no inherited socket by "
        f"FileDescriptorName= or by address, while {_inherited_list(spare, names)} went unclaimed"
        + (f" (claimed: {taken})" if taken else "")
        + ". Give the .socket unit's socket FileDescriptorName= equal to the listener name, or make the "
        "addresses agree; to bind the missing ones here and leave the rest unused, pass "
        "get_listeners(..., bind_missing=True) (sockact run --bind-missing)",
        errno=errno.EADDRNOTAVAIL,
    )


def _check_listenable(fd: int, info: FdInfo, fdname: str, sock: socket.socket) -> None:
    """A stream/seqpacket fd that is not listening must not be connected: that is Accept=yes."""
    if info.kind != "socket" or info.type == socket.SOCK_DGRAM or info.listening:
        return
    try:
        peer = sock.getpeername()
    except OSError:
        return  # not connected: listen() makes it a listener, as systemd's sockets are
    raise ActivationError(
        f"fd {fd} named {fdname!r} is a connected {kind_name(info.family, info.type)} socket (peer {peer!r}), "
        "not a listening one: the .socket unit has Accept=yes (or systemd-socket-activate ran with -a/--accept), "
        "which starts one service instance per connection; sockact serves listening sockets, so set Accept=no "
        "(the default) in the .socket unit",
        errno=errno.EINVAL,
    )
