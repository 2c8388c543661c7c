"""Shared fixtures. Peers (systemd tools, python-systemd, sdnotify) are required when
SOCKACT_REQUIRE_PEERS=1 (CI sets it): a missing peer then fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox import Sandbox

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


@pytest.fixture(scope="session")
def trixie_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The trixie tree for systemd 257 boxes, unpacked once per session (built first when missing and
    this machine can: root, debootstrap, zstd; ~1 min). Removed at the end of the session."""
    import rootfs

    from sandbox import available

    why = available("257")
    need_peer(f"a real systemd 257 sandbox ({why})", why is None)
    try:
        rootfs.ensure()
    except rootfs.RootfsError as exc:
        need_peer(f"a real systemd 257 sandbox ({exc})", False)
    # Beside the cache, not under pytest's basetemp (which keeps three sessions' worth).
    root = tempfile.mkdtemp(prefix="sockact-trixie-", dir=os.path.dirname(rootfs.tarball()))
    try:
        yield rootfs.unpack(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=["252", "257"], ids=["systemd252", "systemd257"])
def box_version(request: pytest.FixtureRequest) -> str:
    """Runs the module's tests once per systemd box (tests/sandbox.py): the host's 252, Debian 13's 257."""
    version: str = request.param
    return version


def boot_box(
    request: pytest.FixtureRequest, version: str, workdir: str, units: Mapping[str, str], keep: Iterable[str] = ()
) -> Sandbox:
    """A booted sandbox of ``version`` with ``units`` (skip, or in CI fail, when it cannot run here).
    The caller closes it (``with``)."""
    from sandbox import Sandbox, available, keep_for

    why = available(version)
    need_peer(f"a real systemd {version} sandbox ({why})", why is None)
    root = request.getfixturevalue("trixie_root") if version == "257" else None
    return Sandbox(workdir, units, [*keep_for(version), *keep], box=version, root=root)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The 257 box has only the stdlib and sockact: the shipped units of third-party servers run on
    the 252 box alone. Those combinations are not collected at all (a skip would hide a missing peer)."""
    from units import STDLIB_ONLY, shipped_pairs

    servers = [name for name in shipped_pairs() if name not in STDLIB_ONLY]
    items[:] = [item for item in items if not any(f"[systemd257-{name}]" in item.nodeid for name in servers)]
