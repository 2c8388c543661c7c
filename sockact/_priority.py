"""A successor starts at a lower CPU priority while the old generation serves, and gets it back at
the hand-over.

On a busy machine the successor's start-up (an interpreter and its imports, ~100 ms of CPU) takes
CPU from the process answering the clients, and every request begun in that window waits longer.
With a higher nice value (setpriority(2), sched(7)) the scheduler gives the serving threads the CPU
first and the successor what is left; on an idle machine nothing changes. The spawner raises the
nice value of the child it just started by ``increment``; at the hand-over every thread of the
successor, and of any process it started meanwhile (gunicorn's workers), that still has that value
gets the spawner's own back.

Only a nice value that can be given back is taken: lowering it again needs CAP_SYS_NICE or an
RLIMIT_NICE soft limit of at least 20 − base (getrlimit(2); systemd.exec(5) ``LimitNICE=+0``
allows a service to return to 0 and never below). Without either the successor starts at the
spawner's priority, as before. Linux keeps a nice value per thread: threads and processes inherit
their creator's at creation, so those the app itself moved to another value are left as they are.
"""

from __future__ import annotations

import os
import resource

__all__ = ["START_NICE", "start_nice", "lowered_nice", "restore"]

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
    nice value, RLIMIT_NICE and capabilities — or None to leave its priority alone."""
    if increment <= 0:
        return None
    base = os.getpriority(os.PRIO_PROCESS, 0)  # Linux: the calling thread's
    value = start_nice(base, increment, resource.getrlimit(resource.RLIMIT_NICE)[0], _has_cap_sys_nice())
    return (value, base) if value is not None else None


def _has_cap_sys_nice() -> bool:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _tree(pid: int) -> list[tuple[int, int]]:
    """``(process, thread)`` for every thread of ``pid`` and of its descendants (proc(5):
    /proc/PID/task/TID/children, CONFIG_PROC_CHILDREN); what has exited meanwhile is left out."""
    found: list[tuple[int, int]] = []
    todo, seen = [pid], set[int]()
    while todo and len(seen) < 65536:  # bounded: pids are, and a loop in /proc is not possible anyway
        process = todo.pop()
        if process in seen:
            continue
        seen.add(process)
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{process}/task")]
        except (OSError, ValueError):
            continue
        for tid in tids:
            found.append((process, tid))
            try:
                with open(f"/proc/{process}/task/{tid}/children", "rb") as f:
                    todo += [int(word) for word in f.read().split()]
            except (OSError, ValueError):
                pass
    return found


def restore(pid: int, value: int, base: int) -> tuple[int, list[str]]:
    """Give ``base`` back to every thread of ``pid``'s process tree still at ``value``, the nice value
    the spawner gave it; returns how many threads were changed and one line per failure. A thread
    that exits meanwhile is not a failure. Two passes: a thread created while the first ran was
    created at ``value`` only if its creator had not been reached yet."""
    changed, failures = 0, []
    for _ in range(2):
        for process, tid in _tree(pid):
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) != value:
                    continue
                os.setpriority(os.PRIO_PROCESS, tid, base)
                changed += 1
            except ProcessLookupError:
                continue
            except OSError as exc:
                failures.append(f"pid {process} thread {tid}: nice {value} → {base}: {exc.strerror}")
        if failures:
            break
    return changed, failures
