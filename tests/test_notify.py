"""sd_notify both ways with real peers: systemd-notify, sdnotify, python-systemd, and sockact itself."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

import pytest

import sockact
from sockact import NotifyError, NotifyReceiver
from sockact._journal import JournalFormatter, stream_is_journal, syslog_priority
from sockact._message import format_message, parse_message

from conftest import need_module, need_tool
from helpers import child_env, python_prints


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> NotifyReceiver:
    with NotifyReceiver(abstract=request.param == "abstract") as r:
        yield r
    assert r.closed


def env_for(r: NotifyReceiver) -> dict[str, str]:
    return {"NOTIFY_SOCKET": r.address}


def open_fds() -> set[int]:
    return {int(f) for f in os.listdir("/proc/self/fd")}


@pytest.mark.peer
@pytest.mark.parametrize("no_block", [True, False])
def test_systemd_notify_peer(receiver: NotifyReceiver, no_block: bool) -> None:
    tool = need_tool("systemd-notify")
    args = [tool, "--ready", "--status=serving on 8080", f"--pid={os.getpid()}"] + (["--no-block"] if no_block else [])
    receiver.allow(os.getpid())
    before = open_fds()
    start = time.monotonic()
    proc = subprocess.Popen(args, env={**os.environ, **env_for(receiver)})
    receiver.allow(proc.pid)  # systemd-notify sends its BARRIER=1 with its own pid (checked at receive time)
    messages = []
    deadline = start + 10
    while time.monotonic() < deadline:
        exited = proc.poll() is not None  # checked before receiving: what it sent is queued by then
        m = receiver.receive(timeout=0.05)
        if m is not None:
            messages.append(m)
            m.close()
        elif exited:
            break
    proc.wait(timeout=5)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0
    assert elapsed < 3, f"systemd-notify blocked {elapsed:.1f}s: the barrier fd was not closed"
    ready = [m for m in messages if "READY" in m]
    assert ready and ready[0]["STATUS"] == "serving on 8080" and ready[0]["READY"] == "1"
    assert ready[0].pid == os.getpid()  # --pid= was honoured
    if not no_block:
        assert any(m.get("BARRIER") == "1" for m in messages)
    assert open_fds() == before  # barrier fds closed, nothing kept


@pytest.mark.peer
def test_sdnotify_peer(receiver: NotifyReceiver) -> None:
    sdnotify = need_module("sdnotify")
    code = "import sdnotify; sdnotify.SystemdNotifier(debug=True).notify('READY=1\\nSTATUS=from sdnotify')"
    proc = subprocess.run([sys.executable, "-c", code], env={**child_env(), **env_for(receiver)}, check=True)
    assert proc.returncode == 0 and sdnotify
    m = receiver.receive(timeout=5)
    assert m is not None and m.fields == {"READY": "1", "STATUS": "from sdnotify"} and m.pid not in (None, os.getpid())


@pytest.mark.peer
def test_python_systemd_fds_arrive_and_untaken_are_closed(receiver: NotifyReceiver) -> None:
    need_module("systemd.daemon")
    code = (
        "import os, socket\nfrom systemd import daemon\n"
        "a, b = socket.socketpair()\nr, w = os.pipe()\nos.write(w, b'through the pipe')\n"
        "assert daemon.notify('FDSTORE=1\\nFDNAME=pair', fds=[a.fileno(), r])\n"
        "b.sendall(b'through the socket')\n"
    )
    before = open_fds()
    subprocess.run([sys.executable, "-c", code], env={**child_env(), **env_for(receiver)}, check=True)
    m = receiver.receive(timeout=5)
    assert m is not None and m.fields == {"FDSTORE": "1", "FDNAME": "pair"} and len(m.fds) == 2
    sock_fd, pipe_fd = m.fds
    with socket.socket(fileno=os.dup(sock_fd)) as s:
        assert s.recv(100) == b"through the socket"
    assert os.read(pipe_fd, 100) == b"through the pipe"
    m.close()  # nothing taken: both closed
    assert open_fds() == before


def test_sockact_notify_and_helpers(receiver: NotifyReceiver) -> None:
    env = env_for(receiver)
    assert sockact.notify("READY=1\nSTATUS=up", environ=env)
    assert receiver.receive(timeout=5).fields == {"READY": "1", "STATUS": "up"}
    assert sockact.notify({"STATUS": "x", "ERRNO": 5}, environ=env)
    assert receiver.receive(timeout=5).fields == {"STATUS": "x", "ERRNO": "5"}
    before = time.monotonic()
    assert sockact.reloading(environ=env)
    after = time.monotonic()
    m = receiver.receive(timeout=5)
    assert set(m.fields) == {"RELOADING", "MONOTONIC_USEC"}  # one datagram, both keys
    assert before * 1e6 - 1000 <= int(m["MONOTONIC_USEC"]) <= after * 1e6 + 1000
    for call, expected in [
        (lambda: sockact.stopping(environ=env), {"STOPPING": "1"}),
        (lambda: sockact.ready("done", environ=env), {"READY": "1", "STATUS": "done"}),
        (lambda: sockact.status("s", environ=env), {"STATUS": "s"}),
        (lambda: sockact.extend_timeout(1.5, environ=env), {"EXTEND_TIMEOUT_USEC": "1500000"}),
        (lambda: sockact.mainpid(1234, environ=env), {"MAINPID": "1234"}),
        (lambda: sockact.fdstore_remove("x", environ=env), {"FDSTOREREMOVE": "1", "FDNAME": "x"}),
        (lambda: sockact.watchdog_ping(environ=env), {"WATCHDOG": "1"}),
        (lambda: sockact.watchdog_trigger(environ=env), {"WATCHDOG": "trigger"}),
    ]:
        assert call()
        got = receiver.receive(timeout=5)
        assert got is not None and got.fields == expected and got.pid == os.getpid()


def test_fdstore_passes_fds(receiver: NotifyReceiver) -> None:
    a, b = socket.socketpair()
    with a, b:
        assert sockact.fdstore([a], name="conn", environ=env_for(receiver))
        m = receiver.receive(timeout=5)
        assert m.fields == {"FDSTORE": "1", "FDNAME": "conn"}
        (fd,) = m.take_fds()
        with socket.socket(fileno=fd) as got:
            got.sendall(b"hi")
            assert b.recv(10) == b"hi"


def test_barrier_waits_for_the_manager(receiver: NotifyReceiver) -> None:
    assert sockact.notify("STATUS=before", environ=env_for(receiver))
    import threading

    t = threading.Thread(target=lambda: [receiver.receive(timeout=5) for _ in range(2)])
    t.start()
    assert sockact.barrier(5, environ=env_for(receiver))
    t.join()
    with pytest.raises(NotifyError, match="not acknowledged"):
        with NotifyReceiver() as silent:  # nobody reads it: the fd stays open in the queue
            sockact.barrier(0.2, environ=env_for(silent))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("/dev/null", "nobody is listening"),
        ("/nonexistent/sockact/notify", "no such socket"),
        ("@sockact-nobody-listens-here", "nobody is listening"),
        ("relative", "absolute path"),
        ("vsock:x:y", "absolute path"),
    ],
)
def test_errors_name_the_socket(value: str, match: str) -> None:
    with pytest.raises(NotifyError, match=match) as info:
        sockact.notify("READY=1", environ={"NOTIFY_SOCKET": value})
    assert value in str(info.value)
    if value.startswith(("/", "@")):
        assert info.value.errno is not None


def test_unset_is_false_and_bad_messages_are_refused_before_sending() -> None:
    assert sockact.notify("READY=1", environ={}) is False
    assert sockact.ready(environ={}) is False
    unreachable = {"NOTIFY_SOCKET": "/nonexistent/x"}  # would raise "no such socket" if anything were sent
    with pytest.raises(sockact.UsageError, match="newline"):
        sockact.status("two\nlines", environ=unreachable)
    with pytest.raises(sockact.UsageError, match="4096"):
        sockact.status("x" * 5000, environ=unreachable)
    with pytest.raises(sockact.UsageError, match="key"):
        sockact.notify({"lower": 1}, environ=unreachable)
    with pytest.raises(sockact.UsageError, match="KEY=VALUE"):
        sockact.notify("READY", environ=unreachable)
    with pytest.raises(sockact.UsageError, match="FileDescriptorName="):
        sockact.fdstore([0], name="a:b", environ=unreachable)


def test_message_format_round_trip() -> None:
    data = format_message({"READY": True, "STATUS": "a=b c", "N": 3})
    assert data == b"READY=1\nSTATUS=a=b c\nN=3"
    assert parse_message(data) == {"READY": "1", "STATUS": "a=b c", "N": "3"}
    assert parse_message(b"A=1\ngarbage\nA=2\n") == {"A": "2"}


def test_spoofed_sender_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with NotifyReceiver(allowed_pids={os.getpid()}) as r:
        subprocess.run(
            [sys.executable, "-c", "import sockact; sockact.ready()"],
            env={**child_env(), "NOTIFY_SOCKET": r.address},
            check=True,
        )
        with caplog.at_level(logging.WARNING, "sockact.receiver"):
            assert r.receive(timeout=0.3) is None
        assert "not allowed" in caplog.text
        sockact.status("mine", environ={"NOTIFY_SOCKET": r.address})
        assert r.receive(timeout=5).fields == {"STATUS": "mine"}


def test_a_relays_children_may_send_but_not_its_grandchildren(caplog: pytest.LogCaptureFixture) -> None:
    """allow(pid, children=True), for a successor under a relaying shell (PID-file mode): a child of
    ``pid`` is accepted, read from /proc at receipt (so while it lives, as a successor waiting for its
    hand-over does); the child's own child is not."""
    send = "import sockact, sys; sockact.status(sys.argv[1]); sys.stdin.read()"
    with NotifyReceiver(allowed_pids=set()) as r:
        r.allow(os.getpid(), children=True)
        env = {**child_env(), "NOTIFY_SOCKET": r.address}
        grandchild = f"import subprocess as s, sys; s.run([sys.executable, '-c', {send!r}, 'grand'], check=True)"
        for code, accepted in ((send, True), (grandchild, False)):
            with subprocess.Popen([sys.executable, "-c", code, "child"], env=env, stdin=subprocess.PIPE) as proc:
                with caplog.at_level(logging.WARNING, "sockact.receiver"):
                    message = r.receive(timeout=5 if accepted else 1)
                assert proc.stdin is not None
                proc.stdin.close()
            if accepted:
                assert message is not None and message.fields == {"STATUS": "child"}
            else:
                assert message is None and "not allowed" in caplog.text


