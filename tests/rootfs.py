"""The Debian 13 (trixie) root file system the systemd 257 box boots: built once by debootstrap, cached
as a zstd tarball outside the checkout, unpacked per test session.

``python tests/rootfs.py build`` (what .ci/run calls) builds the tarball when it is missing and prints
its path; ``python tests/rootfs.py path`` prints where it is or would be. The cache file's name carries
a hash of the recipe below, so changing the recipe builds a new one (old ones can be deleted by hand).
The packages come from the Debian mirror this machine's apt is configured with (read from
/etc/apt/sources.list*, or ``$SOCKACT_DEBIAN_MIRROR``); the cache directory is ``/var/cache/sockact``
unless ``$SOCKACT_ROOTFS_CACHE`` says otherwise. Nothing here is committed or written into the checkout.
Stdlib only: .ci/run calls it before the venv exists.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

#: What the box is made of. Any change here changes the cache key.
SUITE = "trixie"
VARIANT = "minbase"
INCLUDE = ("systemd", "systemd-sysv", "python3", "curl", "procps")
#: Left out of the tarball: documentation, translations, package lists and caches, the CPython test
#: suite, and /dev (the box mounts its own tmpfs there).
TRIM = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/apt/lists/*",
    "var/log/*",
    "usr/lib/python3*/test",
    "usr/lib/python3*/idlelib",
    "usr/lib/python3*/tkinter",
    "dev/*",
)
RECIPE = {"suite": SUITE, "variant": VARIANT, "include": INCLUDE, "trim": TRIM, "format": 1}
CACHE = os.environ.get("SOCKACT_ROOTFS_CACHE", "/var/cache/sockact")


class RootfsError(RuntimeError):
    """The root file system cannot be built or found here; the message says why and what to do."""


def key() -> str:
    """A short hash of :data:`RECIPE`."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def tarball() -> str:
    """Where the cached tarball is (or will be)."""
    return os.path.join(CACHE, f"{SUITE}-{key()}.tar.zst")


def mirror() -> str:
    """The Debian mirror apt uses here: the first ``…/debian`` URI in /etc/apt/sources.list*."""
    if os.environ.get("SOCKACT_DEBIAN_MIRROR"):
        return os.environ["SOCKACT_DEBIAN_MIRROR"]
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]
    for path in files:
        if not path.endswith((".list", ".sources")) or not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                uris = words[1:] if words[:1] == ["URIs:"] else words[1:2] if words[:1] == ["deb"] else []
                for uri in uris:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    raise RootfsError("no Debian mirror in /etc/apt/sources.list*: set SOCKACT_DEBIAN_MIRROR to one")


def why_not_buildable() -> str | None:
    """Why :func:`build` cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (debootstrap needs root)"
    for tool in ("debootstrap", "zstd", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} missing (apt-get install debootstrap zstd)"
    return None


def build() -> str:
    """Build the tarball unless it exists; its path. Concurrent callers wait for one build (flock).

    Raises RootfsError when it cannot be built (with debootstrap's output)."""
    path = tarball()
    if os.path.exists(path):
        return path
    why = why_not_buildable()
    if why is not None:
        raise RootfsError(f"cannot build the {SUITE} root file system {path}: {why}")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):  # built by whoever held the lock
            return path
        work = tempfile.mkdtemp(prefix="build-", dir=CACHE)
        try:
            root = os.path.join(work, "root")
            began = time.monotonic()
            argv = ["debootstrap", f"--variant={VARIANT}", "--include=" + ",".join(INCLUDE), SUITE, root, mirror()]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                raise RootfsError(f"debootstrap exited {out.returncode}: {(out.stdout + out.stderr)[-3000:]}")
            for pattern in TRIM:
                for victim in glob.glob(os.path.join(root, pattern)):
                    if os.path.isdir(victim) and not os.path.islink(victim):
                        shutil.rmtree(victim)
                    else:
                        os.unlink(victim)
            staged = os.path.join(work, "rootfs.tar.zst")
            subprocess.run(
                ["tar", "-C", root, "--numeric-owner", "-I", "zstd -T0 -12", "-cf", staged, "."],
                check=True,
                timeout=900,
            )
            os.rename(staged, path)
            took = time.monotonic() - began
            size = os.path.getsize(path) / 1e6
            print(f"rootfs: built {path} ({size:.0f} MB) in {took:.0f} s", file=sys.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def ensure() -> str:
    """The tarball's path, building it first when it is missing and this machine can (root, debootstrap).

    Raises RootfsError saying why when it is missing and cannot be built."""
    return tarball() if os.path.exists(tarball()) else build()


def unpack(dest: str) -> str:
    """Unpack the tarball (built if needed) into the empty directory ``dest``; returns ``dest``."""
    path = ensure()
    subprocess.run(["tar", "-C", dest, "--numeric-owner", "-I", "zstd", "-xf", path], check=True, timeout=600)
    return dest


def main(argv: list[str]) -> int:
    if argv == ["path"]:
        print(tarball())
        return 0
    if argv == ["build"]:
        try:
            print(build())
        except RootfsError as exc:
            print(f"rootfs: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: rootfs.py build|path", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
