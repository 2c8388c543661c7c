"""Boot a real systemd in private namespaces for a test, with only our own units: the host's (252,
Debian 12) or Debian 13's (257) from a cached root file system (tests/rootfs.py).

Never run systemd any other way here: outside these recipes it would run systemd-tmpfiles and wipe the
machine's /tmp. Both recipes share: ``unshare --pid --fork --kill-child --mount --mount-proc
--propagation private``, tmpfs on /run, /tmp and /var/tmp *before* systemd starts, ``container=``
set, ``SYSTEMD_UNIT_PATH`` = a private copy of our units, the host's network namespace (sockets are
reached on 127.0.0.1 from the test), and close = kill unshare by pid (--kill-child then takes the whole
pid namespace with it).

* ``box="252"``: the host's /lib/systemd/systemd in the host's file system. Paths the services need
  under the masked directories (the checkout, the venv, the test's log directory) are bind-mounted back
  over the fresh tmpfs. Services run on the test's own interpreter.
* ``box="257"``: systemd 257 chrooted into the unpacked trixie tree. The host's cgroup tree is a v1+v2
  hybrid, which 257 refuses, so the box's first process moves into a fresh subgroup of the host's
  cgroup2 (removed on close), ``unshare --cgroup`` makes that its root, and a new cgroup2 is mounted at
  ROOT/sys/fs/cgroup ("full unified hierarchy"). Inside: ROOT bound onto itself, proc, read-only sysfs,
  a tmpfs /dev with null/zero/full/random/urandom/tty bound in and a devpts, tmpfs on ROOT/run, ROOT/tmp,
  ROOT/var/tmp, then the ``keep`` paths bound in at their own paths (the workdir read-write, the rest
  read-only), then ``chroot ROOT env -i container=… SYSTEMD_UNIT_PATH=… SYSTEMD_GENERATOR_PATH=/nonexistent
  SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/nonexistent systemd --system``. The host's /tmp, /run and unit
  paths are never visible in it. Services run on trixie's /usr/bin/python3 with PYTHONPATH at the
  checkout (stdlib + sockact: no third-party servers in the box).

``command()``/``run()``/``systemctl()`` enter the box's namespaces (and for 257 its root), so
``systemctl`` is the box's own client, never the host's for the 257 manager.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

#: The boxes, by systemd version.
BOXES = ("252", "257")
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
_UNITS_INSIDE = "/run/sockact-units"
_TRIXIE_SYSTEMD = "/usr/lib/systemd/systemd"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The interpreter a box's services name in ExecStart=: the test's own, or trixie's python3 (3.13).
PYTHON = {"252": sys.executable, "257": "/usr/bin/python3"}


def keep_for(box: str) -> list[str]:
    """What a box needs bound in besides its workdir: the checkout, and for 252 the test's interpreter."""
    if box == "257":
        return [_CHECKOUT]
    return [_CHECKOUT, sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]


def host_cgroup2() -> str | None:
    """Where the host's cgroup2 hierarchy is mounted (hybrid: /sys/fs/cgroup/unified), or None."""
    with open("/proc/self/mounts") as f:
        mounts = {fields[1]: fields[2] for fields in (line.split() for line in f)}
    for path in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if mounts.get(path) == "cgroup2":
            return path
    return None


