"""Hostile input, table-driven: every bad input found so far (issue 16), one row each.

CLI rows run the real ``sockact`` command of this venv in a session of its own — directly, under
``systemd-socket-activate`` (the real peer), or with fds 3.. handed over exactly as systemd hands them
(LISTEN_PID set by the process itself) — and assert exit status 2, one line on stderr naming the
problem, no traceback, and that nothing it started is left running (no process of its session
survives it). Library rows run a snippet in a child with the same set-ups and assert the exception
(class and message) or the result. The next case found is one line in a table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from sockact._env import trampoline

from conftest import need_module, need_tool
from helpers import PY, child_env, free_port

SOCKACT = os.path.join(os.path.dirname(PY), "sockact")
LONG_NAME = "n" * 300


@dataclass(frozen=True)
class Case:
    """One hostile input. Placeholders in ``args``/``env``: {port} (a free port; the socket unit's, under
    ``activate``), {other} (another free port), {busy} (a port held by a listener, as a socket unit holds
    it), {tmp} (a private directory), {full} (a unix socket path whose live listener has a full backlog)."""

    id: str
    args: tuple[str, ...]  # sockact's arguments (CLI rows) or ("-c", CODE) for library rows
    expect: str  # a regular expression the one stderr line (CLI) or the child's JSON result must match
    inherit: tuple[str, ...] = ()  # fds 3.. handed over: "tcp", "fifo", "file", "connected"
    env: dict[str, str] = field(default_factory=dict)
    activate: tuple[str, ...] | None = None  # systemd-socket-activate options (it listens on {port})
    peers: tuple[str, ...] = ()  # python modules the row needs


def lib(code: str) -> tuple[str, ...]:
    """A library row: ``code`` runs in a child; its result or exception is printed as JSON."""
    body = "".join(f"    {line}\n" for line in code.strip().splitlines())
    return (
        "-c",
        "import json, os, sys\n"
        "try:\n"
        f"{body}"
        "except BaseException as e:\n"
        "    print(json.dumps({'error': [c.__name__ for c in type(e).__mro__], 'msg': str(e)}))\n"
        "else:\n"
        "    print(json.dumps({'ok': result}))\n",
    )


NAMED = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}

CLI = [
    # 1. a name mismatch under activation bound a second socket silently
    Case(
        "mismatch-fdname",
        ("run", "--listen", "http=127.0.0.1:{other}", "--", "true"),
        r"matches no inherited socket.*fd 3 'web'.*FileDescriptorName=.*--bind-missing",
        activate=("--fdname=web",),
    ),
    Case(
        "mismatch-address",
        ("run", "--listen", "http=127.0.0.1:{other}", "--", "true"),
        r"matches no inherited socket.*fd 3 'unknown'.*127\.0\.0\.1",
        activate=(),
    ),
    # 2. Accept=yes: a connected socket
    Case("accept-yes", ("run", "--", "true"), r"connected .*Accept=yes.*Accept=no", activate=("--accept",)),
    # 7. unchecked options
    Case("reload-signal-99", ("run", "--reload-signal", "99", "--", "true"), r"99: no such signal"),
    Case("reload-signal-KILL", ("run", "--reload-signal", "KILL", "--", "true"), r"SIGKILL cannot be the reload"),
    Case("reload-signal-TERM", ("run", "--reload-signal", "TERM", "--", "true"), r"SIGTERM cannot be .*stops"),
    Case("reload-signal-CHLD", ("run", "--reload-signal", "chld", "--", "true"), r"SIGCHLD cannot be"),
    Case("ready-timeout-negative", ("run", "--ready-timeout", "-1", "--", "true"), r"'-1': give a finite"),
    Case("ready-timeout-zero", ("run", "--ready-timeout", "0", "--", "true"), r"'0': give a finite .* > 0"),
    Case("ready-timeout-nan", ("run", "--ready-timeout", "nan", "--", "true"), r"'nan': give a finite"),
    Case("drain-timeout-negative", ("run", "--drain-timeout", "-1", "--", "true"), r"'-1': give a finite"),
    Case("drain-timeout-nan", ("run", "--drain-timeout", "nan", "--", "true"), r"'nan': give a finite"),
    Case("drain-timeout-inf", ("run", "--drain-timeout", "inf", "--", "true"), r"'inf': give a finite"),
    Case("ready-nan", ("run", "--ready", "nan", "--", "true"), r"'nan': use notify, spawn"),
    Case("ready-inf", ("run", "--ready", "inf", "--", "true"), r"'inf': use notify, spawn"),
    Case(
        "run-duplicate-listen",
        ("run", "--listen", "http=127.0.0.1:{port}", "--listen", "http=127.0.0.1:{other}", "--", "true"),
        r"--listen http given more than once",
    ),
    Case("run-listen-name-300", ("run", "--listen", f"{LONG_NAME}=127.0.0.1:0", "--", "true"), r"1-255 printable"),
    Case("run-pidfile-no-dir", ("run", "--pidfile", "{tmp}/missing/pid", "--", "true"), r"missing does not exist"),
    Case("demo-seconds-nan", ("demo", "--seconds", "nan"), r"'nan': give a finite"),
    Case("demo-seconds-inf", ("demo", "--seconds", "inf"), r"'inf': give a finite"),
    Case("demo-reloads-negative", ("demo", "--reloads", "-3"), r"'-3': give a whole number"),
    Case("demo-plot-no-dir", ("demo", "--plot", "{tmp}/missing/x.png"), r"--plot .*missing does not exist"),
    Case(
        "units-duplicate-listen",
        ("units", "app", "--listen", "http=8000", "--listen", "http=8001", "--out", "{tmp}", "--", "/bin/true"),
        r"--listen http given more than once",
    ),
    Case(
        "units-out-uncreatable",
        ("units", "app", "--listen", "http=8000", "--out", "/dev/null/units", "--", "/bin/true"),
        r"cannot create directory /dev/null/units",
    ),
    Case("units-drain-nan", ("units", "app", "--listen", "http=8000", "--drain-timeout", "nan"), r"'nan': give"),
    # 8. inherited non-sockets were dropped silently
    Case("run-inherited-fifo", ("run", "--", "true"), r"fd 3 'web' \(fifo\).*sockets only", ("fifo",), NAMED),
    Case("run-inherited-file", ("run", "--", "true"), r"fd 3 'web' \(regular file\)", ("file",), NAMED),
    Case("run-nothing-to-serve", ("run", "--", "true"), r"nothing to serve: no --listen"),
    # 10. messages that pointed the wrong way
    Case(
        "inherited-name-empty",
        ("run", "--", "true"),
        r"LISTEN_FDNAMES gives fd 3 the name '' \(0 characters\)",
        ("tcp",),
        {"LISTEN_FDS": "1", "LISTEN_FDNAMES": ""},
    ),
    Case(
        "inherited-name-300",
        ("run", "--", "true"),
        r"LISTEN_FDNAMES gives fd 3 the name 'n+'… \(300 characters\)",
        ("tcp",),
        {"LISTEN_FDS": "1", "LISTEN_FDNAMES": LONG_NAME},
    ),
    Case(
        "listen-pid-foreign",
        ("run", "--listen", "http=127.0.0.1:{busy}", "--", "true"),
        r"in use.*LISTEN_PID=1 names another process.*exec the program directly",
        env={"LISTEN_PID": "1", "LISTEN_FDS": "1"},
    ),
]

LIB = [
    Case(
        "lib-mismatch-fdname",
        lib("import sockact; result = sorted(sockact.get_listeners({'http': '127.0.0.1:{other}'}))"),
        r"ActivationError.*OSError.*matches no inherited socket.*fd 3 'web'.*bind_missing=True",
        ("tcp",),
        NAMED,
    ),
    Case(
        "lib-mismatch-bind-missing",
        lib(
            "import sockact\n"
            "ls = sockact.get_listeners({'http': '127.0.0.1:0'}, bind_missing=True)\n"
            "result = [sorted(ls.bound), list(ls.unclaimed.values())]"
        ),
        r'"ok": \[\["http"\], \["web"\]\]',
        ("tcp",),
        NAMED,
    ),
    Case(  # a predecessor's hand-over passes its own listeners: a new version may add one and drop one
        "lib-successor-changes-listeners",
        lib("import sockact; ls = sockact.get_listeners({'http': '127.0.0.1:0'})\nresult = sorted(ls.bound)"),
        r'"ok": \["http"\]',
        ("tcp",),
        {**NAMED, "SOCKACT_UPSTREAM_NOTIFY_SOCKET": ""},
    ),
    Case(
        "lib-accept-yes",
        lib("import sockact; result = sorted(sockact.get_listeners({'http': '127.0.0.1:1'}))"),
        r"ActivationError.*fd 3 named 'web' is a connected .*Accept=no",
        ("connected",),
        NAMED,
    ),
    Case(
        "lib-daemon-notify-errno-class",
        lib("from sockact import daemon\nos.environ['NOTIFY_SOCKET'] = '/dev/null'\ndaemon.notify('READY=1')"),
        r"NotifyError.*ConnectionRefusedError",
    ),
    Case(
        "lib-daemon-listen-fds-ignores-names",
        lib("from sockact import daemon; result = daemon.listen_fds()"),
        r'"ok": \[3\]',
        ("tcp",),
        {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b:c"},
    ),
    Case(
        "lib-notify-socket-stays",
        lib("import sockact; sockact.get_listeners({'http': '127.0.0.1:0'})\nresult = os.environ.get('NOTIFY_SOCKET')"),
        r'"ok": "/run/nobody/notify"',
        env={"NOTIFY_SOCKET": "/run/nobody/notify"},
    ),
    Case(
        "lib-unix-full-backlog",
        lib("import sockact; sockact.get_listeners({'u': '{full}'})"),
        r"AddressError.*another process is already listening on .*full\.sock",
    ),
    Case(
        "lib-inherited-name-300",
        lib("import sockact; sockact.get_listeners()"),
        r"ActivationError.*LISTEN_FDNAMES gives fd 3 the name 'n+'… \(300 characters\)",
        ("tcp",),
        {"LISTEN_FDS": "1", "LISTEN_FDNAMES": LONG_NAME},
    ),
    Case(  # found by this module under flock(1), which leaks its lock as fd 3: the child lost its socket
        "lib-spawn-over-a-leaked-fd-3",
        lib(
            "import socket, sys\n"
            "from sockact._spawn import spawn\n"
            "is_socket = 'import os, stat, sys; sys.exit(0 if stat.S_ISSOCK(os.fstat(3).st_mode) else 1)'\n"
            "with socket.socket() as s:\n"
            "    s.bind(('127.0.0.1', 0)); s.listen()\n"
            "    result = spawn([sys.executable, '-c', is_socket], [s.fileno()], ['http']).wait(30)"
        ),
        r'"ok": 0',
        ("file",),  # fd 3 of the row's process: open, not close-on-exec
    ),
    Case(
        "lib-listen-name-300",
        lib("import sockact; sockact.get_listeners({'" + LONG_NAME + "': '127.0.0.1:0'})"),
        r"SockactError.*not a valid FileDescriptorName=.*1-255",
    ),
]


# -- the machinery ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    left: list[int]  # pids of the row's session still alive after it exited


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


@contextlib.contextmanager
def _inherited(kinds: Sequence[str], tmp: str) -> Iterator[list[int]]:
    """Open fds of the given kinds (each stays open for the row's lifetime)."""
    with contextlib.ExitStack() as stack:
        fds: list[int] = []
        for i, kind in enumerate(kinds):
            if kind == "tcp":
                s = stack.enter_context(socket.socket())
                s.bind(("127.0.0.1", 0))
                s.listen()
                fds.append(s.fileno())
            elif kind == "connected":
                srv = stack.enter_context(socket.socket())
                srv.bind(("127.0.0.1", 0))
                srv.listen()
                stack.enter_context(socket.create_connection(srv.getsockname()))
                conn = stack.enter_context(srv.accept()[0])
                fds.append(conn.fileno())  # what Accept=yes hands over
            elif kind == "fifo":
                path = os.path.join(tmp, f"fifo{i}")
                os.mkfifo(path)
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
                stack.callback(os.close, fd)
                fds.append(fd)
            elif kind == "file":
                fd = os.open(os.path.join(tmp, f"file{i}"), os.O_RDWR | os.O_CREAT, 0o600)
                stack.callback(os.close, fd)
                fds.append(fd)
            else:
                raise AssertionError(kind)
        yield fds


@contextlib.contextmanager
def _full_backlog(path: str) -> Iterator[None]:
    """A live unix listener at ``path`` whose backlog is full: a blocking connect() to it would block."""
    with socket.socket(socket.AF_UNIX) as server, contextlib.ExitStack() as clients:
        server.bind(path)
        server.listen(0)
        for _ in range(64):
            c = clients.enter_context(socket.socket(socket.AF_UNIX))
            c.setblocking(False)
            try:
                c.connect(path)
            except BlockingIOError:
                break
        else:
            raise AssertionError("the backlog never filled")
        yield


def _spawn(argv: list[str], fds: Sequence[int], env: dict[str, str]) -> tuple[int, int, int]:
    """posix_spawn ``argv`` in a new session, ``fds`` on 3.., stdout/stderr to pipes: (pid, out, err)."""
    staged = [os.dup(fd) for fd in fds]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, fd in enumerate(staged)]
    actions += [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    finally:
        for fd in (*staged, out_w, err_w):
            os.close(fd)
    return pid, out_r, err_r


def _collect(pid: int, out_r: int, err_r: int, timeout: float) -> tuple[int, str, str]:
    """Read both pipes until EOF and reap ``pid``; bounded: SIGKILL (and fail) after ``timeout``."""
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = time.monotonic() + timeout
    open_fds = {out_r, err_r}
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 0.2)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)
    for fd in (out_r, err_r):
        os.close(fd)
    if open_fds:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"still running after {timeout} s: {b''.join(chunks[err_r]).decode(errors='replace')}")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks[out_r]).decode(), b"".join(chunks[err_r]).decode()


