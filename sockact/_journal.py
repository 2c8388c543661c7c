"""Journald-friendly logging: ``<N>`` syslog-priority prefixes when stderr is the journal (systemd.exec(5)).

systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` for a service whose stdout/stderr go to the journal;
a process may check that its stderr is that stream (it could have been redirected) and then
prefix each line with ``<priority>`` (sd-daemon(3)), which journald strips and records.

:func:`configure_logging` is how sockact's own lines reach stderr when nobody else decided: the rule
is in its docstring (a library must not take over the root logger).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `sockact reload`'s error path should not import typing
if TYPE_CHECKING:
    from typing import IO

__all__ = ["LEVELS", "JournalFormatter", "configure_logging", "fd_is_journal", "stream_is_journal", "syslog_priority"]

#: The ``--log-level`` names and their logging levels.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: How sockact's own handler formats a line (journald adds the time; the pid tells generations apart).
FORMAT = "sockact[%(process)d]: %(message)s"

_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a logging level: CRITICAL→2, ERROR→3, WARNING→4, INFO→6, below→7."""
    return next((prio for level, prio in _PRIORITIES if levelno >= level), 7)


def stream_is_journal(journal_stream: str | None, st_dev: int, st_ino: int) -> bool:
    """Whether ``JOURNAL_STREAM`` names the file with this device and inode. Pure."""
    if not journal_stream:
        return False
    dev, sep, ino = journal_stream.partition(":")
    return bool(sep) and dev.isdigit() and ino.isdigit() and (int(dev), int(ino)) == (st_dev, st_ino)


def fd_is_journal(fd: int = 2, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``fd`` (default stderr) is the stream ``$JOURNAL_STREAM`` names (False if it is closed)."""
    env = os.environ if environ is None else environ
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return stream_is_journal(env.get("JOURNAL_STREAM"), st.st_dev, st.st_ino)


class JournalFormatter(logging.Formatter):
    """A Formatter that prefixes every line with ``<N>`` when ``fd`` (default stderr) is the journal.

    Outside the journal it formats plainly. ``environ`` is a seam for tests.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        *,
        fd: int = 2,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(fmt, datefmt)
        self.journal = fd_is_journal(fd, environ)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class _Fallback(logging.StreamHandler):  # type: ignore[type-arg]
    """sockact's own stderr handler; it stands down once the application gives the root logger a
    handler (configured logging after all), so no line is written twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def configure_logging(
    level: int | None = None, *, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Send the ``sockact`` logger's lines to stderr — ``<N>``-prefixed when stderr is the journal —
    unless the application configured logging itself. Returns whether a handler was installed.

    The rule: the root logger is the application's and is never touched. If it has a handler
    (``logging.basicConfig``, ``dictConfig`` with a root, …) or the ``sockact`` logger has one, the
    application decided where logs go: nothing is added and sockact's records propagate to its
    handlers as they always do. Otherwise one handler goes on the ``sockact`` logger (once: calling
    this again adds none), writing ``sockact[PID]: message`` through :class:`JournalFormatter`, and
    the ``sockact`` logger's level becomes INFO if it was unset (Python's default would drop the
    start and reload lines). If the application configures the root logger later, that handler
    stands down. ``level`` (``sockact run --log-level``) sets the ``sockact`` logger's level in
    every case. ``stream`` (default ``sys.stderr``) and ``environ`` are seams for tests.

    The ``<N>`` prefix follows sd-daemon(3); stderr counts as the journal only when its device and
    inode are the ones ``$JOURNAL_STREAM`` names (systemd.exec(5)), so a redirected stderr stays plain.
    """
    logger = logging.getLogger("sockact")
    if level is not None:
        logger.setLevel(level)
    if logging.getLogger().handlers or logger.handlers:
        return False
    handler = _Fallback(stream if stream is not None else sys.stderr)
    fd = _fileno(stream) if stream is not None else 2
    handler.setFormatter(JournalFormatter(FORMAT, fd=fd, environ=environ))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return True


def _fileno(stream: IO[str]) -> int:
    try:
        return stream.fileno()
    except (OSError, ValueError):  # io.StringIO and friends: never the journal
        return -1