def available(box: str = "252") -> str | None:
    """Why ``box`` cannot run here, or None. For 257 a missing root file system counts as available
    when it can be built here (root, debootstrap, zstd): the box builds it on first use."""
    if box not in BOXES:
        raise ValueError(f"unknown box {box!r}: one of {', '.join(BOXES)}")
    if os.geteuid() != 0:
        return "not root"
    for tool in ("unshare", "nsenter", "systemctl", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    if box == "252":
        return None if os.access(SYSTEMD, os.X_OK) else f"{SYSTEMD} missing"
    import rootfs

    if host_cgroup2() is None:
        return "no cgroup2 hierarchy on the host (systemd 257 needs one)"
    if os.path.exists(rootfs.tarball()):
        return None
    why = rootfs.why_not_buildable()
    return None if why is None else f"no {rootfs.tarball()} and it cannot be built here: {why}"


def _masked(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in _MASKED)


def _q(path: str) -> str:
    return shlex.quote(path)


def _boot_252(unit_dir: str, keep_paths: list[str], console: str) -> list[str]:
    """The host-systemd recipe: mask /run, /tmp, /var/tmp and bind the kept paths back over them."""
    preserved = [p for p in keep_paths if _masked(p)]
    lines = [f"mount --bind {_q(console)} /dev/console"]  # its own console, never the host's
    lines += ["mount -t tmpfs tmpfs /run", f"mkdir -p /run/systemd/system {_UNITS_INSIDE}"]
    lines.append(f"cp {_q(unit_dir)}/* {_UNITS_INSIDE}/")
    for i, path in enumerate(preserved):
        lines += [f"mkdir -p /run/sockact-keep/{i}", f"mount --bind {_q(path)} /run/sockact-keep/{i}"]
    lines += ["mount -t tmpfs tmpfs /tmp", "mount -t tmpfs tmpfs /var/tmp"]
    for i, path in enumerate(preserved):
        if path.startswith("/run"):
            continue  # /run/sockact-keep itself is on the new /run
        lines += [f"mkdir -p {_q(path)}", f"mount --bind /run/sockact-keep/{i} {_q(path)}"]
    lines += [
        f"export container=sockact-test SYSTEMD_UNIT_PATH={_UNITS_INSIDE} SYSTEMD_COLORS=0",
        f"exec {SYSTEMD} --system --unit=sockact-test.target --log-target=console",
    ]
    return lines


def _boot_257(root: str, unit_dir: str, keep_paths: list[str], writable: str, console: str) -> list[str]:
    """The trixie recipe: a private root with its own /proc, /sys, cgroup2, /dev, /run, /tmp, /var/tmp."""
    r = _q(root)
    lines = [
        f"mount --bind {r} {r}",
        f"mount -t proc proc {r}/proc",
        f"mount -t sysfs -o ro sysfs {r}/sys",
        f"mount -t cgroup2 cgroup2 {r}/sys/fs/cgroup",
        f"mount -t tmpfs -o mode=755 tmpfs {r}/dev",
    ]
    for dev in _DEVICES:
        lines += [f"touch {r}/dev/{dev}", f"mount --bind /dev/{dev} {r}/dev/{dev}"]
    lines += [f"touch {r}/dev/console", f"mount --bind {_q(console)} {r}/dev/console"]
    lines += [
        f"mkdir {r}/dev/pts {r}/dev/shm",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {r}/dev/pts",
        f"ln -s pts/ptmx {r}/dev/ptmx",
    ]
    for masked in _MASKED:
        lines.append(f"mount -t tmpfs tmpfs {r}{masked}")
    lines += [f"mkdir -p {r}/run/systemd/system {r}{_UNITS_INSIDE}", f"cp {_q(unit_dir)}/* {r}{_UNITS_INSIDE}/"]
    for path in keep_paths:
        inside = _q(root + path)
        lines += [f"mkdir -p {inside}", f"mount --bind {_q(path)} {inside}"]
        if path != writable:
            lines.append(f"mount -o remount,bind,ro {inside}")
    env = [
        "container=sockact-test",
        "SYSTEMD_COLORS=0",
        f"SYSTEMD_UNIT_PATH={_UNITS_INSIDE}",
        "SYSTEMD_GENERATOR_PATH=/nonexistent",
        "SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/nonexistent",
    ]
    systemd = f"{_TRIXIE_SYSTEMD} --system --unit=sockact-test.target --log-target=console"
    return [*lines, f"exec chroot {r} /usr/bin/env -i {' '.join(env)} {systemd}"]


class Sandbox:
    """A booted systemd: ``systemctl(...)``, ``show(unit, prop)``, ``run(...)``, ``command(...)``,
    ``close()`` (idempotent). ``box`` picks the recipe ("252" or "257", see the module docstring);
    ``python`` is the interpreter its services should name in ExecStart=. For 257, ``root`` is an
    unpacked trixie tree (tests/rootfs.py) that may be shared by boxes one after another; without it
    the box unpacks its own beside the cached tarball (~1 s) and removes it on close."""

    def __init__(
        self,
        workdir: str,
        units: Mapping[str, str],
        keep: Iterable[str],
        box: str = "252",
        root: str | None = None,
    ) -> None:
        why = available(box)
        if why is not None:
            raise RuntimeError(f"the systemd {box} sandbox cannot run here: {why}")
        self.workdir, self.box = workdir, box
        self.python = PYTHON[box]
        self._cgroup: str | None = None
        self._own_root: str | None = None
        self._unshare: subprocess.Popen[bytes] | None = None
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
        self.log = os.path.join(workdir, "systemd.log")
        self._console = _Console(self.log)  # the manager logs to a tty only: a pty bound over /dev/console
        unshare = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
        unshare += ["--propagation", "private"]
        if box == "257":
            if root is None:
                import rootfs

                root = self._own_root = rootfs.unpack(
                    tempfile.mkdtemp(prefix="sockact-trixie-", dir=os.path.dirname(rootfs.tarball()))
                )
            self.root: str | None = os.path.realpath(root)
            lines = _boot_257(self.root, unit_dir, keep_paths, os.path.realpath(workdir), self._console.tty)
            cgroup2 = host_cgroup2()
            assert cgroup2 is not None  # available() checked
            self._cgroup = tempfile.mkdtemp(prefix="sockact-box-", dir=cgroup2)
            # The first process joins the fresh subgroup, then unshare makes it the box's cgroup root.
            argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self._cgroup]
            argv += [*unshare, "--cgroup", "--uts", "--ipc"]
        else:
            self.root = None
            lines = _boot_252(unit_dir, keep_paths, self._console.tty)
            argv = unshare
        script = os.path.join(workdir, "boot.sh")
        with open(script, "w") as f:
            f.write("\n".join(["set -e", *lines]) + "\n")
        with open(self.log, "ab") as out:
            self._unshare = subprocess.Popen(
                [*argv, "/bin/sh", script], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self._enter = ["nsenter", "-t", "0", "-m", "-p"]
        try:
            self.pid = self._find_systemd()
            self._enter = ["nsenter", "-t", str(self.pid), "-m", "-p"]
            if box == "257":
                self._enter += ["-C", "-u", "-i", "-r", "-w"]  # its cgroup, uts, ipc namespaces and its root
            self._wait_running()
        except BaseException:
            self.close()
            raise

    def _find_systemd(self, timeout: float = 20) -> int:
        assert self._unshare is not None
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
            time.sleep(0.02)
        raise TimeoutError(f"systemd state {state!r}: {self.output()[-2000:]}")

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def command(self, *argv: str) -> list[str]:
        """``argv`` as a command line that runs inside the sandbox's namespaces (257: and its root)."""
        return [*self._enter, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the sandbox's namespaces (257: with the box's own binaries)."""
        return subprocess.run(self.command(*argv), capture_output=True, text=True, check=check, timeout=60)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The box's own systemctl (257's client for the 257 box)."""
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", unit, "-p", prop, "--value").stdout.strip()

    def uid(self, pid: int | str) -> int:
        """The uid a process of the box runs as (the owner of its /proc entry, in the box's pid namespace)."""
        return int(self.run("stat", "-c", "%u", f"/proc/{pid}").stdout)

    def activate(self, name: str, port: int) -> int:
        """Start ``name``.socket, activate the service with a first request, and wait for its start job
        (READY=1): the pid that served it. A `systemctl reload` queued while the start job still runs is
        merged into that job and never reaches the service (systemd's job merging), so a test that
        reloads right after the first request must wait for the start job first."""
        from sockact._loadgen import get

        self.systemctl("start", f"{name}.socket")
        pid = get("127.0.0.1", port)[1]
        self.systemctl("start", f"{name}.service")  # joins the running start job; returns when it is done
        return pid

    def close(self) -> None:
        if self._unshare is not None:
            if self._unshare.poll() is None:
                self._unshare.kill()  # by pid; --kill-child ends systemd and so the whole namespace
            self._unshare.wait(30)
        if self._cgroup is not None:
            _remove_cgroup(self._cgroup)
            self._cgroup = None
        if hasattr(self, "_console"):
            self._console.close()
        if self._own_root is not None:  # only once the box's mount namespace is gone
            shutil.rmtree(self._own_root, ignore_errors=True)
            self._own_root = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Console:
    """A pty whose slave is the box's /dev/console; a thread appends what the manager writes to ``log``.
    (systemd logs to the console only if it is a terminal.) ``close()`` is idempotent."""

    def __init__(self, log: str) -> None:
        self._master, self._slave = os.openpty()  # the slave stays open here: no hang-up between writes
        os.set_blocking(self._master, False)
        self.tty = os.ttyname(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[1] &= ~termios.OPOST  # no \n → \r\n
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self._log = open(log, "ab")  # noqa: SIM115 (closed by close())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        while True:  # ends with close(): the flag, then one last drain
            stopping = self._stop.is_set()
            ready, _, _ = select.select([self._master], [], [], 0.1)
            while ready:
                try:
                    data = os.read(self._master, 65536)
                except (BlockingIOError, OSError):
                    break
                self._log.write(data.replace(b"\r", b""))
                self._log.flush()
            if stopping:
                return

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        os.close(self._master)
        os.close(self._slave)
        self._log.close()


def _remove_cgroup(top: str, timeout: float = 10) -> None:
    """rmdir the box's cgroup subtree, deepest first, once its processes are gone (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for path, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
                os.rmdir(path)
            return
        except FileNotFoundError:
            pass  # a subgroup went away meanwhile: walk again
        except OSError:  # EBUSY: the kernel is still tearing down the last processes
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)
