"""The asking side of the reload channel: ``sockact reload``, which every ``systemctl reload`` runs.

Its start-up is part of every reload's round trip, so this module imports only C modules, the
interpreter's own and ``_poll`` (``_socket``, not ``socket``: the wrapper's enums cost 6 ms), and :func:`quick`
answers the forms ``sockact units`` writes without argparse. ``sockact reload`` took 27 ms on the
test machine through the full command line and takes 8 ms here, as long as ``python -c pass`` (it
ends with ``os._exit``).

The protocol (docs/PROTOCOL.md §10), one line each way on a unix stream socket:

    client: ``reload``          server: ``ok <pid>`` | ``failed <reason>`` | ``retry``

(``ok <pid> then-exit`` came from PID-file servers of earlier builds, which named their successor
only as they exited: the client still waits for that exit, so a deploy that replaces a running old
build keeps its guarantee.)
"""

from __future__ import annotations

import _socket
import errno
import math
import os
import sys
import time

from ._poll import readable

TYPE_CHECKING = False  # not typing's: importing typing costs this command more than it does itself
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import TextIO

__all__ = ["CONTROL_VAR", "parse_reply", "quick", "quick_args", "report", "request_reload", "seconds"]

#: Where a sockact process finds its reload channel (``sockact units`` sets it next to ExecReload=).
CONTROL_VAR = "SOCKACT_CONTROL"
MAX_LINE = 4096
#: Seconds a missing channel (ENOENT, or a socket file nobody listens on) is waited for before the
#: reload fails: a serving generation's channel is always there (a successor renames its own over
#: the path before its predecessor lets go), so only a service that is not running, a stale socket
#: file or a wrong --control lasts longer than the start of a server that has not bound it yet.
ABSENT_GRACE = 5.0


def parse_reply(line: str) -> tuple[str, str]:
    """``("ok", pid)``, ``("failed", reason)`` or ``("retry", "")``; anything else is ``("failed", …)``."""
    word, _, rest = line.strip().partition(" ")
    if word in ("ok", "failed", "retry"):
        return word, rest
    return "failed", f"unexpected answer {line.strip()[:200]!r} on the reload channel"


def seconds(text: str, *, zero: bool) -> float | None:
    """``text`` as a finite number of seconds > 0 (>= 0 when ``zero``), or None when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        return None
    return value


def _ask(path: str, timeout: float) -> tuple[int, str]:
    """One request on the channel at ``path``: the answering process's pid (SO_PEERCRED) and its line
    ("" when it closed without one). Raises what connect() and the exchange raise (OSError)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
        server = int.from_bytes(cred[:4], sys.byteorder, signed=True)
        sock.sendall(b"reload\n")
        data = b""
        while b"\n" not in data and len(data) < MAX_LINE:
            chunk = sock.recv(MAX_LINE)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return server, data.partition(b"\n")[0].decode("utf-8", "replace")


def request_reload(
    path: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, str]:
    """Ask the process serving at ``path`` to upgrade; wait up to ``timeout`` s for the outcome.

    Returns ``(True, "pid N serving")`` or ``(False, reason)``. After an earlier build's ``ok N
    then-exit`` it also waits for the answering process to exit (the module docstring). A draining
    predecessor's ``retry`` and a server that vanished without answering are retried until the
    deadline; a channel that is not there (ENOENT, ECONNREFUSED) for :data:`ABSENT_GRACE` seconds
    fails the reload then, not at the deadline.
    """
    deadline = clock() + timeout
    last = f"no answer on the reload channel {path}"
    absent_since: float | None = None
    while clock() < deadline:
        try:
            server, line = _ask(path, max(0.001, deadline - clock()))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            last = f"nothing serves the reload channel {path} ({exc.strerror}); is the service running?"
            absent_since = clock() if absent_since is None else absent_since
            if clock() - absent_since >= ABSENT_GRACE:
                return False, f"{last} (waited {ABSENT_GRACE:g} s)"
            line = ""
        except TimeoutError:
            return False, f"no outcome within {timeout:g} s from the reload channel {path}"
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EAGAIN):  # EAGAIN: its backlog is full
                return False, f"cannot use the reload channel {path}: {exc.strerror or exc}"
            line = ""
        else:
            absent_since = None
        if line:
            word, text = parse_reply(line)
            if word == "ok":
                new, _, then = text.partition(" ")
                if then == "then-exit" and not _gone(server, deadline - clock()):
                    return False, f"pid {new} serves, but the old pid {server} did not exit within {timeout:g} s"
                return True, f"pid {new} serving"
            if word == "failed":
                return False, text
            last = "the process at the channel is draining; waiting for its successor"
        sleep(0.02)
    return False, f"{last} (gave up after {timeout:g} s)"


def _gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exits within ``timeout`` s (pidfd: no polling, no pid reuse race)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(readable([pidfd], timeout))
    finally:
        os.close(pidfd)


def report(ok: bool, text: str) -> int:
    """Print the outcome as ``sockact reload`` does and return its exit status (0, or 1: failed)."""
    if ok:
        _say(f"sockact reload: {text}", sys.stdout)
        return 0
    from ._journal import fd_is_journal  # logging: only a failure pays for it

    journal = sys.stderr is not None and fd_is_journal(sys.stderr.fileno())
    _say(f"{'<3>' if journal else ''}sockact reload: {text}", sys.stderr)  # journalctl -p err shows it
    return 1


def _say(line: str, stream: TextIO | None) -> None:
    """Print ``line`` to ``stream`` if it can take it: a closed or full stdout must not turn the
    reload's outcome, which is the exit status, into a traceback."""
    try:
        print(line, file=stream)
    except OSError:
        pass


def quick_args(words: Sequence[str], environ: Mapping[str, str]) -> tuple[str, float] | None:
    """The channel and timeout of ``sockact reload``'s arguments (those after ``reload``), when they are
    only ``--control PATH`` and ``--timeout S`` (or ``--opt=value``), each at most once, naming a channel
    (else ``$SOCKACT_CONTROL``) and valid seconds; None for anything else. Pure: a table test holds it
    to what the full command line parses from the same words."""
    options: dict[str, str] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if name not in ("--control", "--timeout") or name in options:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        options[name] = value
    path = options.get("--control") or environ.get(CONTROL_VAR)
    timeout = seconds(options.get("--timeout", "120"), zero=False)
    if not path or timeout is None:
        return None
    return path, timeout


def quick(words: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Run ``sockact reload`` without argparse when :func:`quick_args` understands ``words``; otherwise
    return None, and the full command line parses them: its help, its errors and its exit status 2."""
    args = quick_args(words, environ)
    return None if args is None else report(*request_reload(*args))