def _connect_soon(port: int, stop: threading.Event) -> None:
    """The first connection, which makes systemd-socket-activate start the service (bounded retries)."""
    for _ in range(500):
        if stop.is_set():
            return
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                with contextlib.suppress(OSError):
                    c.recv(1)  # until the service (or the tool) closes it
                return
        except OSError:
            time.sleep(0.02)


def run_case(case: Case, tmp: str, command: list[str]) -> Outcome:
    port, other = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        full = os.path.join(tmp, "full.sock")
        if any("{full}" in a for a in case.args):
            stack.enter_context(_full_backlog(full))
        values = {"port": port, "other": other, "busy": busy.getsockname()[1], "tmp": tmp, "full": full}

        def fill(text: str) -> str:
            for key, value in values.items():
                text = text.replace("{" + key + "}", str(value))
            return text

        args = [fill(a) for a in case.args]
        env = child_env({k: fill(v) for k, v in case.env.items()})
        fds = stack.enter_context(_inherited(case.inherit, tmp))
        argv = [*command, *args]
        if fds or (case.env.get("LISTEN_FDS") and "LISTEN_PID" not in case.env):
            env["LISTEN_FDS"] = env.get("LISTEN_FDS", str(len(fds)))
            argv = ["/bin/sh", "-c", trampoline(("LISTEN_PID",)), *argv]  # LISTEN_PID = its own pid, as systemd
        stop = threading.Event()
        if case.activate is not None:
            tool = need_tool("systemd-socket-activate")
            passed = [opt for var in ("PYTHONPATH", "NOTIFY_SOCKET") if var in env for opt in ("-E", var)]
            argv = [tool, "-l", f"127.0.0.1:{port}", *case.activate, *passed, *argv]
            threading.Thread(target=_connect_soon, args=(port, stop), daemon=True).start()
        pid, out_r, err_r = _spawn(argv, fds, env)
        try:
            if case.activate is not None and "--accept" in case.activate:
                # the tool stays up to accept more connections: stop it (ours, by pid) once the child spoke
                status, out, err = _collect_accept(pid, out_r, err_r)
            else:
                status, out, err = _collect(pid, out_r, err_r, timeout=60)
        finally:
            stop.set()
        if case.activate is not None:
            err = "".join(line for line in err.splitlines(keepends=True) if not TOOL_LINE.match(line))
        return Outcome(status, out, err, _session_members(pid))


