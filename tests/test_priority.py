"""A successor starts nicer while the old generation serves and gets the spawner's nice value back at
the hand-over: the pure decision, then real processes (threads, a forked grandchild, a thread the
app moved itself), then through `sockact run` and the in-process upgrader."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

import sockact
from sockact._priority import _by_parent, _descendants, lowered_nice, restore, start_nice
from sockact._spawn import spawn

INF = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("base", "increment", "soft", "cap", "expected"),
    [
        (0, 10, 0, True, 10),  # root, or CAP_SYS_NICE: it can always be given back
        (0, 10, 0, False, None),  # the default RLIMIT_NICE of 0: 10 → 0 would be refused, so not lowered
        (0, 10, 20, False, 10),  # LimitNICE=+0: back to 0 and no further
        (0, 10, 19, False, None),  # allows 1 at best: not back to 0
        (5, 10, 15, False, 15),  # Nice=5 in the unit: back to 5 needs 20 - 5
        (5, 10, 14, False, None),
        (0, 10, INF, False, 10),  # no limit at all
        (12, 10, INF, True, 19),  # capped at the top
        (19, 10, INF, True, None),  # at the top already: nothing to lower
        (0, 0, INF, True, None),  # start_nice=0: off
        (-5, 10, 0, True, 5),  # a privileged service at -5 starts its successors at 5
        (-5, 10, 20, False, None),  # back to -5 is beyond LimitNICE=+0
    ],
)
def test_a_successor_is_lowered_only_when_the_value_can_be_given_back(
    base: int, increment: int, soft: int, cap: bool, expected: int | None
) -> None:
    assert start_nice(base, increment, soft, cap) == expected


# The child (fd 3: where it reports, fd 4: closed by the test to end it): a thread, a forked grandchild
# with a thread of its own, and a thread that moves itself to nice 18 (the app's choice, left alone).
CHILD = r"""
import json, os, threading
stop, moved_now = threading.Event(), threading.Event()
moved = []
def move():
    os.setpriority(os.PRIO_PROCESS, 0, 18)
    moved.append(threading.get_native_id())
    moved_now.set()
    stop.wait()
threading.Thread(target=stop.wait, daemon=True).start()
threading.Thread(target=move, daemon=True).start()
started_r, started_w = os.pipe()
grandchild = os.fork()
if grandchild == 0:
    threading.Thread(target=stop.wait, daemon=True).start()
    os.write(started_w, b"x")
    os.read(4, 1)
    os._exit(0)
os.read(started_r, 1)
assert moved_now.wait(30)
os.write(3, json.dumps({"grandchild": grandchild, "moved": moved[0]}).encode() + b"\n")
os.read(4, 1)
os.waitpid(grandchild, 0)
"""


def _nices(pid: int) -> dict[int, int]:
    """Each thread's nice value (setpriority(2) takes a thread id under PRIO_PROCESS on Linux)."""
    return {int(t): os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_spawn_lowers_a_child_and_restore_gives_every_thread_of_its_tree_back() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = lowered_nice(10)
    if wanted is None:
        pytest.skip("this runner could not give a raised nice value back (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    report_r, report_w = os.pipe()
    stop_r, stop_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = spawn([sys.executable, "-c", CHILD], [report_w, stop_r], ["report", "stop"], environ=env, nice=10)
    os.close(report_w)
    os.close(stop_r)
    try:
        with os.fdopen(report_r) as report:
            told = json.loads(report.readline())
        assert child.niced == wanted
        value = wanted[0]
        before = {**_nices(child.pid), **_nices(told["grandchild"])}
        assert len(before) == 5
        tree = [child.pid, told["grandchild"]]
        assert sorted(_descendants(child.pid)) == sorted(_by_parent(child.pid)) == sorted(tree)  # both ways agree
        assert before.pop(told["moved"]) == 18
        assert set(before.values()) == {value}  # inherited across exec, thread creation and fork
        assert child.restore_priority() == []
        after = {**_nices(child.pid), **_nices(told["grandchild"])}
        assert after.pop(told["moved"]) == 18  # the app's own choice stays
        assert set(after.values()) == {base}
        assert child.niced is None and child.restore_priority() == []  # once
    finally:
        os.close(stop_w)
        assert child.wait(30) == 0
        child.close()


def test_restore_skips_a_process_that_exited() -> None:
    gone = spawn([sys.executable, "-c", "pass"])
    assert gone.wait(30) == 0
    gone.close()
    assert restore(gone.pid, 10, 0) == []  # reaped: nothing to change, and not a failure


def test_root_in_a_user_namespace_is_not_taken_for_privileged() -> None:
    """CapEff counts in the process's own user namespace, setpriority(2) in the initial one: root in a
    container must not raise a nice value it cannot give back (it would keep the successor niced)."""
    code = "import resource; from sockact._priority import lowered_nice; "
    code += "print(lowered_nice(10), resource.getrlimit(resource.RLIMIT_NICE)[0])"
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if out.returncode != 0 and "unshare" in out.stderr:
        pytest.skip(f"no user namespaces here: {out.stderr.strip()}")
    niced, soft = out.stdout.split()
    assert niced == "None" or int(soft) >= 20, out.stdout  # only the limit can allow it there


def test_a_negative_increment_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="nice is an increment of 0 or more"):
        spawn([sys.executable, "-c", "pass"], nice=-1)


@pytest.mark.parametrize("value", [-1, 20, 2.5, True, "10"])
def test_an_upgrader_refuses_a_start_nice_out_of_range(value: object) -> None:
    with sockact.get_listeners({"http": "127.0.0.1:0"}, environ={}) as ls:
        with pytest.raises(ValueError, match="start_nice is a nice increment from 0 \\(none\\) to 19"):
            sockact.Upgrader(ls, start_nice=value)  # type: ignore[arg-type]
