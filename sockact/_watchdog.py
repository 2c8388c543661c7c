"""The service watchdog: when to ping (sd_watchdog_enabled(3)) and a pinger that does it.

Pings go at half the interval on the monotonic clock, as sd_watchdog_enabled(3) recommends.
A failed ping is logged at ERROR and kept in ``error`` — never swallowed silently — and pinging
goes on, since a transient failure must not turn into a watchdog kill.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import MutableMapping
from types import TracebackType

from ._env import parse_watchdog_env
from ._errors import NotifyError
from ._notify import watchdog_ping
from ._procenv import process_environ

TYPE_CHECKING = False  # not typing's: importing typing costs more than this module
if TYPE_CHECKING:
    import asyncio

__all__ = ["watchdog_interval", "Watchdog", "AsyncWatchdog"]

log = logging.getLogger("sockact.watchdog")


def watchdog_interval(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog interval in seconds from WATCHDOG_USEC, or None when unset or meant for another pid."""
    env = process_environ() if environ is None else environ
    usec = parse_watchdog_env(env, os.getpid() if pid is None else pid)
    return None if usec is None else usec / 1_000_000


class _Base:
    def __init__(self, interval: float | None = None, *, environ: MutableMapping[str, str] | None = None) -> None:
        self.environ = environ
        self.interval = watchdog_interval(environ) if interval is None else interval
        self.pings = 0
        self.error: NotifyError | None = None

    @property
    def active(self) -> bool:
        """Whether a watchdog applies to this process (else the pinger does nothing)."""
        return self.interval is not None

    def _ping(self) -> None:
        try:
            watchdog_ping(environ=self.environ)
            self.pings += 1
        except NotifyError as exc:
            self.error = exc
            log.error("watchdog ping failed: %s", exc)


class Watchdog(_Base):
    """A thread that sends WATCHDOG=1 every interval/2 while running. A context manager.

    ``interval`` defaults to WATCHDOG_USEC (honouring WATCHDOG_PID); with none, it is inactive.
    """

    def __init__(self, interval: float | None = None, *, environ: MutableMapping[str, str] | None = None) -> None:
        super().__init__(interval, environ=environ)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        """Start pinging (first ping at once). No-op when inactive or already started."""
        if self.interval is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sockact-watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None
        while True:
            self._ping()
            if self._stop.wait(self.interval / 2):
                return

    def close(self) -> None:
        """Stop pinging and join the thread. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncWatchdog(_Base):
    """The asyncio pinger: an ``async with`` block runs a task sending WATCHDOG=1 every interval/2."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        import asyncio

        assert self.interval is not None
        while True:
            self._ping()
            await asyncio.sleep(self.interval / 2)

    async def __aenter__(self) -> AsyncWatchdog:
        import asyncio

        if self.interval is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sockact-watchdog")
        return self

    async def aclose(self) -> None:
        """Cancel the pinging task and wait for it. Idempotent."""
        import asyncio

        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
