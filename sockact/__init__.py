"""sockact: socket activation, sd_notify and zero-downtime restarts by systemd's own protocol.

The public surface is exactly ``__all__``; everything in ``sockact._*`` is private.
``sockact.daemon`` is a drop-in for python-systemd's ``systemd.daemon``.
"""

from __future__ import annotations

from ._address import Address, parse_address
from ._errors import ActivationError, AddressError, NotifyError, SockactError, UpgradeError
from ._journal import JournalFormatter
from ._listeners import Listeners, get_listeners
from ._notify import (
    barrier,
    extend_timeout,
    fdstore,
    fdstore_remove,
    mainpid,
    notify,
    ready,
    reloading,
    status,
    stopping,
    watchdog_ping,
    watchdog_trigger,
)
from ._receiver import Message, NotifyReceiver
from ._reload import ReloadHandler
from ._upgrade import Upgrader
from ._watchdog import AsyncWatchdog, Watchdog, watchdog_interval

__version__ = "0.1.0"

__all__ = [
    "Address",
    "ActivationError",
    "AddressError",
    "AsyncWatchdog",
    "JournalFormatter",
    "Listeners",
    "Message",
    "NotifyError",
    "NotifyReceiver",
    "ReloadHandler",
    "SockactError",
    "UpgradeError",
    "Upgrader",
    "barrier",
    "extend_timeout",
    "fdstore",
    "fdstore_remove",
    "get_listeners",
    "mainpid",
    "notify",
    "parse_address",
    "ready",
    "reloading",
    "status",
    "stopping",
    "Watchdog",
    "watchdog_interval",
    "watchdog_ping",
    "watchdog_trigger",
]