def test_path_receiver_not_connectable_by_another_uid() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to switch a child to nobody")
    nobody = pwd.getpwnam("nobody")
    with NotifyReceiver() as r:
        pid = os.fork()
        if pid == 0:  # the child drops to nobody and tries to send
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                sockact.ready(environ={"NOTIFY_SOCKET": r.address})
                os._exit(0)
            except NotifyError as exc:
                os._exit(exc.errno or 1)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 13  # EACCES: the 0700 directory keeps other uids out
        assert r.receive(timeout=0.2) is None


def test_path_receiver_directory_is_private_and_removed(tmp_path: object) -> None:
    """The receiver's directory is 0700 with an unguessable name, in the first parent that takes one
    (a missing one is skipped; none: an error naming what was tried), and close() removes it;
    creating one imports no tempfile (a serving process does it at its reload signal)."""
    import stat

    parent = os.path.join(str(tmp_path), "parent")
    os.mkdir(parent)
    from sockact._receiver import _private_dir

    made = _private_dir([os.path.join(str(tmp_path), "missing"), parent])
    assert os.path.dirname(made) == parent and os.path.basename(made).startswith("sockact-notify-")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    os.rmdir(made)
    with pytest.raises(FileNotFoundError, match=f"tried {tmp_path}/missing; set XDG_RUNTIME_DIR or TMPDIR"):
        _private_dir([os.path.join(str(tmp_path), "missing")])
    with NotifyReceiver(directory=parent) as r:
        directory = os.path.dirname(r.address)
        assert os.path.dirname(directory) == parent and stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert not os.path.exists(directory) and os.listdir(parent) == []
    code = "import sys; from sockact import NotifyReceiver\nwith NotifyReceiver(): print('tempfile' in sys.modules)"
    assert python_prints(code) == "False"


