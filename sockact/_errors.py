"""The exception hierarchy: one root, one subclass per party who can fix the problem.

=====================  ==================================  ==========================================
error                  also a                              who fixes it
=====================  ==================================  ==========================================
``UsageError``         ``ValueError``                      the caller: a value breaks a rule
``StateError``         ``RuntimeError``                    the caller: a call at the wrong moment
``ActivationError``    ``OSError`` (libsystemd's errno)    whoever wrote the unit or started us
``AddressError``       ``ActivationError``, ``ValueError`` the address in the spec or the unit
``NotifyError``        ``OSError`` (the errno)             the manager's socket: delivery failed
``UpgradeError``       —                                   the successor or its environment
``SpawnError``         ``UpgradeError``                    the command line, PATH, fd limits
``SuccessorError``     ``UpgradeError``                    the new code: it exited, hung or crashed
=====================  ==================================  ==========================================

A caller's misuse is never an ``OSError``, so ``except OSError:`` around I/O cannot swallow it.
"""

from __future__ import annotations

__all__ = [
    "SockactError",
    "UsageError",
    "StateError",
    "ActivationError",
    "AddressError",
    "NotifyError",
    "UpgradeError",
    "SpawnError",
    "SuccessorError",
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


class UsageError(SockactError, ValueError):
    """A value passed to sockact breaks a rule: an sd_notify key, a FileDescriptorName=, a negative
    timeout. The message names the rule and its man page; nothing was sent or changed."""


class StateError(SockactError, RuntimeError):
    """A call at the wrong moment: outside the ``with`` block that owns the signals, or a second
    upgrade while one is running."""


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

    Also an ``OSError`` carrying the errno, as python-systemd's ``notify()`` raises. Only for a
    failed delivery: a malformed message is a :class:`UsageError`.
    """


class UpgradeError(SockactError):
    """An in-place upgrade (a hand-over to a successor) failed; the old process keeps serving."""


class SpawnError(UpgradeError):
    """The successor could not be started: no such executable, fd limit, an empty command line."""


class SuccessorError(UpgradeError):
    """The successor started but did not take over: it exited, crashed, or sent no READY=1 in time."""


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
