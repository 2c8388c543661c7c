"""Each server integration under load: standalone and under systemd-socket-activate (TCP and a unix
socket), 10 reloads with 0 failed requests, a request in flight across a reload and across SIGTERM,
and READY=1 only once the server accepts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from sockact import NotifyReceiver, __version__
from sockact._loadgen import get
from sockact.integrations import gunicorn as sockact_gunicorn

from conftest import need_module, need_tool
from helpers import PY, ROOT, child_env, free_port
from reloads import assert_zero_downtime, become_subreaper, reloads_under_load

RELOADS = 10
SERVERS = ["uvicorn", "hypercorn", "aiohttp", "tornado", "waitress"]
MODES = ["standalone", "activate-tcp", "activate-unix"]


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


def example(server: str) -> str:
    return os.path.join(ROOT, "examples", f"{server}_app.py")


def wrap(mode: str, argv: list[str], address: str) -> list[str]:
    """``argv`` as it runs in ``mode``: as is, or started by systemd-socket-activate on ``address``."""
    if mode == "standalone":
        return argv
    tool = need_tool("systemd-socket-activate")
    return [tool, "-l", address, "--fdname=http", "-E", "PYTHONPATH", *argv]


def where(mode: str, tmp_path: object) -> tuple[int | str, str]:
    if mode == "activate-unix":
        path = os.path.join(str(tmp_path), "http.sock")
        return path, path
    port = free_port()
    return port, f"127.0.0.1:{port}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_reloads_under_load(server: str, mode: str, tmp_path: object) -> None:
    need_module(server)
    target, address = where(mode, tmp_path)
    argv = [PY, example(server), "--listen", address, "--drain-timeout", "10"]
    run = reloads_under_load(
        wrap(mode, argv, address), target, child_env(), os.path.join(str(tmp_path), "log"), RELOADS
    )
    assert_zero_downtime(run, RELOADS)
    assert str(run["output"]).count("upgraded; drained") == RELOADS


@pytest.mark.parametrize("server", SERVERS)
def test_ready_once_accepting(server: str, tmp_path: object) -> None:
    """READY=1 comes from the server's pid, and a request sent the moment it arrives is answered by it;
    the log has sockact's start line once, naming the server (uvicorn's own "running on" is missing
    for sockets it did not bind)."""
    need_module(server)
    port = free_port()
    with NotifyReceiver() as receiver:
        env = child_env({"NOTIFY_SOCKET": receiver.address})
        argv = [PY, example(server), "--listen", f"127.0.0.1:{port}"]
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            message = receiver.receive(timeout=30)
            assert message is not None and message.get("READY") == "1", message
            assert message.pid == proc.pid
            assert get("127.0.0.1", port, timeout=10) == (200, proc.pid)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
    start = f"sockact {__version__} pid {proc.pid} serving http=127.0.0.1:{port} (bound) with {server} "
    assert err.count(start) == 1 and err.count(" serving http=") == 1, err


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "aiohttp"])
def test_ready_waits_for_the_app_start_up(server: str, tmp_path: object) -> None:
    """While the app's start-up (lifespan / on_startup) has not finished, no READY=1; then READY=1."""
    need_module(server)
    port = free_port()
    gate = os.path.join(str(tmp_path), "gate")
    with NotifyReceiver() as receiver:
        env = child_env({"NOTIFY_SOCKET": receiver.address})
        argv = [PY, os.path.join(ROOT, "tests", "gated_app.py"), server, gate, f"127.0.0.1:{port}"]
        proc = subprocess.Popen(argv, env=env)
        try:
            early = receiver.receive(timeout=1.5)
            assert early is None, f"READY before the app started: {early and early.fields}"
            open(gate, "w").close()
            message = receiver.receive(timeout=30)
            assert message is not None and message.get("READY") == "1", message
            assert get("127.0.0.1", port, timeout=10) == (200, proc.pid)
        finally:
            proc.terminate()
            assert proc.wait(20) == 0


