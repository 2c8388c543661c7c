"""Each example is a template: copied alone into an empty directory, it starts, serves and drains."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess

import pytest

from sockact._loadgen import get

from conftest import need_module
from helpers import PY, ROOT, FakeSystemd, child_env, free_port

EXAMPLES = sorted(p.name for p in pathlib.Path(ROOT, "examples").glob("*.py"))


def test_every_example_is_here() -> None:
    assert EXAMPLES == [
        "aiohttp_app.py",
        "asyncio_server.py",
        "http_server.py",
        "hypercorn_app.py",
        "tornado_app.py",
        "uvicorn_app.py",
        "waitress_app.py",
    ]


@pytest.mark.parametrize("example", EXAMPLES)
def test_an_example_copied_alone_runs(example: str, tmp_path: pathlib.Path) -> None:
    server = example.split("_")[0]
    if server not in ("http", "asyncio"):
        need_module(server)
    shutil.copy(os.path.join(ROOT, "examples", example), tmp_path)
    env = child_env()
    env.pop("PYTHONPATH")  # sockact as a user has it: installed, not a checkout beside the script
    port = free_port()
    with FakeSystemd() as systemd:
        env["NOTIFY_SOCKET"] = systemd.address
        proc = subprocess.Popen(
            [PY, example, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "5"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            systemd.wait_for(lambda m: m.pid == proc.pid and m.get("READY") == "1")
            assert get("127.0.0.1", port) == (200, proc.pid)
            assert get("127.0.0.1", port, "/sleep?seconds=0.01") == (200, proc.pid)
            assert get("127.0.0.1", port, "/sleep?seconds=soon")[0] == 400
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
