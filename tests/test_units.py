"""Every unit pair in units/ passes `systemd-analyze verify` with a clean stderr (it exits 0 on many mistakes)."""

from __future__ import annotations

import os
import subprocess

import pytest

from units import localized, shipped_pairs

from conftest import need_tool


def verify(directory: str, files: list[str]) -> subprocess.CompletedProcess[str]:
    tool = need_tool("systemd-analyze")
    return subprocess.run(
        [tool, "verify", *(os.path.join(directory, f) for f in files)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )


@pytest.mark.peer
@pytest.mark.parametrize("name", shipped_pairs())
def test_shipped_units_verify_cleanly(name: str, tmp_path: object) -> None:
    files = localized(name)
    for filename, text in files.items():
        (tmp_path / filename).write_text(text)  # type: ignore[operator]
    out = verify(str(tmp_path), sorted(files))
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.peer
def test_verify_check_catches_a_mistake(tmp_path: object) -> None:
    """The check above can fail: a misspelt key exits 0 but warns on stderr."""
    files = localized(shipped_pairs()[0])
    for filename, text in files.items():
        (tmp_path / filename).write_text(text.replace("KillMode=", "KilMode="))  # type: ignore[operator]
    out = verify(str(tmp_path), sorted(files))
    assert out.returncode == 0 and "KilMode" in out.stderr
