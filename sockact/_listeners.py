"""``get_listeners()``: the sockets an app serves on, inherited when handed over, bound otherwise."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType

from ._address import Address, kind_name, parse_address
from ._bind import bind_all, unix_ids
from ._env import Inherited, fdstore_max, parse_listen_fds, parse_listen_names
from ._errors import ActivationError, AddressError
from ._fds import FdInfo, adopt_socket, claim_fds, close_fd, describe_fd, own_pidfd_id, unset_listen_vars
from ._notify import fdstore as store_fds
from ._procenv import hide_notify_socket, process_environ

__all__ = ["Listeners", "get_listeners", "read_inherited", "DEFAULT_BACKLOG"]

DEFAULT_BACKLOG = 4096  # systemd's Backlog= default is SOMAXCONN (4096 on Linux ≥ 5.4)


def read_inherited(
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
    *,
    unset_environment: bool = True,
) -> Inherited:
    """Parse LISTEN_* from ``environ`` (default ``os.environ``), claim the fds, optionally unset the variables.

    Like sd_listen_fds(3), the variables are removed even when they were not meant for this process
    or were invalid; unlike python-systemd, they are removed from ``os.environ`` itself, so a child
    started later with ``env=dict(os.environ)`` does not inherit them.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    try:
        fds = parse_listen_fds(env, os.getpid() if pid is None else pid, pidfd_id=_pidfd_id(env))
        claim_fds(fds)  # libsystemd's order: the fds first, then the names
        inherited = Inherited(fds, *parse_listen_names(env, fds))
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


def _sockname(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, bytes):
        return "@" + name[1:].decode(errors="replace")
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(name)