def test_watchdog_pings_at_half_the_interval() -> None:
    with NotifyReceiver() as r:
        env = {"NOTIFY_SOCKET": r.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
        assert sockact.watchdog_interval(env) == 0.2
        start = time.monotonic()
        with sockact.Watchdog(environ=env) as wd:
            times = []
            while time.monotonic() - start < 1.0:
                m = r.receive(timeout=0.3)
                if m is not None:
                    assert m.fields == {"WATCHDOG": "1"}
                    times.append(time.monotonic() - start)
        assert 7 <= len(times) <= 13, times  # ~one every 100 ms (lower bound leaves room for a loaded CI)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert 0.07 < sorted(gaps)[len(gaps) // 2] < 0.15
        assert wd.error is None


def test_watchdog_foreign_pid_sends_nothing() -> None:
    with NotifyReceiver() as r:
        env = {"NOTIFY_SOCKET": r.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        with sockact.Watchdog(environ=env) as wd:
            assert not wd.active
            assert r.receive(timeout=0.4) is None


def test_async_watchdog_and_receiver() -> None:
    import asyncio

    async def main() -> list[str]:
        with NotifyReceiver() as r:
            env = {"NOTIFY_SOCKET": r.address}
            async with sockact.AsyncWatchdog(0.1, environ=env):
                got = [await asyncio.wait_for(r.receive_async(), 5) for _ in range(3)]
            return [m["WATCHDOG"] for m in got]

    assert asyncio.run(main()) == ["1", "1", "1"]


def test_reload_handler_real_signal() -> None:
    previous = signal.getsignal(signal.SIGHUP)
    with NotifyReceiver() as r:
        env = {"NOTIFY_SOCKET": r.address}
        calls = []
        with sockact.ReloadHandler(lambda: calls.append("reloaded"), environ=env) as handler:
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGHUP)  # coalesced with the first
            assert handler.wait(timeout=5)
            assert calls == ["reloaded"]
            first, second = r.receive(timeout=5), r.receive(timeout=5)
            assert set(first.fields) == {"RELOADING", "MONOTONIC_USEC"} and second.fields == {"READY": "1"}

            def broken() -> None:
                raise RuntimeError("bad config")

            handler.reload = broken
            handler.trigger()
            assert handler.run_pending()
            r.receive(timeout=5)
            m = r.receive(timeout=5)
            assert m["READY"] == "1" and "bad config" in m["STATUS"]
            assert signal.getsignal(signal.SIGHUP) != previous
        assert signal.getsignal(signal.SIGHUP) == previous  # close() restored what it changed


def test_journal_formatter() -> None:
    assert [syslog_priority(x) for x in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]
    assert stream_is_journal("8:42", 8, 42) and not stream_is_journal("8:42", 8, 43)
    assert not stream_is_journal(None, 1, 1) and not stream_is_journal("x:y", 1, 1)
    r, w = os.pipe()
    st = os.fstat(w)
    record = logging.LogRecord("n", logging.ERROR, __file__, 1, "a\nb", None, None)
    journal = JournalFormatter(fd=w, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert journal.format(record) == "<3>a\n<3>b"
    assert JournalFormatter(fd=w, environ={}).format(record) == "a\nb"
    os.close(r), os.close(w)


def test_vsock_form_parsed_and_failure_is_a_notify_error() -> None:
    from sockact._notify import notify_target

    family, type_, address = notify_target("vsock:2:9999")
    assert type_ == socket.SOCK_SEQPACKET
    assert family == getattr(socket, "AF_VSOCK", family) and address == (2, 9999)
    with pytest.raises(NotifyError, match="vsock:2:9999"):  # no vsock transport here: a clear error, no traceback
        sockact.ready(environ={"NOTIFY_SOCKET": "vsock:2:9999"})


def test_receiver_with_selectors_and_oversize_datagrams(caplog: pytest.LogCaptureFixture) -> None:
    import selectors

    with NotifyReceiver() as r, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"STATUS=" + b"x" * 5000, r.address)  # larger than systemd reads: dropped, logged
        a, b = socket.socketpair()
        fds = [a.fileno()] * 300  # more than SCM_MAX_FD: the kernel refuses to send, nothing half-arrives
        with pytest.raises(OSError):
            raw.sendmsg([b"FDSTORE=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(4 * len(fds)))], 0, r.address)
        a.close(), b.close()
        raw.sendto(b"READY=1", r.address)
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            assert sel.select(timeout=5)
            with caplog.at_level(logging.WARNING, "sockact.receiver"):
                m = r.receive_nowait()
        assert m is not None and m.fields == {"READY": "1"}
        assert "longer than 4096" in caplog.text
