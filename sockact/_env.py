"""Pure parsing of the variables a service manager hands over (sd_listen_fds(3), sd_watchdog_enabled(3)).

Nothing here reads ``os.environ`` or makes a syscall: every function takes the environment as a
mapping and the caller's pid as an int, so the rules are tested table-driven and cross-checked
against libsystemd. The I/O layer (``_fds``) acts on the result.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator, Mapping, Sequence

from ._cparse import CParseError, parse_pid, safe_atoi, safe_atou64
from ._errors import ActivationError, UsageError
from ._record import Record

TYPE_CHECKING = False  # not typing's: a successor parses LISTEN_* on its way to READY=1
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LISTEN_FDS_START",
    "LISTEN_VARIABLES",
    "Inherited",
    "parse_listen_env",
    "parse_listen_fds",
    "parse_listen_names",
    "split_fdnames",
    "parse_watchdog_env",
    "without_listen_vars",
    "successor_env",
    "trampoline",
    "check_fdname",
    "fdstore_max",
    "UPSTREAM_NOTIFY_VAR",
]

LISTEN_FDS_START = 3
#: Every variable sd_listen_fds(3) consumes; all are removed together on ``unset_environment``.
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID")
_INT_MAX = 2**31 - 1


class Repeat(Sequence["Any"]):
    """A sequence computed, not stored: ``value`` n times, or ``start, start+1, …`` n numbers.

    LISTEN_FDS may announce up to 2³¹−4 fds; the parser describes them without allocating them
    (a tuple would take gigabytes — found by fuzzing), and they compare equal to the tuple they stand for.
    """

    __slots__ = ("_length", "_start", "_value")

    def __init__(self, value: Any, length: int, start: int | None = None) -> None:
        self._value, self._length, self._start = value, length, start

    @classmethod
    def counting(cls, start: int, length: int) -> Repeat:
        return cls(None, length, start)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._length)))
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._value if self._start is None else self._start + index

    def __iter__(self) -> Iterator[Any]:
        if self._start is None:
            return itertools.repeat(self._value, self._length)
        return iter(range(self._start, self._start + self._length))

    def __contains__(self, item: object) -> bool:
        if self._start is None:
            return self._length > 0 and item == self._value
        return item in range(self._start, self._start + self._length)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Repeat):
            if self._length != other._length:
                return False
            return self._length == 0 or (self._value, self._start) == (other._value, other._start)
        if not isinstance(other, (tuple, list, range)):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash((self._value, self._length, self._start))

    def __repr__(self) -> str:
        return repr(tuple(self)) if self._length <= 8 else f"<{self._length} items: {self[0]!r}, {self[1]!r}, …>"


class Inherited(Record):
    """What ``LISTEN_*`` says this process inherited: fds ``3..3+n-1`` and one name each.

    ``named`` is False when ``LISTEN_FDNAMES`` was absent (every name is then ``"unknown"``).
    """

    fds: Sequence[int] = ()
    names: Sequence[str] = ()
    named: bool = False

    def __len__(self) -> int:
        return len(self.fds)


def _fail(variable: str, value: str, err: int, why: str) -> ActivationError:
    return ActivationError(
        f"{variable}={value!r} is invalid: {why} (sd_listen_fds(3) would fail with "
        f"{errno.errorcode.get(err, str(err))}). Fix the unit or the program that set it, "
        f"or unset {variable} before starting this process.",
        errno=err,
    )


def parse_listen_fds(
    environ: Mapping[str, str], pid: int, *, pidfd_id: int | None = None, names: bool = True
) -> Sequence[int]:
    """The fds ``LISTEN_PID``/``LISTEN_FDS`` pass to ``pid``, exactly as libsystemd 252 decides.

    Rules (sd_listen_fds(3), sd-daemon.c):

    * ``LISTEN_PID`` unset, or a valid pid that is not ``pid`` → nothing inherited, not an error.
      ``LISTEN_PID`` that is not a positive pid → ActivationError (EINVAL/ERANGE).
    * ``LISTEN_PIDFDID`` (systemd ≥ 259) set and different from ``pidfd_id`` → nothing inherited,
      like a foreign ``LISTEN_PID``. Ignored when ``pidfd_id`` is None (kernel without pidfs ids).
    * ``LISTEN_FDS`` unset → nothing; unparsable, ≤ 0 or too large → ActivationError (EINVAL).

    The fds are ``3 … 3+n−1``, as a ``range``: LISTEN_FDS may say up to 2³¹−4, and only the I/O
    layer, checking them one by one as libsystemd does, finds out how many are open (a tuple of that
    size would take gigabytes — found by fuzzing). Whether they are open is for the I/O layer to check.

    ``names=False`` is sd_listen_fds(3) proper, which never reads ``LISTEN_FDNAMES``; the default
    is sd_listen_fds_with_names(3), which splits it first.

    Raises:
        ActivationError: with ``errno`` set as libsystemd's negative return would be.
    """
    names_text = environ.get("LISTEN_FDNAMES")
    if names_text is not None and names:
        split_fdnames(names_text)  # libsystemd splits the names first: a syntax error wins over everything
    pid_text = environ.get("LISTEN_PID")
    if pid_text is None:
        return ()
    try:
        listen_pid = parse_pid(pid_text)
    except CParseError as exc:
        raise _fail("LISTEN_PID", pid_text, exc.errno, "not a positive process id") from exc
    if listen_pid != pid:
        return ()
    pidfd_text = environ.get("LISTEN_PIDFDID")
    if pidfd_text is not None and pidfd_id is not None:
        try:
            if safe_atou64(pidfd_text) != pidfd_id:
                return ()
        except CParseError as exc:
            raise _fail("LISTEN_PIDFDID", pidfd_text, exc.errno, "not a pidfd inode id") from exc
    fds_text = environ.get("LISTEN_FDS")
    if fds_text is None:
        return ()
    try:
        count = safe_atoi(fds_text)
    except CParseError as exc:
        raise _fail("LISTEN_FDS", fds_text, exc.errno, "not a number") from exc
    if count <= 0 or count > _INT_MAX - LISTEN_FDS_START:
        raise _fail("LISTEN_FDS", fds_text, errno.EINVAL, "must be a count of at least 1")
    return Repeat.counting(LISTEN_FDS_START, count)


def split_fdnames(text: str) -> tuple[str, ...]:
    """Split ``LISTEN_FDNAMES`` as libsystemd 252 does (strv_split_full with
    EXTRACT_DONT_COALESCE_SEPARATORS): on ``:``, keeping empty entries; a backslash takes the next
    character literally (``a\\:b`` is one name ``a:b``) and is dropped; quotes are ordinary.

    Raises:
        ActivationError: a trailing lone backslash (EINVAL) — libsystemd refuses it before it even
            looks at LISTEN_PID, found by fuzzing against it.
    """
    if "\\" not in text:  # the usual case (systemd's own names never need escaping): no char loop
        return tuple(text.split(":"))
    names: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            names.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        raise _fail("LISTEN_FDNAMES", text, errno.EINVAL, "it ends in a lone backslash")
    names.append("".join(current))
    return tuple(names)


def parse_listen_names(environ: Mapping[str, str], fds: Sequence[int]) -> tuple[Sequence[str], bool]:
    """The names of ``fds`` from ``LISTEN_FDNAMES``: ``(names, named)`` (sd_listen_fds_with_names(3)).

    Split by :func:`split_fdnames` (``""`` is one empty name); absent → every name ``unknown``
    and ``named`` False; a count different from ``len(fds)`` → ActivationError (EINVAL). libsystemd
    checks this only after the fds themselves, so the I/O layer calls it after claiming them.
    """
    names_text = environ.get("LISTEN_FDNAMES")
    if not fds:
        return (), False
    if names_text is None:
        return Repeat("unknown", len(fds)), False
    names = split_fdnames(names_text)
    if len(names) != len(fds):
        raise _fail(
            "LISTEN_FDNAMES",
            names_text,
            errno.EINVAL,
            f"it names {len(names)} fd(s) but LISTEN_FDS={environ.get('LISTEN_FDS')} passes {len(fds)}",
        )
    return names, True


def parse_listen_env(environ: Mapping[str, str], pid: int, *, pidfd_id: int | None = None) -> Inherited:
    """Parse ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` exactly as libsystemd 252 does.

    The composition of :func:`parse_listen_fds` and :func:`parse_listen_names`; see those for the
    rules. Raises ActivationError with libsystemd's errno.
    """
    fds = parse_listen_fds(environ, pid, pidfd_id=pidfd_id)
    names, named = parse_listen_names(environ, fds)
    return Inherited(fds, names, named)


def without_listen_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without any ``LISTEN_*`` variable (sd_listen_fds' unset_environment)."""
    return {k: v for k, v in environ.items() if k not in LISTEN_VARIABLES}


def parse_watchdog_env(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog interval in µs that applies to ``pid``, or None (sd_watchdog_enabled(3)).

    ``WATCHDOG_USEC`` unset → None; ``WATCHDOG_PID`` set to another pid → None. A value that is
    not a positive, finite number of µs, or a malformed ``WATCHDOG_PID``, raises ActivationError.
    """
    usec_text = environ.get("WATCHDOG_USEC")
    if usec_text is None:
        return None
    try:
        usec = safe_atou64(usec_text)
    except CParseError as exc:
        raise ActivationError(
            f"WATCHDOG_USEC={usec_text!r} is not a number of microseconds (sd_watchdog_enabled(3)); "
            "fix WatchdogSec= in the unit.",
            errno=exc.errno,
        ) from exc
    if usec == 0 or usec == 2**64 - 1:
        raise ActivationError(
            f"WATCHDOG_USEC={usec_text!r} must be a positive, finite interval (sd_watchdog_enabled(3)).",
            errno=errno.EINVAL,
        )
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text is not None:
        try:
            watchdog_pid = parse_pid(pid_text)
        except CParseError as exc:
            raise ActivationError(
                f"WATCHDOG_PID={pid_text!r} is not a process id (sd_watchdog_enabled(3)).",
                errno=exc.errno,
            ) from exc
        if watchdog_pid != pid:
            return None
    return usec


#: Variables a successor must not inherit from its parent's own activation.
_STALE = LISTEN_VARIABLES + ("NOTIFY_SOCKET", "WATCHDOG_PID", "SOCKACT_UPSTREAM_NOTIFY_SOCKET")
#: Where a successor finds the real manager's NOTIFY_SOCKET (docs/PROTOCOL.md).
UPSTREAM_NOTIFY_VAR = "SOCKACT_UPSTREAM_NOTIFY_SOCKET"


def fdstore_max(environ: Mapping[str, str]) -> int:
    """``$FDSTORE`` (systemd ≥ 254: FileDescriptorStoreMax=), or 0 when unset or not a number."""
    try:
        return safe_atou64(environ.get("FDSTORE", "0"))
    except CParseError:
        return 0


def check_fdname(name: str) -> str:
    """Validate a FileDescriptorName= (systemd.socket(5)): 1-255 printable ASCII, no ``:``."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 255
        or ":" in name
        or not (name.isascii() and name.isprintable())  # printable ASCII is 32..126: the C loops say so
    ):
        raise UsageError(
            f"fd name {name!r} is not a valid FileDescriptorName=: use 1-255 printable ASCII characters without ':' "
            "(systemd.socket(5))"
        )
    return name


def successor_env(
    base: Mapping[str, str],
    names: tuple[str, ...] | list[str],
    *,
    notify_socket: str | None,
    upstream_notify_socket: str | None = None,
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The environment a successor starts with, exactly as systemd would give it (sd_listen_fds(3)).

    Returns ``(env, pid_vars)``: ``pid_vars`` are the variables the spawn path must set to the
    child's own pid *in the child* (``LISTEN_PID`` always; ``WATCHDOG_PID`` when a watchdog
    interval is passed on). Stale ``LISTEN_PIDFDID``, ``NOTIFY_SOCKET`` and ``WATCHDOG_PID`` of this
    process are dropped. ``upstream_notify_socket`` travels as ``SOCKACT_UPSTREAM_NOTIFY_SOCKET``
    (``""``: a hand-over with no manager above; None: not a hand-over, e.g. a supervised child).
    """
    env = {k: v for k, v in base.items() if k not in _STALE}
    pid_vars: tuple[str, ...] = ()
    if names:
        env["LISTEN_FDS"] = str(len(names))
        env["LISTEN_FDNAMES"] = ":".join(check_fdname(n) for n in names)
        pid_vars = ("LISTEN_PID",)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    if upstream_notify_socket is not None:
        env[UPSTREAM_NOTIFY_VAR] = upstream_notify_socket
    if "WATCHDOG_USEC" in env:
        pid_vars += ("WATCHDOG_PID",)
    return env, pid_vars


def trampoline(pid_vars: tuple[str, ...]) -> str:
    """The ``sh -c`` script that sets ``pid_vars`` to the shell's own pid, then execs the command."""
    sets = "".join(f"{var}=$$; export {var}; " for var in pid_vars)
    return sets + 'exec "$0" "$@"'
