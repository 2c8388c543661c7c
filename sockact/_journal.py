"""Journald-friendly logging: ``<N>`` syslog-priority prefixes when stderr is the journal (systemd.exec(5)).

systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` for a service whose stdout/stderr go to the journal;
a process may check that its stderr is that stream (it could have been redirected) and then
prefix each line with ``<priority>`` (sd-daemon(3)), which journald strips and records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = ["JournalFormatter", "stream_is_journal", "syslog_priority"]

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
        env = os.environ if environ is None else environ
        try:
            st = os.fstat(fd)
            self.journal = stream_is_journal(env.get("JOURNAL_STREAM"), st.st_dev, st.st_ino)
        except OSError:
            self.journal = False

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))
