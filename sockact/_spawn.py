"""The one spawn path: start a command exactly as systemd starts a socket-activated service.

Used by the in-process upgrader, the supervisor CLI, the demo and the tests. The listeners land
on fds 3..3+n−1 in order, every other fd is closed, ``LISTEN_PID`` (and ``WATCHDOG_PID``) are set to
the child's own pid by a ``/bin/sh`` trampoline, and nothing but ``posix_spawn`` runs between fork
and exec — safe in a process with threads.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from ._env import LISTEN_FDS_START, successor_env, trampoline
from ._errors import SpawnError, UsageError
from ._poll import readable
from ._priority import lower, lowered_nice, restore
from ._procenv import process_environ

__all__ = ["Child", "spawn", "default_command"]

_SH = "/bin/sh"
#: The relaying shell: run the trampoline ($1) as a foreground command, not exec'd, and exit with its
#: status. It survives the signals that would end it by default — a SIGTERM to its process group, a
#: `systemctl kill -s HUP` — so it cannot leave the command untracked; traps are reset to the default
#: across exec, so the command starts with every disposition at its default as systemd gives it.
#: SIGKILL ends it (Child.orphan, or the last resort of Child.terminate, with its process group).
#: The traps also hold in its fork until that execs the command: a signal landing in those microseconds
#: is swallowed, and Child.terminate's SIGKILL after its grace is what ends such a child.
_RELAY = 'trap : HUP INT QUIT ABRT USR1 USR2 PIPE ALRM TERM; s=$1; shift; "$0" -c "$s" "$@"; exit $?'
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

    ``close()`` only releases the pidfds; it never kills — a successor must outlive its parent.

    A *relayed* child (``spawn(relay=True)``) runs under a shell of ours that waits for it and exits
    as it did (an exit status of 129–192 reads as death by signal 1–64, as sh(1) reports one); ``pid``
    is that shell's until :meth:`identify` names the process itself. Its exit is the shell's, signals
    go to the process (to the shell's process group while it has no name), and :meth:`orphan` ends
    the shell, after which the child is no longer ours.
    """

    def __init__(self, pid: int, *, relayed: bool = False, niced: tuple[int, int] | None = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        #: The relaying shell's pid while it lives (None: the process is our own child, or an orphan).
        self.relay: int | None = pid if relayed else None
        #: After :meth:`orphan`: no longer our child, its exit is seen (by pidfd) but its status is not.
        self.orphaned = False
        self.pidfd: int | None = _pidfd(pid)  #: the process's own (the relay's until identified)
        self._relay_fd: int | None = None
        #: ``(value, base)``: spawned at nice ``value``, to get ``base`` back (:meth:`restore_priority`).
        self.niced = niced

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"

    def identify(self, pid: int) -> bool:
        """Name the relayed process ``pid`` (its relay's child, read from /proc or learnt from its first
        message). False, and nothing changes, if ``pid`` is no longer the relay's child once its pidfd
        is taken (it exited: the pid may be another's)."""
        if self.relay is None or self.pid != self.relay:
            raise UsageError(f"child pid {self.pid} is not an unnamed relayed child")
        pidfd = _pidfd(pid)
        if pidfd is None or parent_of(pid) != self.relay:
            if pidfd is not None:
                os.close(pidfd)
            return False
        self._relay_fd, self.pidfd, self.pid = self.pidfd, pidfd, pid
        if self.niced is not None:  # the relay may have started it before its own value was raised
            lower(pid, self.niced[0])
        return True

    def orphan(self) -> bool:
        """End the relaying shell (SIGKILL, reaped), so that the kernel gives the process to the nearest
        subreaper — systemd, whose child it then is (systemd.service(5) supervises only its children).
        Returns whether the process still runs (if it exited first, :attr:`returncode` says how)."""
        if self.relay is None or self.pid == self.relay or self.pidfd is None:
            raise UsageError(f"child pid {self.pid} is not a named relayed child")
        relay, self.relay = self.relay, None
        try:
            os.kill(relay, signal.SIGKILL)  # our own unreaped child: its pid cannot have been reused
        except ProcessLookupError:
            pass
        try:
            _, status = os.waitpid(relay, 0)
        except ChildProcessError:
            status = None
        if self._relay_fd is not None:
            os.close(self._relay_fd)
            self._relay_fd = None
        if self._alive():
            self.orphaned = True
            return True
        code = _relayed(os.waitstatus_to_exitcode(status)) if status is not None else -255
        self.returncode = -255 if code == -signal.SIGKILL else code  # our SIGKILL came first: unknown
        return False

    def restore_priority(self) -> list[str]:
        """Give the process (and what it started) the nice value it was spawned without, once; one
        line per thread that could not be changed (``_priority.restore``)."""
        if self.niced is None:
            return []
        (value, base), self.niced = self.niced, None
        return restore(self.pid, value, base)

    def _alive(self) -> bool:
        """Whether the named process itself still runs (by its pidfd)."""
        return self.pidfd is not None and not readable([self.pidfd], 0)

    @property
    def wait_fd(self) -> int | None:
        """The pidfd that becomes readable when :meth:`poll` can reap: the relay's while there is one."""
        return self._relay_fd if self.relay is not None and self._relay_fd is not None else self.pidfd

    def _reap(self, flags: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self.orphaned:  # another's child now (orphan() needs its pidfd): its exit is seen, not its status
            if self.pidfd is not None and not readable([self.pidfd], None if flags == 0 else 0):
                return None
            self.returncode = -255
            return self.returncode
        target = self.relay if self.relay is not None else self.pid
        try:
            pid, status = os.waitpid(target, flags)
        except ChildProcessError:
            self.returncode = -255  # reaped elsewhere (e.g. SIGCHLD=SIG_IGN)
            return self.returncode
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        if target == self.relay and self.pid != self.relay and self._alive():
            # the relay was killed (by SIGKILL: it traps the rest) before its command: that may not run on
            # untracked, holding the listeners
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)  # type: ignore[arg-type]
        self.returncode = _relayed(code) if target == self.relay else code
        return self.returncode

    def poll(self) -> int | None:
        """The exit code (negative signal number) if it has exited, else None. Reaps it (or its relay;
        an orphaned child's code is -255: unknown)."""
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
            fd = self.wait_fd
            if fd is not None:
                readable([fd], remaining)
            else:
                time.sleep(min(remaining, 0.01))

    def send_signal(self, sig: int) -> bool:
        """Signal the child unless it has been reaped; False if it was already gone. A relayed child
        with no name yet is signalled through its relay's process group (the relay itself survives a
        SIGTERM, and passes on the exit)."""
        if self.returncode is not None:
            return False
        try:
            if self.relay is not None and self.pid == self.relay:
                os.killpg(self.relay, sig)  # our unreaped child leads the group: no reuse race
            elif self.pidfd is not None:
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
        """Release the pidfds. Idempotent; the process itself is left alone."""
        for fd in (self.pidfd, self._relay_fd):
            if fd is not None:
                os.close(fd)
        self.pidfd = self._relay_fd = None

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _relayed(code: int) -> int:
    """A relaying shell's exit code as the command's: sh(1) exits 128+N for a command killed by signal N."""
    return 128 - code if 128 < code <= 128 + 64 else code


def children_of(pid: int) -> list[int] | None:
    """The children of ``pid``'s main thread (proc(5), /proc/PID/task/PID/children; Linux ≥ 3.5 built
    with CONFIG_PROC_CHILDREN, as distribution kernels are); None when that cannot be read (``pid`` is
    gone, or the kernel has no such file)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(word) for word in f.read().split()]
    except OSError:
        return None


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _pidfds() -> bool:
    """Whether this kernel has pidfds (pidfd_open(2), Linux 5.3)."""
    fd = _pidfd(os.getpid())
    if fd is None:
        return False
    os.close(fd)
    return True


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (proc(5), /proc/PID/stat: the field after the name), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


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
    relay: bool = False,
    nice: int = 0,
) -> Child:
    """Start ``argv`` with ``fds`` as its fds 3.. named ``names``, as systemd starts a service.

    The environment is ``environ`` (default ``os.environ``) rebuilt by ``successor_env``:
    LISTEN_FDS/LISTEN_FDNAMES, LISTEN_PID (and WATCHDOG_PID) = the child's pid, NOTIFY_SOCKET.

    With ``relay`` the command runs under a second ``/bin/sh`` that waits for it and exits as it did
    (the first leads a new process group, which the command joins): :meth:`Child.orphan` can then
    end that shell at the hand-over and make the command systemd's own child (see the module
    docstring of ``_upgrade``). The returned Child has the shell's pid until :meth:`Child.identify`.

    With ``nice`` > 0 the child starts that much nicer, if this thread could give the value back
    (``_priority``); :meth:`Child.restore_priority` does.

    Raises:
        SpawnError: the command could not be started (not found, not executable, fd limit; a relay
            without pidfds).
        UsageError: ``fds`` and ``names`` differ in length, or ``nice`` is negative.
    """
    if not argv:
        raise SpawnError("no command to start: the successor's argv is empty")
    if not _found(argv[0], (environ or os.environ).get("PATH")):
        raise SpawnError(f"cannot start {argv[0]!r}: no such executable (check the path and PATH)")
    if len(fds) != len(names):
        raise UsageError(f"spawn got {len(fds)} fds but {len(names)} names")
    if relay and not _pidfds():
        raise SpawnError("a relayed child needs pidfds (Linux >= 5.3) to be followed once orphaned")
    if nice < 0:
        raise UsageError(f"spawn's nice is an increment of 0 or more, not {nice}")
    niced = lowered_nice(nice)
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
        shell = [_SH, "-c", _RELAY, _SH, script, *argv] if relay else [_SH, "-c", script, *argv]
        try:
            start = functools.partial(
                os.posix_spawn, _SH, shell, env, file_actions=actions, setsigmask=(), setsigdef=_DEFAULT_SIGNALS
            )
            pid = start(setpgroup=0) if relay else start()
        except OSError as exc:
            hint = " (raise LimitNOFILE= / ulimit -n)" if exc.errno in (errno.EMFILE, errno.ENFILE) else ""
            raise SpawnError(f"cannot start {argv[0]!r}: {exc.strerror}{hint}") from exc
    except OSError as exc:
        hint = " (raise LimitNOFILE= / ulimit -n)" if exc.errno in (errno.EMFILE, errno.ENFILE) else ""
        raise SpawnError(f"cannot prepare fds for {argv[0]!r}: {exc.strerror}{hint}") from exc
    finally:
        for fd in staged:
            os.close(fd)
    # Right after posix_spawn returns the child is the shell, yet to exec the command, which inherits
    # the value; a relay may have started the command already, which Child.identify catches up on.
    # The spawning thread itself never changes.
    return Child(pid, relayed=relay, niced=niced if niced is not None and lower(pid, niced[0]) else None)
