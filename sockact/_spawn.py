"""The one spawn path: start a command exactly as systemd starts a socket-activated service.

Used by the in-process upgrader, the supervisor CLI, the demo and the tests. The listeners land
on fds 3..3+n−1 in order, every other fd is closed, ``LISTEN_PID`` (and ``WATCHDOG_PID``) are set to
the child's own pid by a ``/bin/sh`` trampoline, and nothing but ``posix_spawn`` runs between fork
and exec — safe in a process with threads.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from ._env import LISTEN_FDS_START, successor_env, trampoline
from ._errors import SpawnError, UsageError
from ._poll import readable
from ._procenv import process_environ

__all__ = ["Child", "spawn", "default_command"]

_SH = "/bin/sh"
_DEFAULT_SIGNALS = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP) and s < signal.SIGRTMIN
)


def default_command() -> list[str]:
    """The command that started this process: interpreter plus original argv (``sys.orig_argv``)."""
    argv = list(getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])
    if argv and not os.path.isabs(argv[0]) and os.sep not in argv[0]:
        argv[0] = sys.executable  # "python3" resolved by PATH may differ after a venv swap; be exact
    return argv


def _leaked_fds(keep_below: int) -> list[int]:
    """Open fds ≥ keep_below without FD_CLOEXEC; posix_spawn closes them in the child."""
    leaks = []
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd < keep_below:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                leaks.append(fd)
        except OSError:
            continue  # the fd of the listdir itself, already closed
    return leaks


class Child:
    """A spawned process: its pid, a pidfd to wait on, and reaping. A context manager.

    ``close()`` only releases the pidfd; it never kills — a successor must outlive its parent.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.pidfd: int | None
        try:
            self.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"

    def _reap(self, flags: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = -255  # reaped elsewhere (e.g. SIGCHLD=SIG_IGN)
            return self.returncode
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        """The exit code (negative signal number) if it has exited, else None. Reaps it."""
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (None = forever); return the exit code or None."""
        if timeout is None:
            return self._reap(0)
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.pidfd is not None:
                readable([self.pidfd], remaining)
            else:
                time.sleep(min(remaining, 0.01))

    def send_signal(self, sig: int) -> bool:
        """Signal the child unless it has been reaped; False if it was already gone."""
        if self.returncode is not None:
            return False
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def terminate(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        self.send_signal(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            self.send_signal(signal.SIGKILL)
            code = self.wait()
        return code

    def close(self) -> None:
        """Release the pidfd. Idempotent; the process itself is left alone."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _found(command: str, path: str | None) -> bool:
    """Whether ``command`` names an executable file the way ``shutil.which(command, path=path)`` finds
    one, without importing shutil (and the compressors it imports): every successor imports this module.
    """
    if os.path.dirname(command):
        candidates = [command]
    else:
        if path is None:
            path = os.environ.get("PATH")
        if path is None:
            path = os.confstr("CS_PATH") or os.defpath
        if not path:  # PATH="" finds nothing (PATH=":" is the current directory), as shutil.which says
            return False
        candidates = [os.path.join(directory, command) for directory in path.split(os.pathsep)]
    return any(os.access(c, os.X_OK) and not os.path.isdir(c) for c in candidates)


# One sequence, kept whole: check, build the environment, stage the fds, posix_spawn, release the staging.
def spawn(
    argv: Sequence[str],
    fds: Sequence[int] = (),
    names: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    notify_socket: str | None = None,
    upstream_notify_socket: str | None = None,
    cwd: str | None = None,
) -> Child:
    """Start ``argv`` with ``fds`` as its fds 3.. named ``names``, as systemd starts a service.

    The environment is ``environ`` (default ``os.environ``) rebuilt by ``successor_env``:
    LISTEN_FDS/LISTEN_FDNAMES, LISTEN_PID (and WATCHDOG_PID) = the child's pid, NOTIFY_SOCKET.

    Raises:
        SpawnError: the command could not be started (not found, not executable, fd limit).
    """
    if not argv:
        raise SpawnError("no command to start: the successor's argv is empty")
    if not _found(argv[0], (environ or os.environ).get("PATH")):
        raise SpawnError(f"cannot start {argv[0]!r}: no such executable (check the path and PATH)")
    if len(fds) != len(names):
        raise UsageError(f"spawn got {len(fds)} fds but {len(names)} names")
    env, pid_vars = successor_env(
        process_environ() if environ is None else environ,
        list(names),
        notify_socket=notify_socket,
        upstream_notify_socket=upstream_notify_socket,
    )
    count = len(fds)
    staged: list[int] = []
    try:
        # Move sources above the target range so no dup2 overwrites a source still needed.
        for fd in fds:
            staged.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, LISTEN_FDS_START + count))
        # Close leaked fds first: one of them may sit on a target (fd 3 under `flock FILE cmd`), and
        # closing it after the DUP2 would close the listener the child was given there.
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_CLOSE, fd) for fd in _leaked_fds(LISTEN_FDS_START) if fd not in staged
        ]
        actions += [(os.POSIX_SPAWN_DUP2, src, LISTEN_FDS_START + i) for i, src in enumerate(staged)]
        if cwd is not None:
            # posix_spawn has no chdir action before glibc 2.29's _np variant; let the shell do it.
            script = f'cd "$SOCKACT_CWD" && unset SOCKACT_CWD && {trampoline(pid_vars)}'
            env["SOCKACT_CWD"] = cwd
        else:
            script = trampoline(pid_vars)
        try:
            pid = os.posix_spawn(
                _SH,
                [_SH, "-c", script, *argv],
                env,
                file_actions=actions,
                setsigmask=(),
                setsigdef=_DEFAULT_SIGNALS,
            )
        except OSError as exc:
            hint = " (raise LimitNOFILE= / ulimit -n)" if exc.errno in (errno.EMFILE, errno.ENFILE) else ""
            raise SpawnError(f"cannot start {argv[0]!r}: {exc.strerror}{hint}") from exc
    except OSError as exc:
        hint = " (raise LimitNOFILE= / ulimit -n)" if exc.errno in (errno.EMFILE, errno.ENFILE) else ""
        raise SpawnError(f"cannot prepare fds for {argv[0]!r}: {exc.strerror}{hint}") from exc
    finally:
        for fd in staged:
            os.close(fd)
    return Child(pid)
