"""The exception hierarchy: one root, one subclass per party who can fix the problem."""

from __future__ import annotations

__all__ = ["SockactError", "ActivationError", "AddressError", "NotifyError", "UpgradeError"]


class SockactError(Exception):
    """Root of every error sockact raises on purpose.

    ``errno`` carries the POSIX error number libsystemd would have returned (negated there), when
    there is one, so callers ported from ``systemd.daemon`` can keep their checks.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ActivationError(SockactError, OSError):
    """The inherited environment (``LISTEN_*``) or the inherited fds are wrong.

    Also an ``OSError`` with libsystemd's errno, so code ported from ``systemd.daemon`` that catches
    ``OSError`` keeps working.

    Fixed by whoever wrote the unit file or started the process: the message names the variable,
    its value, the fd and what to change.
    """


class AddressError(ActivationError, ValueError):
    """An address in ``ListenStream=`` syntax could not be parsed or bound."""


class NotifyError(SockactError, OSError):
    """A notification could not be delivered to ``$NOTIFY_SOCKET`` (or the receiver failed).

    Also an ``OSError`` carrying the errno, as python-systemd's ``notify()`` raises.
    """


class UpgradeError(SockactError):
    """An in-place upgrade failed; the old process keeps serving."""