@pytest.mark.parametrize("mode", MODES)
def test_gunicorn_under_sockact_run(mode: str, tmp_path: object) -> None:
    """gunicorn as a plain child of ``sockact run``: it takes fd 3 by its own LISTEN_FDS support and
    sends READY=1; each reload starts a new gunicorn and SIGTERMs the old one (gunicorn's graceful stop)."""
    need_module("gunicorn")
    target, address = where(mode, tmp_path)
    gunicorn_args = ["--chdir", os.path.join(ROOT, "examples"), "--worker-class", "gthread", "--threads", "4"]
    gunicorn_args += ["--control-socket", os.path.join(str(tmp_path), "gunicorn.ctl")]
    listen = address if mode == "standalone" else None
    argv = sockact_gunicorn.command("waitress_app:app", gunicorn_args, listen=listen, drain_timeout=10, python=PY)
    run = reloads_under_load(
        wrap(mode, argv, address), target, child_env(), os.path.join(str(tmp_path), "log"), RELOADS, signal_started=True
    )
    assert_zero_downtime(run, RELOADS)


@pytest.mark.parametrize(
    ("open_connections", "in_flight", "ended_at_once"),
    [
        (lambda: 0, 0, True),  # nothing open: no client can send a next request, the drain is done
        (lambda: 1, 0, False),  # an idle keep-alive connection: it gets the grace
        (lambda: 0, 1, False),  # a request still running
        (None, 0, False),  # not counted (TLS): the grace decides
    ],
)
def test_a_drain_with_no_connection_open_does_not_wait_for_the_grace(
    open_connections: object, in_flight: int, ended_at_once: bool
) -> None:
    import asyncio
    import threading

    from sockact.integrations._quiet import Activity

    activity = Activity(idle_grace=60, clock=lambda: 0.0)  # a clock that never moves: the grace never ends
    activity.in_flight = in_flight
    quiet = activity.quiet(0.3, threading.Event(), open_connections)  # type: ignore[arg-type]
    assert asyncio.run(quiet) is ended_at_once
    assert activity.draining


@pytest.mark.parametrize(
    ("version", "headers", "draining", "says_close"),
    [
        ("1.1", [(b"host", b"x")], False, False),
        ("1.1", [(b"host", b"x"), (b"connection", b"close")], False, True),  # the client's close is echoed
        ("1.1", [(b"Connection", b"Keep-Alive, Close")], False, True),
        ("1.1", [(b"connection", b"x-closeable")], False, False),  # an option, not close
        ("1.0", [(b"host", b"x")], True, True),  # draining: every HTTP/1 response is its connection's last
        ("1.1", [(b"connection", b"keep-alive")], True, True),
        ("2", [(b"connection", b"close")], True, False),  # HTTP/2 drains by GOAWAY, has no Connection
    ],
)
def test_the_asgi_middleware_adds_connection_close_when_draining_or_asked(
    version: str, headers: list[tuple[bytes, bytes]], draining: bool, says_close: bool
) -> None:
    import asyncio

    from sockact.integrations._quiet import Activity, asgi_middleware

    reads: list[None] = []

    def clock() -> float:
        reads.append(None)
        return 5.0

    activity = Activity(idle_grace=1, clock=clock)
    activity.draining = draining
    sent: list[dict[str, object]] = []
    seen_in_flight: list[int] = []

    async def app(scope: object, receive: object, send: Any) -> None:
        seen_in_flight.append(activity.in_flight)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": version, "headers": headers}
    asyncio.run(asgi_middleware(app, activity)(scope, None, send))
    start = sent[0]["headers"]
    assert ((b"connection", b"close") in start) is says_close  # type: ignore[operator]
    assert seen_in_flight == [1] and activity.in_flight == 0
    # the clock is read at construction, and per request only during a drain (begin and end)
    assert len(reads) == (3 if draining else 1)


