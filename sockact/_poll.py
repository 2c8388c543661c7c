"""Waiting for fds without select(): select() refuses fds ≥ 1024 (FD_SETSIZE), which a server with
many connections — or one whose fd table was once full — reaches, found by the fd-exhaustion fault test."""

from __future__ import annotations

import select

TYPE_CHECKING = False  # not typing's: importing typing costs more than this module
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable

__all__ = ["readable", "readable_async"]


def readable(fds: Iterable[int], timeout: float | None) -> list[int]:
    """The fds among ``fds`` that are readable, closed by the peer or in error within ``timeout``
    seconds (None: no limit), as select()'s read set would report them."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    events = poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
    return [fd for fd, _ in events]


async def readable_async(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` is readable, on the asyncio ``loop`` (add_reader)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
