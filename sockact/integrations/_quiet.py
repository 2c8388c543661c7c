"""Draining servers whose own graceful shutdown closes idle keep-alive connections at once (uvicorn,
hypercorn, aiohttp): first make every connection's next response its last, and start that shutdown
only once the server has been quiet — no request in flight, none begun or ended — for the grace.

A keep-alive client sends its next request the moment a response is complete; closing its
connection then loses that request (see :mod:`sockact.serve._grace`). Once draining, the middleware
here answers every request with ``Connection: close``, so each connection ends after its next
response; a connection still open after the grace of silence is one whose client has nothing to
send, and the server's own shutdown may close it. uvicorn needs less (:func:`closing_when_draining`):
it echoes a client's close itself and keeps books of its requests, which the drain polls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..serve._grace import DEFAULT_GRACE, expired, grace_within

__all__ = ["Activity", "asgi_middleware", "closing_when_draining"]


class Activity:
    """Requests in flight and when the last one began or ended during the drain, by ``clock`` (a
    seam for tests). Before the drain no time is read: :func:`~sockact.serve._grace.expired`
    counts silence from the later of the last event and the drain's start, so an earlier event's
    time never matters, and the clock is one call fewer per request begun and ended.

    ``requests``, for a server that keeps its own books (uvicorn): (requests in flight, requests
    answered so far). :meth:`quiet` then reads it at each of its polls instead of :meth:`begin`/
    :meth:`end` being called per request; a change in either is a request begun or ended, timed up to
    one poll late."""

    def __init__(
        self,
        idle_grace: float = DEFAULT_GRACE,
        clock: Callable[[], float] = time.monotonic,
        requests: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.idle_grace = grace_within(idle_grace, float("inf"))  # ValueError now, not at the drain
        self.draining = False
        self.in_flight = 0
        self._clock = clock
        self.last = clock()
        self._requests = requests
        self._seen: tuple[int, int] | None = None

    def begin(self) -> None:
        self.in_flight += 1
        if self.draining:
            self.last = self._clock()

    def end(self) -> None:
        self.in_flight -= 1
        if self.draining:
            self.last = self._clock()

    async def quiet(
        self, timeout: float, hammer: threading.Event, connections: Callable[[], int] | None = None
    ) -> bool:
        """Start draining (responses say ``Connection: close``) and wait until no request is in flight
        and none began or ended for the grace (at most ``timeout``); False if the time or the hammer
        ran out first.

        ``connections`` counts the connections the server has open. When it says 0 and no request is
        in flight, there is nothing to wait for: no client can send a next request on a connection
        that does not exist, so the drain ends at once instead of after the grace. Call this only
        after ``await stop_accepting(...)``: it stops the accepting and waits the loop turns a
        connection accepted just before needs to reach the server's count. Pass None for TLS: a
        connection in its handshake is not counted yet, and the grace covers it."""
        import asyncio

        self.draining = True
        began = self._clock()
        grace = grace_within(self.idle_grace, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not hammer.is_set():
            if self._requests is not None and (seen := self._requests()) != self._seen:
                self._seen, self.in_flight, self.last = seen, seen[0], self._clock()
            if self.in_flight == 0 and (
                (connections is not None and connections() == 0) or expired(self.last, began, self._clock(), grace)
            ):
                return True
            await asyncio.sleep(0.02)
        return False


ASGIApp = Callable[..., Awaitable[None]]


def asgi_middleware(app: ASGIApp, activity: Activity) -> ASGIApp:
    """``app`` with its HTTP requests counted in ``activity`` and ``Connection: close`` added to an
    HTTP/1.x response while draining or when the client asked for it (HTTP/2 has no such header: it
    drains by GOAWAY). Extra positional arguments (hypercorn's wrapped apps take two) pass through."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any, *extra: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send, *extra)
            return
        # Per request, so written for speed (~1.1 µs against a bare ASGI call in a micro-benchmark):
        # a loop rather than any() over a generator.
        asked = False
        if scope.get("http_version") in ("1.0", "1.1"):
            for name, value in scope.get("headers", ()):
                if name.lower() == b"connection" and b"close" in (o.strip() for o in value.lower().split(b",")):
                    asked = True
                    break
            http1 = True
        else:
            http1 = False

        async def send_closing(message: dict[str, Any]) -> None:
            await send(_closed(message) if http1 and (asked or activity.draining) else message)

        activity.begin()
        try:
            await app(scope, receive, send_closing, *extra)
        finally:
            activity.end()

    return wrapped


def closing_when_draining(app: ASGIApp, activity: Activity) -> ASGIApp:
    """``app`` itself until ``activity`` drains, then with ``Connection: close`` added to each new
    HTTP/1.x request's response: for a server that already echoes a client's ``Connection: close``
    and counts its requests itself (uvicorn; :class:`Activity`'s ``requests``; the responses of
    requests already running when the drain starts are the server's to mark). A plain function
    handing back the app's coroutine, not a coroutine of its own, so serve it as ASGI 3 by name
    (uvicorn's ``interface="asgi3"``). Before the drain it costs a call and an attribute read per
    request: uvicorn's own CLI took 544–546k instructions per keep-alive request, this integration
    547k, and 558k with :func:`asgi_middleware` (callgrind, 2,000 requests)."""

    def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if activity.draining and scope.get("type") == "http" and scope.get("http_version") in ("1.0", "1.1"):
            return app(scope, receive, _closing(send))
        return app(scope, receive, send)

    return wrapped


def _closing(send: Any) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def send_closing(message: dict[str, Any]) -> None:
        await send(_closed(message))

    return send_closing


def _closed(message: dict[str, Any]) -> dict[str, Any]:
    """``message``, if it starts a response, saying ``Connection: close`` (RFC 9112 §9.6: the
    server's close option ends the connection after this response). Connection is hop-by-hop, the
    server's to decide (RFC 9110 §7.6.1): an app's ``keep-alive`` is dropped — kept, it would invite
    the next request onto a connection that is about to close, and a busy client would keep the
    drain from ever being quiet — and its other options stay. A 101 (Switching Protocols) is left
    alone: its ``Connection: upgrade`` hands the connection on."""
    if message.get("type") != "http.response.start" or message.get("status") == 101:
        return message
    headers: list[tuple[bytes, bytes]] = []
    options: list[bytes] = []
    for name, value in message.get("headers", ()):
        if name.lower() == b"connection":
            options += [o.strip() for o in value.split(b",") if o.strip()]
        else:
            headers.append((name, value))
    if b"close" in (o.lower() for o in options):
        return message
    options = [o for o in options if o.lower() != b"keep-alive"] + [b"close"]
    return {**message, "headers": [*headers, (b"connection", b", ".join(options))]}