@pytest.mark.parametrize(
    ("scope", "draining", "says_close"),
    [
        ({"type": "http", "http_version": "1.1"}, False, False),  # before the drain: the app as it is
        ({"type": "http", "http_version": "1.1"}, True, True),
        ({"type": "http", "http_version": "1.0"}, True, True),
        ({"type": "http", "http_version": "2"}, True, False),  # HTTP/2 drains by GOAWAY
        ({"type": "websocket", "http_version": "1.1"}, True, False),  # a handshake keeps its Upgrade
    ],
)
def test_closing_when_draining_leaves_requests_alone_until_the_drain(
    scope: dict[str, object], draining: bool, says_close: bool
) -> None:
    """uvicorn's wrapper: no per-request work before the drain (the app gets the server's own send),
    ``Connection: close`` on HTTP/1.x responses during it, whatever Connection the app named."""
    import asyncio

    from sockact.integrations._quiet import Activity, closing_when_draining

    activity = Activity(idle_grace=1)
    activity.draining = draining
    sent: list[dict[str, object]] = []
    given: list[object] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    def app(connection: bytes | None) -> Any:
        async def asgi(scope: object, receive: object, send_: Any) -> None:
            given.append(send_)
            named = [(b"connection", connection)] if connection else []
            await send_({"type": "http.response.start", "status": 200, "headers": named})
            await send_({"type": "http.response.body", "body": b""})

        return asgi

    asyncio.run(closing_when_draining(app(None), activity)(scope, None, send))  # type: ignore[arg-type]
    assert ((b"connection", b"close") in sent[0]["headers"]) is says_close  # type: ignore[operator]
    assert (given[0] is send) is not says_close
    sent.clear()
    asyncio.run(closing_when_draining(app(b"keep-alive"), activity)(scope, None, send))  # type: ignore[arg-type]
    # an app's keep-alive stands before the drain; during it the server's close replaces it
    assert sent[0]["headers"] == [(b"connection", b"close" if says_close else b"keep-alive")]


@pytest.mark.parametrize(
    ("message", "headers"),
    [
        (
            {"status": 200, "headers": [(b"content-length", b"0")]},
            [(b"content-length", b"0"), (b"connection", b"close")],
        ),
        ({"status": 200}, [(b"connection", b"close")]),
        (
            {"status": 200, "headers": [(b"Connection", b"Keep-Alive"), (b"x", b"1")]},
            [(b"x", b"1"), (b"connection", b"close")],
        ),
        ({"status": 200, "headers": [(b"connection", b"keep-alive, x-hop")]}, [(b"connection", b"x-hop, close")]),
        ({"status": 200, "headers": [(b"connection", b"Close")]}, [(b"connection", b"Close")]),  # already says it
        ({"status": 101, "headers": [(b"connection", b"upgrade")]}, [(b"connection", b"upgrade")]),  # handed on
    ],
)
def test_a_closing_response_says_close_whatever_the_app_named(
    message: dict[str, object], headers: list[tuple[bytes, bytes]]
) -> None:
    """Connection is the server's (RFC 9110 §7.6.1): a drain's response says close, the app's
    keep-alive goes, its other options stay; a body message passes as it is."""
    from sockact.integrations._quiet import _closed

    assert _closed({"type": "http.response.start", **message})["headers"] == headers
    body = {"type": "http.response.body", "body": b"x"}
    assert _closed(body) is body


@pytest.mark.parametrize(
    ("running", "answering", "quiet"),
    [
        (0, False, True),  # nothing running, nothing answered since: the grace runs out
        (0, True, False),  # requests keep ending: it never does
        (1, False, False),  # one still running: the drain waits for it
    ],
)
def test_a_drain_polling_the_servers_own_books_waits_while_requests_run_or_end(
    running: int, answering: bool, quiet: bool
) -> None:
    """``requests`` (uvicorn's books: in flight, answered) read at each poll: while a request runs or
    the answered count keeps changing the grace never runs out; once both stand still, it does."""
    import asyncio
    import itertools
    import threading

    from sockact.integrations._quiet import Activity

    ticks = itertools.count()
    answered = itertools.count()
    activity = Activity(
        idle_grace=0.5,
        clock=lambda: next(ticks) / 10,
        requests=lambda: (running, next(answered) if answering else 7),
    )
    assert asyncio.run(activity.quiet(1.0, threading.Event())) is quiet
    assert activity.in_flight == running


