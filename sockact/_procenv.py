"""The process environment as sockact sees it: ``os.environ`` plus variables it took out of it.

Children inherit ``os.environ``. Once a process takes its listeners, sockact's own hand-over
variable (SOCKACT_UPSTREAM_NOTIFY_SOCKET, which a successor reads once) moves out of ``os.environ``
into this module's private store, so no process the app starts sees it. NOTIFY_SOCKET stays in
``os.environ`` by default — apps that send READY=1 with python-systemd or sdnotify need it there, as
libsystemd's sd_notify(3) reads it with getenv() — and moves too only when the app asks
(``get_listeners(hide_notify_socket=True)``): then a helper the app starts (a grandchild of the
manager) cannot send READY=1 or MAINPID= for it, the reason sd_notify(3)'s ``unset_environment``
exists. sockact's own functions keep reading both through :func:`process_environ` when called
without an explicit ``environ``; a write through it lands where the variable lives, so a
successor's switch to the real manager (NOTIFY_SOCKET := upstream) reaches ``os.environ`` unless
the app hid it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping

from ._env import UPSTREAM_NOTIFY_VAR

__all__ = ["hide_notify_socket", "process_environ"]

#: The variables :func:`hide_notify_socket` moves out of ``os.environ`` (NOTIFY_SOCKET only on request).
HIDDEN = ("NOTIFY_SOCKET", UPSTREAM_NOTIFY_VAR)

_private: dict[str, str] = {}


class _ProcessEnviron(MutableMapping[str, str]):
    """``os.environ`` first, then the private store; a write to a private key stays private."""

    def __getitem__(self, key: str) -> str:
        if key in os.environ:
            return os.environ[key]
        return _private[key]

    def __setitem__(self, key: str, value: str) -> None:
        if key in _private and key not in os.environ:
            _private[key] = value
        else:
            os.environ[key] = value

    def __delitem__(self, key: str) -> None:
        found = _private.pop(key, None) is not None
        if key in os.environ:
            del os.environ[key]
            found = True
        if not found:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from os.environ
        yield from (key for key in list(_private) if key not in os.environ)

    def __len__(self) -> int:
        return len(os.environ) + sum(1 for key in _private if key not in os.environ)


_view = _ProcessEnviron()


def process_environ() -> MutableMapping[str, str]:
    """The mapping sockact reads when no ``environ`` is given."""
    return _view


def hide_notify_socket(notify_socket: bool = True) -> None:
    """Move the upstream socket of a successor (and NOTIFY_SOCKET, unless ``notify_socket=False``) out
    of ``os.environ``; sockact keeps using them. Idempotent; a later ``os.environ[…] = …`` takes
    precedence."""
    for key in HIDDEN if notify_socket else (UPSTREAM_NOTIFY_VAR,):
        if key in os.environ:
            _private[key] = os.environ.pop(key)


def _reset() -> None:
    """Forget the private store (tests)."""
    _private.clear()
