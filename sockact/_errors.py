"""The exception hierarchy: one root, one subclass per party who can fix the problem."""

from __future__ import annotations

__all__ = [
    "SockactError",
    "ActivationError",
    "AddressError",
    "NotifyError",
    "UpgradeError",
    "UsageError",
    "with_errno_class",
]


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


class UsageError(SockactError, ValueError):
    """A caller's misuse (a bad option, argument or combination): fixed by whoever called sockact.

    A ``ValueError``, never an ``OSError``: nothing in the system failed.
    """


_errno_classes: dict[tuple[type[SockactError], type[OSError]], type[SockactError]] = {}


def with_errno_class(cls: type[SockactError], message: str, errno: int | None) -> SockactError:
    """``cls(message, errno=errno)``, also an instance of the OSError subclass Python maps ``errno`` to.

    ``OSError(errno.ECONNREFUSED, …)`` is a ``ConnectionRefusedError`` (PEP 3151) and python-systemd's
    errors are built that way, so code ported from it catches ``ConnectionRefusedError`` or
    ``FileNotFoundError``; the result is still a ``cls`` (e.g. NotifyError) for sockact's callers.
    """
    if errno is None or not issubclass(cls, OSError):
        return cls(message, errno=errno)
    builtin = type(OSError(errno, ""))
    if builtin is OSError:
        return cls(message, errno=errno)
    combined = _errno_classes.get((cls, builtin))
    if combined is None:
        combined = type(cls.__name__, (cls, builtin), {"__module__": cls.__module__, "__doc__": cls.__doc__})
        _errno_classes[(cls, builtin)] = combined
    return combined(message, errno=errno)