def test_the_uvicorn_integration_refuses_an_interface_it_cannot_wrap() -> None:
    """Its drain wrapper is a plain function handing back the app's coroutine: ASGI 3 only, said
    before any socket is taken (the port stays free)."""
    need_module("uvicorn")
    from sockact.integrations import uvicorn as sockact_uvicorn

    port = free_port()
    with pytest.raises(ValueError, match="serves ASGI 3 apps, not interface='wsgi'"):
        sockact_uvicorn.run(lambda *a: None, f"127.0.0.1:{port}", interface="wsgi")
    socket.create_server(("127.0.0.1", port)).close()


_KEEP_ALIVE_APP = """
import asyncio

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/slow":  # says when it runs, then answers 0.5 s later
        print("running", flush=True)
        await asyncio.sleep(0.5)
    headers = [(b"content-length", b"2"), (b"connection", b"keep-alive")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@contextlib.contextmanager
def _keep_alive_server(server: str, tmp_path: object) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The keep-alive app above served by ``server``'s integration (drain timeout 20 s), once it sent
    READY=1: (its process, with stdout piped; its port). Killed if the test left it running."""
    need_module(server)
    with open(os.path.join(str(tmp_path), "keep_alive_app.py"), "w") as f:
        f.write(_KEEP_ALIVE_APP)
    port = free_port()
    code = (
        f"from sockact.integrations import {server} as integration; import keep_alive_app; "
        f"integration.run(keep_alive_app.app, '127.0.0.1:{port}', drain_timeout=20)"
    )
    with NotifyReceiver() as receiver:
        env = child_env({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "NOTIFY_SOCKET": receiver.address})
        proc = subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            message = receiver.receive(timeout=30)
            assert message is not None and message.get("READY") == "1", message
            yield proc, port
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_drain_closes_a_busy_connection_whose_app_says_keep_alive(server: str, tmp_path: object) -> None:
    """An app that names ``Connection: keep-alive`` on every response, a client sending request
    after request on one connection, SIGTERM: a response during the drain says close (not
    keep-alive), the server closes the connection after it, and the process exits long before the
    drain timeout. Were the app's keep-alive kept, the client would never go quiet and the drain
    would run its 20 s and cut it."""
    with _keep_alive_server(server, tmp_path) as (proc, port):
        said: list[bytes] = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, sock.makefile("rb") as responses:
            for sent in range(5000):  # bounded; the drain has begun long before
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                status, connection = _response(responses)
                assert status == 200, said[-3:]
                said.append(connection)
                if sent == 0:
                    proc.terminate()  # SIGTERM: drain
                if b"close" in connection.lower():
                    break
            assert b"close" in said[-1].lower() and b"keep-alive" not in said[-1].lower(), said[-3:]
            assert responses.read(1) == b""  # the server closed the connection after that response
        assert proc.wait(10) == 0  # nothing left to wait for: no 20 s drain


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_request_running_when_the_drain_starts_says_close_once(server: str, tmp_path: object) -> None:
    """A request already running at SIGTERM, whose app names ``Connection: keep-alive``: its response
    says ``close`` and only that (one Connection header, the app's keep-alive dropped), and the
    connection closes after it."""
    with _keep_alive_server(server, tmp_path) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, sock.makefile("rb") as responses:
            sock.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
            proc.terminate()  # SIGTERM while the request runs: drain
            assert _response(responses) == (200, b"close")
            assert responses.read(1) == b""
        assert proc.wait(10) == 0


def _response(responses: Any) -> tuple[int, bytes]:
    """(status, Connection header) of one response with a Content-Length body, read off ``responses``."""
    status = int(responses.readline().split()[1])
    connection: list[bytes] = []
    length = 0
    while (line := responses.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection":
            connection.append(value.strip())  # each Connection header, as one list (RFC 9110 §5.3)
        elif name.strip().lower() == b"content-length":
            length = int(value)
    responses.read(length)
    return status, b", ".join(connection)
