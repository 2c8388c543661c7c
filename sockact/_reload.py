"""Type=notify-reload support: on the reload signal, RELOADING=1+MONOTONIC_USEC, reload, then READY=1.

systemd ≥ 253 sends ReloadSignal= (SIGHUP by default) to a Type=notify-reload service and waits for
RELOADING=1 with MONOTONIC_USEC= and then READY=1 (systemd.service(5)). The signal handler only
writes one byte to a pipe (async-signal-safe); the reload itself runs in the caller's loop via
:meth:`ReloadHandler.run_pending`, :meth:`wait` or :meth:`wait_async`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, MutableMapping
from types import TracebackType

from ._notify import notify, ready, reloading
from ._poll import readable, readable_async
from ._signals import SignalPipe

TYPE_CHECKING = False  # not typing's: importing typing costs a successor ~3 ms on its way to READY=1
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ReloadHandler"]

log = logging.getLogger("sockact.reload")


class ReloadHandler:
    """Runs ``reload()`` inside the notify-reload protocol when ``sig`` arrives. A context manager.

    If ``reload()`` raises, STATUS= carries the error and READY=1 is still sent (the manager is
    owed it); the exception is logged and kept in ``last_error``. Signals that arrive while a
    reload is pending are coalesced into one.
    """

    def __init__(
        self,
        reload: Callable[[], Any],
        *,
        sig: int = signal.SIGHUP,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.reload = reload
        self.signal = sig
        self.environ = environ
        self.last_error: BaseException | None = None
        self.reloads = 0
        self._signals = SignalPipe([sig])

    def fileno(self) -> int:
        """Readable when a reload is pending (for selectors / add_reader)."""
        return self._signals.fileno()

    def trigger(self) -> None:
        """Mark a reload pending, as the signal would."""
        self._signals.raise_(self.signal)

    def run_pending(self) -> bool:
        """Run the reload if a signal arrived; True if one ran (several pending signals: one reload)."""
        if not self._signals.read(0):
            return False
        reloading(environ=self.environ)
        try:
            self.reload()
        except Exception as exc:  # the manager is owed READY=1 whatever happened
            self.last_error = exc
            log.exception("reload failed")
            notify({"READY": 1, "STATUS": f"reload failed: {type(exc).__name__}: {exc}"[:400]}, environ=self.environ)
        else:
            self.last_error = None
            ready(environ=self.environ)
        self.reloads += 1
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the signal arrives (or ``timeout``), then run the reload; True if one ran."""
        readable([self.fileno()], timeout)
        return self.run_pending()

    async def wait_async(self) -> bool:
        """Await the signal, then run the reload (asyncio)."""
        import asyncio

        await readable_async(asyncio.get_running_loop(), self.fileno())
        return self.run_pending()

    def close(self) -> None:
        """Restore the previous signal disposition and close the pipe. Idempotent."""
        self._signals.close()

    def __enter__(self) -> ReloadHandler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