def _parse_spec(spec: Mapping[str, str]) -> list[tuple[str, Address]]:
    items = []
    for name, text in spec.items():
        if not isinstance(name, str) or not name or ":" in name or any(ord(c) < 32 for c in name):
            raise ActivationError(
                f"listener name {name!r} is not a valid FileDescriptorName= (non-empty, no ':' or control "
                "characters, systemd.socket(5))"
            )
        items.append((name, parse_address(text)))
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

    Raises:
        ActivationError: LISTEN_* malformed; an fd not open, not a socket, or of the wrong kind for
            its address; ``require_activation=True`` and a name was not inherited.
        AddressError: an address could not be parsed or bound (nothing is left bound).
        NotifyError: the fd store was asked for and refused the sockets.
    """
    items = _parse_spec(spec) if spec is not None else []
    source = os.environ if environ is None else environ
    meant_for = source.get("LISTEN_PID") if "LISTEN_FDS" in source else None  # read before it is unset
    inherited = read_inherited(environ, pid)
    infos = {}
    for number in inherited.fds:
        try:
            infos[number] = describe_fd(number, name=False)  # the address only when a match needs it
        except OSError as exc:  # claim_fds checked they are open; this is a race
            raise ActivationError(f"inherited fd {number} could not be inspected: {exc}") from exc
    names = dict(zip(inherited.fds, inherited.names))
    claimed: dict[str, int] = {}

    if spec is None:
        keys = _unique_keys(inherited.names)
        fdnames = {}
        for key, number in zip(keys, inherited.fds):
            if infos[number].kind == "socket":
                claimed[key] = number
                fdnames[key] = names[number]
        to_bind: list[tuple[str, Address]] = []
    else:
        fdnames = {name: name for name, _ in items}
        wanted = {name for name, _ in items}
        to_bind = []
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
                        and addr.matches(infos[f].family, infos[f].type, describe_fd(f).sockname)
                    ),
                    None,
                )
            if fd is None:
                to_bind.append((name, addr))
                continue
            _check_kind(name, addr, infos[fd], names[fd])
            claimed[name] = fd
        if require_activation and to_bind:
            missing = ", ".join(f"{n}={a.text}" for n, a in to_bind)
            got = ", ".join(f"fd {f} {names[f]!r}" for f in inherited.fds) or "nothing (LISTEN_FDS unset or not for us)"
            raise ActivationError(
                f"require_activation=True but {missing} was not handed over; inherited: {got}. Add a matching "
                "ListenStream= with FileDescriptorName= to the .socket unit, or allow binding."
            )

    sockets: dict[str, socket.socket] = {}
    try:
        ids = unix_ids(unix_owner, unix_group)
        try:
            sockets.update(bind_all(to_bind, backlog=backlog, unix_mode=unix_mode, unix_ids=ids))
        except AddressError as exc:
            hint = _not_inherited_hint(exc, inherited.fds, claimed, names, meant_for, pid)
            if hint is None:
                raise
            raise AddressError(f"{exc}; {hint}", errno=exc.errno) from exc
        for name, fd in claimed.items():
            sock = adopt_socket(fd, infos[fd])
            sockets[name] = sock
            if infos[fd].type != socket.SOCK_DGRAM and not infos[fd].listening:
                _listen(sock, fd, names[fd], backlog)
    except BaseException:
        for name, sock in sockets.items():
            if name not in claimed:
                sock.close()
        for name, sock in sockets.items():
            if name in claimed:
                sock.detach()
        raise
    ordered = {name: sockets[name] for name in (fdnames if spec is not None else claimed)}
    taken = set(claimed.values())  # a set: LISTEN_FDS may pass thousands of fds
    unclaimed = {fd: names[fd] for fd in inherited.fds if fd not in taken}
    listeners = Listeners(ordered, inherited=frozenset(claimed), unclaimed=unclaimed, fdnames=fdnames)
    if environ is None:
        hide_notify_socket()  # children of this process must not speak to the manager as the service
    env = process_environ() if environ is None else environ
    if listeners.bound and (fdstore if fdstore is not None else fdstore_max(env) > 0):
        with _closing_on_error(listeners):
            for name in listeners.bound:
                store_fds([listeners[name]], name=listeners.fdnames[name], environ=env)
    return listeners


@contextlib.contextmanager
def _closing_on_error(listeners: Listeners) -> Iterator[None]:
    try:
        yield
    except BaseException:
        listeners.close()
        raise


def _not_inherited_hint(
    exc: AddressError,
    fds: Sequence[int],
    claimed: Mapping[str, int],
    names: Mapping[int, str],
    meant_for: str | None,
    pid: int | None,
) -> str | None:
    """Why an address in use was bound here instead of inherited (usually the service manager holds
    it): the fds were for another pid (a wrapper that forks), or a socket came that matched nothing."""
    if exc.errno != errno.EADDRINUSE:
        return None
    own = os.getpid() if pid is None else pid
    if meant_for is not None and meant_for.strip() != str(own) and not fds:
        return (
            f"LISTEN_FDS was meant for pid {meant_for.strip()} (LISTEN_PID), not this process (pid {own}): "
            "a wrapper started this process instead of exec'ing it; use exec, or start the app directly"
        )
    unmatched = [
        f"fd {fd} {names[fd]!r} ({describe_fd(fd).describe()})" for fd in fds if fd not in set(claimed.values())
    ]
    if not unmatched:
        return None
    return (
        f"inherited but matched by no name or address: {', '.join(unmatched)}; name it with FileDescriptorName= "
        "in the .socket unit (the listener's name), or ask for the address it has"
    )


def _listen(sock: socket.socket, fd: int, fdname: str, backlog: int) -> None:
    """listen() on an inherited stream socket that is not listening yet (systemd hands over listening
    ones); a connected socket here means ``Accept=yes`` (systemd.socket(5)): one instance per connection."""
    try:
        sock.listen(backlog)
    except OSError as exc:
        try:
            peer = sock.getpeername()
        except OSError:
            raise ActivationError(
                f"inherited fd {fd} named {fdname!r} cannot listen: {exc.strerror}; pass a listening socket",
                errno=exc.errno,
            ) from exc
        raise ActivationError(
            f"inherited fd {fd} named {fdname!r} is a connection from {peer!r}, not a listening socket: the .socket "
            "unit has Accept=yes, which starts one instance per connection. sockact serves listeners: remove "
            "Accept=yes (the default is no), or drop -a from systemd-socket-activate",
            errno=errno.EINVAL,
        ) from exc


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
