"""Boot a real systemd in private namespaces for a test, with only our own units.

The recipe (never run systemd any other way here: outside it, it would run systemd-tmpfiles and
wipe the machine's /tmp): ``unshare --pid --fork --kill-child --mount --mount-proc --propagation
private`` running a script that mounts tmpfs on /run, /tmp and /var/tmp *before* exec'ing
``systemd --system`` with ``container=sockact-test`` and ``SYSTEMD_UNIT_PATH`` = a private directory.
Paths the services need that live under those mounts (the checkout, the venv, the test's log
directory) are bind-mounted back over the fresh tmpfs. The network namespace is shared, so sockets
are reached on 127.0.0.1 from the test. Closing kills unshare by pid; --kill-child then takes the
whole pid namespace with it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

SYSTEMD = "/lib/systemd/systemd"
_STUB_TARGETS = (
    "sysinit",
    "sockets",
    "basic",
    "local-fs",
    "swap",
    "shutdown",
    "umount",
    "timers",
    "paths",
    "slices",
    "network",
    "multi-user",
    "emergency",
    "rescue",
)
_MASKED = ("/tmp", "/var/tmp", "/run")


def available() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("unshare", "nsenter", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} missing"
    return None


def _masked(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in _MASKED)


class Sandbox:
    """A booted systemd: ``systemctl(...)``, ``show(unit, prop)``, ``close()`` (idempotent)."""

    def __init__(self, workdir: str, units: Mapping[str, str], keep: Iterable[str]) -> None:
        self.workdir = workdir
        unit_dir = os.path.join(workdir, "units")
        os.makedirs(unit_dir, exist_ok=True)
        for name in _STUB_TARGETS:
            with open(os.path.join(unit_dir, f"{name}.target"), "w") as f:
                f.write(f"[Unit]\nDescription=stub {name}\n")
        with open(os.path.join(unit_dir, "sockact-test.target"), "w") as f:
            f.write("[Unit]\nDescription=sockact test sandbox\n")
        for name, text in units.items():
            with open(os.path.join(unit_dir, name), "w") as f:
                f.write(text)
        keep_paths = sorted({os.path.realpath(p) for p in [workdir, *keep]})
        preserved = [p for p in keep_paths if _masked(p)]
        lines = ["set -e", "mount -t tmpfs tmpfs /run", "mkdir -p /run/systemd/system /run/sockact-units"]
        lines.append(f"cp {shlex.quote(unit_dir)}/* /run/sockact-units/")
        for i, path in enumerate(preserved):
            lines += [f"mkdir -p /run/sockact-keep/{i}", f"mount --bind {shlex.quote(path)} /run/sockact-keep/{i}"]
        lines += ["mount -t tmpfs tmpfs /tmp", "mount -t tmpfs tmpfs /var/tmp"]
        for i, path in enumerate(preserved):
            if path.startswith("/run"):
                continue  # /run/sockact-keep itself is on the new /run
            lines += [f"mkdir -p {shlex.quote(path)}", f"mount --bind /run/sockact-keep/{i} {shlex.quote(path)}"]
        lines += [
            "export container=sockact-test SYSTEMD_UNIT_PATH=/run/sockact-units",
            f"exec {SYSTEMD} --system --unit=sockact-test.target --log-target=console",
        ]
        script = os.path.join(workdir, "boot.sh")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(workdir, "systemd.log")
        with open(self.log, "ab") as out:
            self._unshare = subprocess.Popen(
                [
                    "unshare",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount",
                    "--mount-proc",
                    "--propagation",
                    "private",
                    "/bin/sh",
                    script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self.pid = self._find_systemd()
            self._wait_running()
        except BaseException:
            self.close()
            raise

    def _find_systemd(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                raise RuntimeError(f"sandbox exited early: {self.output()[-2000:]}")
            try:
                with open(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                for kid in kids:
                    with open(f"/proc/{kid}/comm") as f:
                        if f.read().strip() == "systemd":
                            return kid
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.02)
        raise TimeoutError(f"systemd did not start: {self.output()[-2000:]}")

    def _wait_running(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.systemctl("is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"systemd state {state!r}: {self.output()[-2000:]}")

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def command(self, *argv: str) -> list[str]:
        """``argv`` as a command line that runs inside the sandbox's mount and pid namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-p", *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the sandbox's mount and pid namespaces."""
        return subprocess.run(self.command(*argv), capture_output=True, text=True, check=check, timeout=60)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", unit, "-p", prop, "--value").stdout.strip()

    def close(self) -> None:
        if self._unshare.poll() is None:
            self._unshare.kill()  # by pid; --kill-child ends systemd and so the whole namespace
        self._unshare.wait(30)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
