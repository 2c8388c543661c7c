"""The PID file of a PID-file hand-over (``PIDFile=``, systemd.service(5)).

systemd reads it when the main process exits and after ExecReload=, and takes the pid written there
as the main process; ``sockact units`` sets ``SOCKACT_PIDFILE`` to the same path so the app finds it.
"""

from __future__ import annotations

import os

from ._errors import UpgradeError

__all__ = ["PIDFILE_VAR", "PidFile", "read_pidfile", "write_pidfile"]

#: Where an app started by a sockact-generated unit learns its PID file (the unit's PIDFile=).
PIDFILE_VAR = "SOCKACT_PIDFILE"


def write_pidfile(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically: a new file beside it, then rename over it.

    The temporary file is created with O_EXCL|O_NOFOLLOW, and rename() replaces a symlink at ``path``
    rather than writing through it, so a link planted there cannot redirect the write.

    Raises:
        UpgradeError: the file could not be written; the message names the file that failed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    failed = tmp
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        failed = path
        os.rename(tmp, path)
    except OSError as exc:
        if failed == path or not isinstance(exc, FileExistsError):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        what = f"its temporary file {tmp}" if failed == tmp else path
        raise UpgradeError(
            f"cannot write PID file {path} ({what}: {exc.strerror}); check PIDFile= and that its directory "
            "is writable by the service (RuntimeDirectory=)"
        ) from exc


def read_pidfile(path: str) -> int | None:
    """The pid ``path`` names; None when it cannot be read or names none."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class PidFile:
    """The PID file of a PID-file hand-over: it names whoever serves.

    systemd reads it when the main process exits and when ExecReload= exits, and takes the pid there
    as the main process; it supervises that process fully only if it is systemd's own child. So a
    cold start names itself, and a hand-over names the successor only once it is about to be made
    systemd's child (``Child.orphan``; docs/PROTOCOL.md §5 and §9).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def claim(self) -> None:
        """A cold start names itself (a successor does not: its predecessor names it at the hand-over)."""
        write_pidfile(self.path, os.getpid())

    def name(self, pid: int) -> None:
        """Name ``pid``. Raises UpgradeError, which fails a hand-over while this process still serves."""
        write_pidfile(self.path, pid)
