"""The process environment as sockact sees it: ``os.environ`` plus variables it took out of it.

Children inherit ``os.environ``. Once a process takes its listeners, the variables that let a
process speak *as the service* — NOTIFY_SOCKET and the upgrader's upstream socket — are moved out of
``os.environ`` into this module's private store (:func:`hide_notify_socket`), so a helper the app
starts (a grandchild of the manager) cannot send READY=1 or MAINPID= for it, the same reason
sd_notify(3)'s ``unset_environment`` exists. sockact's own functions keep reading them through
:func:`process_environ` when called without an explicit ``environ``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping

from ._env import UPSTREAM_NOTIFY_VAR

__all__ = ["hide_notify_socket", "process_environ"]

#: The variables :func:`hide_notify_socket` moves out of ``os.environ``.
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


def hide_notify_socket() -> None:
    """Move NOTIFY_SOCKET (and the upstream socket of a successor) out of ``os.environ``; sockact
    keeps using them. Idempotent; a later ``os.environ["NOTIFY_SOCKET"] = …`` takes precedence."""
    for key in HIDDEN:
        if key in os.environ:
            _private[key] = os.environ.pop(key)


def _reset() -> None:
    """Forget the private store (tests)."""
    _private.clear()
