"""python-systemd's own test suite (its installed ``systemd/test/test_daemon.py``) run against
``sockact.daemon``: the drop-in must pass every test the original passes.

Their file is not copied into this repository: at test time it is copied next to a shim ``systemd``
package whose ``daemon`` module is ``sockact.daemon`` (plus the ``_is_*`` aliases the suite imports),
and pytest runs it in a child process with that shim first on ``sys.path``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

from conftest import need_module
from helpers import PY, ROOT, child_env, run_child, tcp_listener

pytestmark = pytest.mark.peer

SHIM = """\
from sockact.daemon import *  # noqa: F403
from sockact.daemon import (  # noqa: F401
    is_fifo as _is_fifo,
    is_mq as _is_mq,
    is_socket as _is_socket,
    is_socket_inet as _is_socket_inet,
    is_socket_sockaddr as _is_socket_sockaddr,
    is_socket_unix as _is_socket_unix,
)
"""


def test_python_systemd_test_daemon_passes_against_sockact(tmp_path: pathlib.Path) -> None:
    systemd = need_module("systemd.daemon")
    suite = pathlib.Path(systemd.__file__).parent / "test" / "test_daemon.py"
    assert suite.is_file(), f"python-systemd ships no {suite}"
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "__init__.py").write_text("")
    (tmp_path / "systemd" / "daemon.py").write_text(SHIM)
    (tmp_path / "test_daemon.py").write_text(suite.read_text())
    env = child_env({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    probe = subprocess.run(
        [PY, "-c", "import systemd.daemon as d; print(d.__file__)"], env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip() == str(tmp_path / "systemd" / "daemon.py"), probe  # the shim, not theirs
    result = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path)]
        + [str(tmp_path / "test_daemon.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 24 and "skipped" not in summary, summary


LISTEN_FDS_ONLY = r"""
from sockact import daemon as ours
from systemd import daemon as theirs
out = []
for names in ("a", "a:b:c:d", "trailing\\", ""):
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2", LISTEN_FDNAMES=names)
    mine = ours.listen_fds(False)
    out.append([names, mine, theirs.listen_fds(False)])
print(json.dumps(out))
"""


def test_listen_fds_never_reads_listen_fdnames() -> None:
    """sd_listen_fds(3) ignores LISTEN_FDNAMES: a count that does not match, or a syntax error in
    it, changes nothing (only listen_fds_with_names() fails on those), as in libsystemd."""
    need_module("systemd.daemon")
    with tcp_listener() as a, tcp_listener() as b:
        results = run_child(LISTEN_FDS_ONLY, [a.fileno(), b.fileno()], child_env())
    assert [r[1] for r in results] == [[3, 4]] * 4
    assert all(r[1] == r[2] for r in results), results
