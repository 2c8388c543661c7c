"""Shared fixtures. Peers (systemd tools, python-systemd, sdnotify) are required when
SOCKACT_REQUIRE_PEERS=1 (CI sets it): a missing peer then fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def make_certificate(directory: str) -> tuple[str, str]:
    """(cert, key): a self-signed certificate for localhost and 127.0.0.1, made by openssl."""
    openssl = need_tool("openssl")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


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
