"""The one spawn path, in a process whose own fds are not tidy (as under `flock FILE cmd`)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from helpers import child_env

LEAKY_PARENT = r"""
import json, os, socket, sys
from sockact._spawn import spawn
leak = os.open("/dev/null", os.O_RDONLY)
if leak != 3:
    os.dup2(leak, 3)
    os.close(leak)
os.set_inheritable(3, True)  # a non-CLOEXEC fd sitting where the child's first listener goes
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen()
    probe = "import json, socket; s = socket.socket(fileno=3); print(json.dumps(s.getsockname()))"
    child = spawn([sys.executable, "-c", probe], [s.fileno()], ["http"], environ=dict(os.environ))
    print(json.dumps({"code": child.wait(20), "want": list(s.getsockname())}), file=sys.stderr)
"""


def test_a_leaked_fd_on_a_target_does_not_close_the_listener() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LEAKY_PARENT], env=child_env(), capture_output=True, text=True, timeout=60
    )
    result = json.loads(out.stderr.strip().splitlines()[-1])  # the parent's verdict; the child's on stdout
    assert result["code"] == 0, out.stderr
    assert json.loads(out.stdout) == result["want"]  # the child's fd 3 is our listener, not closed


@pytest.mark.parametrize(
    ("command", "path"),
    [
        ("sh", None),
        ("/bin/sh", None),
        ("no-such-command-here", None),
        ("sh", "/nonexistent:/bin"),
        ("sh", ""),
        ("/etc", None),
        (os.path.join(os.path.dirname(__file__), "shell_child.sh"), None),
        (os.path.dirname(__file__), None),
        ("shell_child.sh", os.path.dirname(__file__)),
        ("shell_child.sh", None),
    ],
)
def test_the_executable_check_finds_what_shutil_which_finds(command: str, path: str | None) -> None:
    """spawn() checks its command without importing shutil (every successor imports _spawn); the
    check must agree with shutil.which, which it replaces."""
    import shutil

    from sockact._spawn import _found

    assert _found(command, path) == (shutil.which(command, path=path) is not None)


@pytest.mark.parametrize("path", ["", ":", "bin", "nowhere"])
def test_the_executable_check_reads_path_like_shutil_which(
    path: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An executable in the current directory: PATH="" finds nothing, PATH=":" finds it, a relative
    PATH entry is relative to the current directory — all as shutil.which decides."""
    import shutil

    from sockact._spawn import _found

    for where in (tmp_path, tmp_path / "bin"):
        where.mkdir(exist_ok=True)
        (where / "mycmd").write_text("#!/bin/sh\n")
        (where / "mycmd").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert _found("mycmd", path) == (shutil.which("mycmd", path=path) is not None)
