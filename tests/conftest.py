"""Shared fixtures. Peers (systemd tools, python-systemd, sdnotify) are required when
SOCKACT_REQUIRE_PEERS=1 (CI sets it): a missing peer then fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

REQUIRE_PEERS = os.environ.get("SOCKACT_REQUIRE_PEERS") == "1"


def need_peer(name: str, available: bool) -> None:
    """Skip (or, in CI, fail) when an interop peer is missing."""
    if available:
        return
    message = f"peer missing: {name}"
    if REQUIRE_PEERS:
        pytest.fail(message + " (SOCKACT_REQUIRE_PEERS=1 makes this an error)")
    pytest.skip(message)


def need_tool(tool: str) -> str:
    path = shutil.which(tool)
    need_peer(tool, path is not None)
    assert path is not None
    return path


def need_module(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        need_peer(f"python module {name}", False)


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from sockact import _procenv

    _procenv._reset()
    for var in (
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "LISTEN_PIDFDID",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ):
        monkeypatch.delenv(var, raising=False)