#: What systemd-socket-activate itself writes to stderr (not the service's words).
TOOL_LINE = re.compile(r"^(Listening on|Communication attempt|Connection from|Spawned|Execing|Child \d+ died)")


def _collect_accept(pid: int, out_r: int, err_r: int) -> tuple[int, str, str]:
    """Under ``--accept`` the tool runs one child per connection and keeps listening: wait until it
    reports the child's exit ("Child N died with code C"), then SIGTERM the tool (ours, by pid)."""
    err = b""
    deadline = time.monotonic() + 60
    while not re.search(rb"Child \d+ died with code", err) and time.monotonic() < deadline:
        ready, _, _ = select.select([err_r], [], [], 0.2)
        if ready:
            chunk = os.read(err_r, 65536)
            if not chunk:
                break
            err += chunk
    os.kill(pid, signal.SIGTERM)
    _, out, rest = _collect(pid, out_r, err_r, timeout=30)
    died = re.search(r"Child \d+ died with code (-?\d+)", err.decode())
    return int(died.group(1)) if died else -1, out, err.decode() + rest


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_cli(case: Case, tmp_path: object) -> None:
    out = run_case(case, str(tmp_path), [SOCKACT])
    lines = out.stderr.strip().splitlines()
    assert out.status == 2, out
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.search(case.expect, lines[0]), lines[0]
    assert out.left == [], f"left running: {out.left}"


