"""When a draining server may close a keep-alive connection that is not answering a request, and how.

A keep-alive client sends its next request the moment the previous response is complete; a server
that closes an "idle" connection at that moment loses the request (RFC 9112 §9.3.1: the client
cannot tell whether it was processed, and a client that does not retry — wrk, many libraries on
POST, proxies — reports a failure). So once draining, every connection is answered with
``Connection: close`` on its next response and closed after it, and only a connection that has sent
nothing for :data:`DEFAULT_GRACE` seconds of the drain is closed without a response — with a FIN
(:func:`half_close`), reading and discarding what still arrives, so the kernel sends no RST for
unread data.
"""

from __future__ import annotations

import math
import os
import socket
import time

from .._poll import readable

__all__ = ["DEFAULT_GRACE", "LINGER", "discard", "expired", "grace_within", "half_close"]

#: Seconds a keep-alive connection may stay silent during a drain before it is closed unanswered.
#: A client with a request ready sends it within a millisecond of the previous response.
DEFAULT_GRACE = 0.5

#: After the FIN to an idle client, seconds to wait for the client's own close (its FIN), reading and
#: discarding, before the connection is closed anyway.
LINGER = 1.0


def grace_within(grace: float, timeout: float) -> float:
    """``grace`` bounded by the drain ``timeout``: at most half of it, so that a connection idle
    through the whole drain is closed cleanly (FIN) before the deadline would cut it.

    Raises:
        ValueError: ``grace`` is negative or not a number.
    """
    if not (grace >= 0) or math.isinf(grace):
        raise ValueError(f"idle_grace must be a number of seconds >= 0, not {grace!r}")
    return max(0.0, min(grace, timeout / 2))


def expired(idle_since: float, drain_began: float, now: float, grace: float) -> bool:
    """Whether a connection idle since ``idle_since`` may be closed at ``now``: it has been silent for
    ``grace`` seconds of a drain that began at ``drain_began``. At exactly ``grace`` it has."""
    return now - max(idle_since, drain_began) >= grace


def half_close(sock: socket.socket | int) -> bool:
    """Send FIN on ``sock`` (a socket or fd) without closing it: the peer reads EOF, the server keeps
    reading (and discards what comes) until the peer closes too. For a TLS socket this acts on the
    TCP connection (no close_notify). Returns False when the connection is already gone."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    if fd < 0:
        return False
    try:
        raw = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    with raw:
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            return False
    return True


def discard(sock: socket.socket, timeout: float) -> None:
    """Read and drop what ``sock`` receives until the peer's EOF, an error, or ``timeout`` seconds:
    closing a socket with unread bytes makes the kernel send RST, which can destroy a response the
    peer has not read yet. TLS sockets are read at the TCP level."""
    fd = sock.fileno()
    if fd < 0:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not socket.socket.recv(sock, 65536, socket.MSG_DONTWAIT):
                return  # EOF
            continue
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not readable([fd], remaining):
            return
