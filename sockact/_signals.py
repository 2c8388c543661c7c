"""Signal handlers that only record: each signal writes its number to a pipe; the loop reads it.

Writing one byte to a non-blocking pipe is async-signal-safe and wakes ``select``/``add_reader``;
the work a signal asks for happens in the caller's loop, never inside the handler.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any

__all__ = ["SignalPipe"]


class SignalPipe:
    """Records ``signals`` into a pipe. A context manager; ``close()`` restores the old handlers.

    Must be created in the main thread (Python only installs handlers there).
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}
        try:
            for sig in dict.fromkeys(signals):
                self._previous[sig] = signal.signal(sig, self._record)
        except BaseException:
            self.close()
            raise

    def _record(self, signum: int, frame: FrameType | None) -> None:
        try:
            os.write(self._write, bytes([signum]))
        except OSError:
            pass  # pipe full: signals are already pending, this one is coalesced

    def raise_(self, signum: int) -> None:
        """Record ``signum`` as if it had arrived (for tests and programmatic reloads)."""
        self._record(signum, None)

    def fileno(self) -> int:
        """Readable while signals are pending."""
        return self._read

    def read(self, timeout: float | None = 0) -> list[int]:
        """The signals recorded so far, waiting up to ``timeout`` seconds (None: forever) for one."""
        if timeout != 0:
            select.select([self._read], [], [], timeout)
        try:
            return list(os.read(self._read, 4096))
        except BlockingIOError:
            return []

    def close(self) -> None:
        """Restore the previous handlers and close the pipe. Idempotent."""
        while self._previous:
            sig, previous = self._previous.popitem()
            signal.signal(sig, previous)
        if self._read >= 0:
            os.close(self._read)
            os.close(self._write)
            self._read = self._write = -1

    def __enter__(self) -> SignalPipe:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