@pytest.mark.parametrize("case", LIB, ids=[c.id for c in LIB])
def test_library(case: Case, tmp_path: object) -> None:
    for module in case.peers:
        need_module(module)
    out = run_case(case, str(tmp_path), [PY])
    assert out.status == 0 and "Traceback" not in out.stderr, out
    result = json.loads(out.stdout)
    text = " ".join(result["error"]) + " " + result["msg"] if "error" in result else json.dumps(result)
    assert re.search(case.expect, text), text
    assert out.left == []


def test_sigterm_to_a_running_demo_leaves_no_server(tmp_path: object) -> None:
    """SIGTERM while `sockact demo` runs: it stops, and so does the demo server it started."""
    pid, out_r, err_r = _spawn(
        [SOCKACT, "demo", "--reloads", "0", "--seconds", "60"], [], child_env({"PYTHONUNBUFFERED": "1"})
    )
    text = b""
    deadline = time.monotonic() + 60
    while b"sent READY=1" not in text and time.monotonic() < deadline:
        ready, _, _ = select.select([out_r], [], [], 0.2)
        if ready:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            text += chunk
    found = re.search(rb"pid (\d+) sent READY=1", text)
    if not found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        pytest.fail(f"no READY=1: {text!r} {_collect(pid, out_r, err_r, timeout=30)}")
    server = int(found.group(1))
    os.kill(pid, signal.SIGTERM)
    status, _, err = _collect(pid, out_r, err_r, timeout=60)
    assert status != 0 and "Traceback" not in err, err
    assert _session_members(pid) == [] and not os.path.exists(f"/proc/{server}"), "the demo server outlived it"


def test_rows_cover_the_issue() -> None:
    """Every id is unique (a row is one line to add; a copy-paste must not shadow another)."""
    ids = [c.id for c in CLI + LIB]
    assert len(ids) == len(set(ids))
