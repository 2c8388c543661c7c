"""Waiting for fds without select(): select() refuses fds ≥ 1024 (FD_SETSIZE), which a server with
many connections — or one whose fd table was once full — reaches, found by the fd-exhaustion fault test."""

from __future__ import annotations

import select
from collections.abc import Iterable

__all__ = ["readable"]


def readable(fds: Iterable[int], timeout: float | None) -> list[int]:
    """The fds among ``fds`` that are readable, closed by the peer or in error within ``timeout``
    seconds (None: no limit), as select()'s read set would report them."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    events = poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
    return [fd for fd, _ in events]
