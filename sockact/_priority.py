"""A successor starts at a lower CPU priority while the old generation serves, and gets it back at
the hand-over.

On a busy machine the successor's start-up (an interpreter and its imports, ~100 ms of CPU) takes
CPU from the process answering the clients, and every request begun in that window waits longer.
With a higher nice value (setpriority(2), sched(7)) the scheduler gives the serving threads the CPU
first and the successor what is left; on an idle machine nothing changes. The spawner raises the
nice value of the child it just started by ``increment``; at the hand-over (or as soon as nothing
else serves) every thread of the successor, and of the processes below it (gunicorn's workers), that
still has that value gets the spawner's own back.

Only a nice value that can be given back is taken: lowering it again needs CAP_SYS_NICE or an
RLIMIT_NICE soft limit of at least 20 − base (getrlimit(2); systemd.exec(5) ``LimitNICE=+0``
allows a service to return to 0 and never below). Without either the successor starts at the
spawner's priority, as before. Linux keeps a nice value per thread: threads and processes inherit
their creator's at creation, so a thread the app set to another value keeps it (one that added to
the raised value, ``os.nice(5)``, keeps the sum). Raising the child's value is best effort: if the
child started threads or a process before it landed, those run at full priority, as without it.
"""

from __future__ import annotations

import os
import resource

TYPE_CHECKING = False  # not typing's: a successor imports this module on its way to READY=1
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["START_NICE", "NICE_MAX", "start_nice", "lowered_nice", "lower", "restore"]

#: How much nicer a successor starts while another generation serves, by default (0: not at all).
START_NICE = 10
#: The highest nice value: the least CPU under contention (sched(7)).
NICE_MAX = 19
#: CAP_SYS_NICE's bit in /proc/PID/status CapEff (capabilities(7), linux/capability.h).
_CAP_SYS_NICE = 23


def start_nice(base: int, increment: int, soft_limit: int, cap_sys_nice: bool) -> int | None:
    """The nice value to start a successor at, given the spawner's ``base`` value, the wanted
    ``increment`` (0: none), RLIMIT_NICE's soft limit (``resource.RLIM_INFINITY`` for none) and
    whether the spawner holds CAP_SYS_NICE; None when nothing changes: no increment, ``base`` is at
    the top already, or the value could not be given back (setpriority(2): lowering a nice value to
    ``base`` needs CAP_SYS_NICE or a soft limit ≥ 20 − base)."""
    if increment <= 0 or base >= NICE_MAX:
        return None
    restorable = cap_sys_nice or soft_limit == resource.RLIM_INFINITY or soft_limit >= 20 - base
    return min(base + increment, NICE_MAX) if restorable else None


def lowered_nice(increment: int) -> tuple[int, int] | None:
    """``(value, base)`` for a child this thread spawns now — :func:`start_nice` with this thread's
    nice value, RLIMIT_NICE and capabilities — or None to leave its priority alone (also when they
    cannot be read: a system call filter)."""
    if increment <= 0:
        return None
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)  # Linux: the calling thread's
        soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
    except OSError:
        return None
    value = start_nice(base, increment, soft, _has_cap_sys_nice())
    return (value, base) if value is not None else None


def _has_cap_sys_nice() -> bool:
    """Whether this process holds CAP_SYS_NICE where setpriority(2) checks it: in the initial user
    namespace. CapEff (proc(5)) counts in the process's own namespace, so a root in a container
    (``unshare -r``, rootless podman, an unprivileged LXC) reads as privileged and is not."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            if f.read().split() != [b"0", b"0", b"4294967295"]:
                return False
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def lower(pid: int, value: int) -> bool:
    """Give the just-spawned ``pid`` the nice value ``value`` (raising it needs no privilege for a
    process of our own user); False if it could not be set. Whatever it starts from now on inherits it."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, value)
    except OSError:
        return False
    return True


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it: by each thread's /proc/PID/task/TID/children (proc(5)), a
    few reads; where the kernel has no such file (CONFIG_PROC_CHILDREN), by every process's parent in
    /proc/PID/stat, a read per process on the machine. proc_tid_children(5) warns that a child may be
    left out while a sibling exits: :func:`restore` repeats its passes until one changes nothing."""
    try:
        return _walk(pid, _children)
    except _NoChildrenFile:
        return _by_parent(pid)


class _NoChildrenFile(Exception):
    """The kernel has no /proc/PID/task/TID/children (built without CONFIG_PROC_CHILDREN)."""


def _children(process: int) -> list[int]:
    """The children of every thread of ``process``; raises _NoChildrenFile when the file is missing
    although the thread is there."""
    children: list[int] = []
    for tid in _threads(process):
        try:
            with open(f"/proc/{process}/task/{tid}/children", "rb") as f:
                children += [int(word) for word in f.read().split()]
        except FileNotFoundError:
            if os.path.exists(f"/proc/{process}/task/{tid}"):
                raise _NoChildrenFile from None
        except (OSError, ValueError):
            pass  # exited meanwhile
    return children


def _by_parent(pid: int) -> list[int]:
    """:func:`_descendants` from each process's parent in /proc/PID/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    return _walk(pid, lambda process: parents.get(process, []))


def _walk(pid: int, children: Callable[[int], list[int]]) -> list[int]:
    """``pid`` and what ``children`` finds below it, each once: a pid reused while /proc was read
    can close a loop."""
    found, todo = [], [pid]
    while todo:
        process = todo.pop()
        if process not in found:
            found.append(process)
            todo += children(process)
    return found


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []  # exited meanwhile


#: Passes of :func:`restore` at most: each one finds what the threads still at the value created
#: during the last; a tree that keeps creating them (a thread per request) is reported, not chased.
PASSES = 8


def restore(pid: int, value: int, base: int) -> list[str]:
    """Give ``base`` back to every thread of ``pid`` and of the processes below it that is still at
    ``value``, the nice value the spawner gave it; one line per thread that could not be changed
    (none: every such thread has ``base``). A thread that exits meanwhile is not a failure. Passes
    repeat until one finds nothing to change: a thread created during a pass by one not yet reached
    was created at ``value``."""
    failures: list[str] = []
    for _ in range(PASSES):
        changed = 0
        for process in _descendants(pid):
            for tid in _threads(process):
                try:
                    if os.getpriority(os.PRIO_PROCESS, tid) != value:
                        continue
                    os.setpriority(os.PRIO_PROCESS, tid, base)
                    changed += 1
                except ProcessLookupError:
                    continue
                except OSError as exc:
                    failures.append(f"pid {process} thread {tid}: nice {value} → {base}: {exc.strerror}")
        if failures or not changed:
            return failures
    return [f"pid {pid}: threads still being created at nice {value} after {PASSES} passes"]
