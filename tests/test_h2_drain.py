"""HTTP/2 drains by GOAWAY (RFC 9113 §6.8): hypercorn through sockact, cleartext HTTP/2 (prior knowledge).

When the drain begins, an HTTP/2 connection gets the graceful-shutdown notice (GOAWAY, NO_ERROR, last
stream id 2^31-1) while a stream is still in flight on it; that stream is answered; the final GOAWAY
and a clean close follow. curl (nghttp2) over TLS (ALPN h2), a client that honours GOAWAY and does
not retry a failed transfer, sees only 200s across 10 reloads and moves to new connections as told.
(curl 7.88 with --http2-prior-knowledge fails its second request on any reused hypercorn connection,
reload or not — "Error in the HTTP2 framing layer" — so the cleartext test uses the client below.)
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import make_certificate, need_module, need_peer, need_tool
from helpers import PY, ROOT, child_env, free_port
from reloads import become_subreaper, reap, reload, start

NOTICE_LAST_ID = 2**31 - 1
RELOADS = 10


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


class H2Client:
    """A bare HTTP/2 client over one TCP connection: it sends requests and reports every frame it reads,
    GOAWAY included, without the terminal meaning h2's state machine gives a GOAWAY."""

    def __init__(self, port: int) -> None:
        from hpack import Decoder, Encoder
        from hyperframe.frame import SettingsFrame

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.encoder, self.decoder = Encoder(), Decoder()
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
        self.buffer = b""

    def request(self, stream_id: int, path: str) -> None:
        from hyperframe.frame import HeadersFrame

        block = self.encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)])
        self.sock.sendall(HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"]).serialize())

    def _read(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> object | None:
        """The next frame (SETTINGS and PING answered on the way), or None at a clean EOF."""
        from hyperframe.frame import Frame, PingFrame, SettingsFrame

        header = self._read(9)
        if header is None:
            return None
        frame, length = Frame.parse_frame_header(memoryview(header))
        body = self._read(length)
        assert body is not None, "EOF inside a frame"
        frame.parse_body(memoryview(body))
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.sock.sendall(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
        return frame

    def events(self) -> list[tuple[str, int, object]]:
        """Read to EOF (bounded by the socket timeout): ("status"|"data"|"end"|"goaway"|"reset", stream, value)."""
        from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

        out: list[tuple[str, int, object]] = []
        for _ in range(10_000):
            frame = self.frame()
            if frame is None:
                return out
            if isinstance(frame, HeadersFrame):
                headers = dict(self.decoder.decode(frame.data))
                out.append(("status", frame.stream_id, headers[":status"]))
            elif isinstance(frame, DataFrame) and frame.data:
                out.append(("data", frame.stream_id, bytes(frame.data)))
            elif isinstance(frame, GoAwayFrame):
                out.append(("goaway", frame.last_stream_id, frame.error_code))
            elif isinstance(frame, RstStreamFrame):
                out.append(("reset", frame.stream_id, frame.error_code))
            if isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
                out.append(("end", frame.stream_id, None))
        raise AssertionError(f"no EOF after 10,000 frames: {out[-10:]}")


def _hypercorn(
    port: int, tmp_path: object, tls: tuple[str, str] | None = None, drain: float = 20
) -> tuple[subprocess.Popen[bytes], int, str, ssl.SSLContext | None]:
    need_module("hypercorn")
    log = os.path.join(str(tmp_path), "log")
    argv = [PY, os.path.join(ROOT, "examples", "hypercorn_app.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--drain-timeout", f"{drain:g}"]
    context = None
    if tls:
        argv += ["--certfile", tls[0], "--keyfile", tls[1]]
        context = ssl.create_default_context(cafile=tls[0])
    proc, pid = start(argv, port, child_env(), log, tls=context)
    return proc, pid, log, context


def test_a_draining_http2_connection_gets_goaway_first_and_its_open_stream_is_answered(tmp_path: object) -> None:
    port = free_port()
    proc, first, log, _ = _hypercorn(port, tmp_path)
    pids = [first]
    try:
        client = H2Client(port)
        client.request(1, "/")
        client.request(3, "/sleep?seconds=5")  # in flight across the reload
        pids.append(reload(port, pids))  # the successor serves new connections
        events = client.events()
        client.sock.close()
    finally:
        os.kill(pids[-1], signal.SIGTERM)  # the serving one; each predecessor exits after its own drain
        codes = reap(pids)
        proc.wait(10)
    text = pathlib.Path(log).read_text()[-3000:]
    kinds = [(kind, stream) for kind, stream, _ in events]
    assert ("status", 1) in kinds and ("status", 3) in kinds, (events, text)
    notice = kinds.index(("goaway", NOTICE_LAST_ID))  # the shutdown notice came ...
    assert kinds.index(("end", 1)) < notice < kinds.index(("status", 3)), (events, text)  # ... before stream 3's answer
    assert (("goaway", NOTICE_LAST_ID, 0)) in events  # NO_ERROR
    bodies = {stream: value for kind, stream, value in events if kind == "data"}
    statuses = {stream: value for kind, stream, value in events if kind == "status"}
    assert bodies[3] == f"pid {first}\n".encode() and statuses[3] == "200", events
    finals = [(stream, code) for kind, stream, code in events if kind == "goaway" and stream != NOTICE_LAST_ID]
    assert finals and finals[-1] == (3, 0), (events, text)  # the final GOAWAY names the last stream served
    assert not [e for e in events if e[0] == "reset"], events
    assert kinds[-1] == ("goaway", 3)  # nothing after it: then a clean EOF (events() returned)
    bad = {pid: code for pid, code in codes.items() if code not in (0, None)}
    assert not bad, (bad, pathlib.Path(log).read_text()[-6000:])


def test_curl_over_http2_sees_only_200s_across_reloads(tmp_path: object) -> None:
    curl = need_tool("curl")
    features = subprocess.run([curl, "--version"], capture_output=True, text=True, check=True).stdout
    need_peer("curl with HTTP/2 (nghttp2)", "HTTP2" in features)
    port = free_port()
    cert, key = make_certificate(str(tmp_path))
    # A drain shorter than reap()'s 20 s: hypercorn's graceful shutdown sometimes waits out its whole
    # graceful_timeout after curl is interrupted mid-transfer (no socket left open; a connection task
    # that never ends), and the process then exits 0 at the deadline.
    proc, first, log, tls = _hypercorn(port, tmp_path, (cert, key), drain=8)
    pids = [first]
    url = f"https://127.0.0.1:{port}/?[1-200000]"
    write_out = "status %{http_code} %{num_connects} %{http_version}\\n"
    clients = [
        subprocess.Popen(
            [curl, "-s", "--http2", "--cacert", cert, "--max-time", "10", "-w", write_out, url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs: list[str] = [""] * len(clients)

    def collect(i: int) -> None:
        assert clients[i].stdout is not None
        outputs[i] = clients[i].stdout.read()

    readers = [threading.Thread(target=collect, args=(i,)) for i in range(len(clients))]
    for reader in readers:
        reader.start()
    try:
        for _ in range(RELOADS):
            pids.append(reload(port, pids, tls=tls))
            time.sleep(0.3)  # load on the new process before the next reload (pacing, not synchronisation)
    finally:
        for client in clients:
            client.send_signal(signal.SIGINT)  # curl prints each finished transfer; an interrupted one is not
        for reader in readers:
            reader.join(30)
        for client in clients:
            client.wait(10)
        os.kill(pids[-1], signal.SIGTERM)  # the serving one; each predecessor exits after its own drain
        codes = reap(pids)
        proc.wait(10)
    text = pathlib.Path(log).read_text()[-3000:]
    lines = [line.split()[1:] for out in outputs for line in out.splitlines() if line.startswith("status ")]
    statuses = [status for status, _, _ in lines]
    assert len(statuses) > RELOADS * 50, (len(statuses), text)
    assert set(statuses) == {"200"}, ({s: statuses.count(s) for s in set(statuses)}, text)  # 000: failed
    assert {version for _, _, version in lines} == {"2"}, lines[:5]  # HTTP/2 throughout
    connects = sum(int(n) for _, n, _ in lines)
    assert connects >= len(clients) * (RELOADS // 2), connects  # GOAWAY moved them to new connections
    bad = {pid: code for pid, code in codes.items() if code not in (0, None)}
    assert not bad, (bad, pathlib.Path(log).read_text()[-6000:])
