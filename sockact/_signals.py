"""Signal handlers that only record: each signal writes its number to a pipe; the loop reads it.

Writing one byte to a non-blocking pipe is async-signal-safe and wakes ``select``/``add_reader``;
the work a signal asks for happens in the caller's loop, never inside the handler.

The byte is written at C level through ``signal.set_wakeup_fd`` when nobody else (asyncio) holds the
process's wakeup fd. That matters: the kernel may deliver a signal to any thread, and Python runs
its handler only when the *main* thread next gets control — a main thread blocked in ``select`` on
our pipe would never wake for a signal that landed on a worker thread. When asyncio holds the wakeup
fd, its loop wakes the main thread instead and the Python-level handler writes the byte.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from types import FrameType, TracebackType

from ._poll import readable

TYPE_CHECKING = False  # not typing's: importing typing costs a successor ~3 ms on its way to READY=1
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SignalPipe"]


class SignalPipe:
    """Records ``signals`` into a pipe. A context manager; ``close()`` restores the old handlers.

    Must be created in the main thread (Python only installs handlers there).
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup: int | None = None
        try:
            previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            if previous_wakeup == -1:
                self._previous_wakeup = previous_wakeup  # ours now: the C handler writes the byte
            else:
                signal.set_wakeup_fd(previous_wakeup)  # asyncio's: leave it, write from Python
            for sig in dict.fromkeys(signals):
                self._previous[sig] = signal.signal(sig, self._record)
        except BaseException:
            self.close()
            raise

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self._previous_wakeup is None:  # with the wakeup fd, the C handler already wrote it
            self._write_byte(signum)

    def _write_byte(self, signum: int) -> None:
        try:
            os.write(self._write, bytes([signum]))
        except OSError:
            pass  # pipe full: signals are already pending, this one is coalesced

    def raise_(self, signum: int) -> None:
        """Record ``signum`` as if it had arrived (for tests and programmatic reloads)."""
        self._write_byte(signum)

    def fileno(self) -> int:
        """Readable while signals are pending."""
        return self._read

    def read(self, timeout: float | None = 0) -> list[int]:
        """The signals recorded so far, waiting up to ``timeout`` seconds (None: forever) for one."""
        if timeout != 0:
            readable([self._read], timeout)
        try:
            return list(os.read(self._read, 4096))
        except BlockingIOError:
            return []

    def close(self, ignore: Iterable[int] = ()) -> None:
        """Restore the previous handlers and wakeup fd, and close the pipe. Idempotent.

        A signal in ``ignore`` whose previous disposition was the default is left ignored instead:
        for a process that handed over but has not exited yet, whose pid a manager may still
        signal (see :meth:`sockact.Upgrader.close`)."""
        ignored = set(ignore)
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._previous_wakeup = None
        while self._previous:
            sig, previous = self._previous.popitem()
            signal.signal(sig, signal.SIG_IGN if sig in ignored and previous == signal.SIG_DFL else previous)
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
