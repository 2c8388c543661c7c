"""The manager above: the one object that tells systemd (or whoever started us) what happened.

Used by every driver of the hand-over machine. Transient failures (EMFILE, ENOBUFS, …: the fd
table or kernel buffers are full for a moment) are retried for up to ~2 s; a message that never gets
through is logged at error, never dropped silently (sd_notify(3)).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping

from ._errors import NotifyError
from ._notify import barrier, notify

__all__ = ["Upstream"]

log = logging.getLogger("sockact.upstream")

#: errnos that a moment may cure (the fd table or kernel buffers are full)
TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN})


class Upstream:
    """NOTIFY_SOCKET of the manager above (empty: none, every call is a no-op that returns False).

    ``retries`` × ``pause`` bound the retry of a transient failure; ``sleep`` is a seam for tests.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        retries: int = 20,
        pause: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source = environ
        self.retries = retries
        self.pause = pause
        self._sleep = sleep

    @property
    def environ(self) -> MutableMapping[str, str]:
        """NOTIFY_SOCKET alone, read from the process's environment now: a successor switches it to
        the real manager after its hand-over (``successor_handshake``)."""
        target = self._source.get("NOTIFY_SOCKET")
        return {"NOTIFY_SOCKET": target} if target else {}

    @property
    def address(self) -> str:
        """The manager's NOTIFY_SOCKET, or "" when there is none."""
        return self.environ.get("NOTIFY_SOCKET", "")

    def send(self, fields: Mapping[str, object]) -> bool:
        """notify(fields), retrying transient failures. Raises NotifyError when it never gets through."""
        for attempt in range(self.retries):
            try:
                return notify(fields, environ=self.environ)
            except NotifyError as exc:
                if exc.errno not in TRANSIENT or attempt + 1 == self.retries:
                    raise
                self._sleep(self.pause)
        return False  # retries == 0

    def tell(self, fields: Mapping[str, object]) -> bool:
        """:meth:`send`, with a failure logged at error instead of raised: for callers already on a
        failure path, or forwarding a child's STATUS=, who must keep serving either way."""
        try:
            return self.send(fields)
        except NotifyError as exc:
            log.error("could not tell the service manager %s: %s", dict(fields), exc)
            return False

    def hand_over(self, pid: int, status: str, *, mainpid: bool, confirm: bool = True) -> None:
        """Tell the manager ``pid`` serves now: ``MAINPID=pid`` + READY=1 + STATUS= (``mainpid=False``:
        READY=1 + STATUS= only — a supervisor, which stays main itself).

        ``confirm``: then BARRIER=1 (sd_notify_barrier(3)), so that the manager has processed the
        hand-over before the successor speaks to it. A manager that does not acknowledge within 5 s
        is logged, not undone — the datagram was delivered and the successor may already be MainPID.

        Raises:
            NotifyError: the hand-over datagram could not be delivered.
        """
        self.send({"MAINPID": pid, "READY": 1, "STATUS": status} if mainpid else {"READY": 1, "STATUS": status})
        if confirm and self.address:
            try:
                barrier(5.0, environ=self.environ)
            except (NotifyError, OSError) as exc:  # EMFILE for its pipe too: the hand-over was delivered
                log.warning("hand-over sent, but the manager did not confirm it: %s", exc)
