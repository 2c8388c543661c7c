"""sockact.daemon against python-systemd (libsystemd) on the same environment and fds, in child processes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import need_module
from helpers import child_env, run_child, tcp_listener

pytestmark = pytest.mark.peer

COMPARE = r"""
import errno
from sockact import daemon as ours
from systemd import daemon as theirs
VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
def outcome(fn):
    try:
        return {"ok": {str(k): v for k, v in fn(False).items()}}
    except OSError as e:
        return {"errno": e.errno}
results = []
for case in CASES:
    for var in VARS:
        os.environ.pop(var, None)
    for var, value in case.items():
        os.environ[var] = value.replace("SELF", str(os.getpid()))
    results.append({"case": case, "sockact": outcome(ours.listen_fds_with_names),
                    "libsystemd": outcome(theirs.listen_fds_with_names)})
print(json.dumps(results))
"""

EDGE = [
    {},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b:c"},
    {"LISTEN_PID": "1", "LISTEN_FDS": "1"},  # PID mismatch
    {"LISTEN_PID": "0", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "-5", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "garbage", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "0"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "-1"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "garbage"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"},  # name-count mismatch
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "2", "LISTEN_FDNAMES": ":"},  # empty names
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": ""},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "3"},  # absent names
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "5"},  # more than are open: EBADF
    {"LISTEN_PID": " SELF", "LISTEN_FDS": "0x2"},
    {"LISTEN_PID": "SELF ", "LISTEN_FDS": "1"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "99999999999"},
    {"LISTEN_PID": "SELF", "LISTEN_FDNAMES": "x"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a\\:b"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a\\\\:b"},
    {"LISTEN_FDNAMES": "trailing\\"},
    {"LISTEN_PID": "SELF", "LISTEN_FDS": "2000000000"},  # far more than are open: EBADF, no giant list
]


def compare(cases: list[dict[str, str]]) -> None:
    need_module("systemd.daemon")
    fds = [tcp_listener() for _ in range(3)]
    results = run_child(COMPARE.replace("CASES", repr(cases)), [s.fileno() for s in fds], child_env())
    disagreements = [r for r in results if r["sockact"] != r["libsystemd"]]
    assert not disagreements, disagreements[:5]
    assert len(results) == len(cases)


def test_edge_cases_agree() -> None:
    compare(EDGE)


_NUM = st.text(alphabet=" \t\n\r\x0b\x0c+-0123456789abxoXBO", max_size=7)
_PID = st.one_of(
    _NUM,
    st.builds(
        lambda a, b: a + "SELF" + b, st.sampled_from(["", " ", "+", "0", "\t"]), st.sampled_from(["", " ", "x", "0"])
    ),
)
_CASE = st.fixed_dictionaries(
    {},
    optional={
        "LISTEN_PID": _PID,
        "LISTEN_FDS": st.one_of(_NUM, st.sampled_from(["1", "2", "3", "4", "0x3", "0b11", "011", " 2", "+1"])),
        "LISTEN_FDNAMES": st.text(alphabet="ab:", max_size=5),
    },
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CASE, min_size=40, max_size=40))
def test_generated_cases_agree(cases: list[dict[str, str]]) -> None:
    compare(cases)
