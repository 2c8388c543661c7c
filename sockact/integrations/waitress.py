"""Run a WSGI app with waitress on sockact's listeners, with in-place reload and a real drain.

    from sockact.integrations import waitress as sockact_waitress
    sockact_waitress.run(app, "127.0.0.1:8000", drain_timeout=30, threads=8)

The sockets go to ``waitress.create_server(sockets=...)`` as they are (TCP, IPv6 or unix). waitress
has no graceful shutdown, so sockact runs its loop and drains it: stop accepting, answer every
request with ``Connection: close``, close a keep-alive channel unanswered only once it stayed silent
for ``idle_grace`` seconds of the drain (with a FIN; waitress reads the client's close), give a new
connection until the deadline to send its first request, then close the rest. Other keyword arguments are waitress
adjustments (``threads=``, ``channel_timeout=``…). waitress serves no TLS; put it behind a proxy
that does. waitress re-``listen()``s each socket with ``backlog``: sockact passes
``socket.SOMAXCONN`` (systemd's default Backlog=) unless given.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from ..serve._grace import DEFAULT_GRACE, LINGER, expired, grace_within, half_close
from ._service import Listen, Service, unread

__all__ = ["run"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def run(
    app: WSGIApp,
    listen: Listen = "127.0.0.1:8000",
    *,
    drain_timeout: float = 30.0,
    ready_timeout: float = 60.0,
    pidfile: str | None = None,
    environ: MutableMapping[str, str] | None = None,
    idle_grace: float = DEFAULT_GRACE,
    **adjustments: Any,
) -> str:
    """Serve ``app`` until a successor took over (``"upgraded"``) or a stop signal (``"stop"``), then
    drain.

    Raises:
        SockactError: the listeners could not be taken or bound.
        ValueError: waitress rejected an adjustment.
    """
    from waitress.channel import HTTPChannel
    from waitress.server import create_server
    from waitress.task import WSGITask

    draining = threading.Event()

    class Task(WSGITask):  # type: ignore[misc]
        def build_response_header(self) -> Any:
            if draining.is_set():
                self.set_close_on_finish()  # "Connection: close" (an app may not set hop-by-hop headers)
            return super().build_response_header()

    class Channel(HTTPChannel):  # type: ignore[misc]
        task_class = Task

    adjustments.setdefault("backlog", socket.SOMAXCONN)
    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        server = create_server(app, sockets=service.sockets, **adjustments)
        for dispatcher in _Loop.listeners(server):
            dispatcher.channel_class = Channel
        loop = _Loop(server, drain_timeout, idle_grace)
        thread = threading.Thread(target=loop.run, name="waitress", daemon=True)
        thread.start()
        try:
            service.ready("waitress")
            outcome = service.upgrader.wait()
            assert outcome is not None  # no timeout given
            draining.set()
            loop.drain(service.upgrader.hammer)
        finally:
            loop.stop()
            thread.join()
            loop.close()
        return outcome


class _Loop:
    """waitress's asyncore loop, run here so that draining can happen between its iterations."""

    def __init__(
        self, server: Any, timeout: float, grace: float = DEFAULT_GRACE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.server = server
        self.map: dict[int, Any] = server.map if hasattr(server, "map") else server._map
        self.timeout = timeout
        self.grace = grace_within(grace, timeout)
        self._clock = clock
        self._draining = False
        self._deadline = 0.0
        self._began = 0.0
        self._idle_since: dict[Any, float] = {}
        self._fin: dict[Any, float] = {}
        self._stop = threading.Event()
        self.drained = threading.Event()

    @staticmethod
    def listeners(server: Any) -> list[Any]:
        """The listening dispatchers of what create_server() returned."""
        from waitress.server import BaseWSGIServer

        found = server.map if hasattr(server, "map") else server._map
        return [d for d in found.values() if isinstance(d, BaseWSGIServer)]

    def run(self) -> None:
        from waitress import wasyncore

        while not self._stop.is_set():
            wasyncore.loop(timeout=0.05, map=self.map, use_poll=True, count=1)
            if self._draining:
                self._drain_step()

    def _drain_step(self) -> None:
        from waitress.channel import HTTPChannel
        from waitress.server import BaseWSGIServer

        late = time.monotonic() >= self._deadline
        now = self._clock()
        channels = 0
        for dispatcher in list(self.map.values()):
            if isinstance(dispatcher, BaseWSGIServer) and dispatcher.accepting:
                dispatcher.accepting = False
                dispatcher.del_channel()  # not close(): that also closes the trigger the task threads pull
                dispatcher.socket.close()  # close, never shutdown(): a successor shares the socket
            elif isinstance(dispatcher, HTTPChannel):
                channels += 1
                fresh = dispatcher.last_activity == dispatcher.creation_time
                idle = not dispatcher.requests and dispatcher.request is None and not dispatcher.total_outbufs_len
                idle = idle and not unread(dispatcher.socket)
                fin = self._fin.get(dispatcher)
                if late or (fin is not None and time.monotonic() - fin >= LINGER):
                    dispatcher.handle_close()  # the deadline, or a client that ignored our FIN
                elif fin is None and idle and not fresh:
                    if expired(self._idle_since.setdefault(dispatcher, now), self._began, now, self.grace):
                        self._fin[dispatcher] = time.monotonic()  # waitress reads the client's close
                        if not half_close(dispatcher.socket):
                            dispatcher.will_close = True
                elif not idle:
                    self._idle_since.pop(dispatcher, None)
        if not channels:
            self.drained.set()

    def drain(self, hammer: threading.Event | None) -> None:
        """Ask the loop to drain; wait until no channel is left, the timeout, or the hammer."""
        self._deadline = time.monotonic() + self.timeout
        self._began = self._clock()
        self._draining = True
        while not self.drained.wait(0.1):
            if (hammer is not None and hammer.is_set()) or time.monotonic() > self._deadline + 1:
                break

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """After the loop thread ended: stop the task threads, close every channel and socket."""
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown()
        wasyncore.close_all(self.map)
