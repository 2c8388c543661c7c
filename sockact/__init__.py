"""sockact: socket activation, sd_notify and zero-downtime restarts by systemd's own protocol.

The public surface is exactly ``__all__``; everything in ``sockact._*`` is private.
``sockact.daemon`` is a drop-in for python-systemd's ``systemd.daemon``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs more than all of this
if TYPE_CHECKING:
    from ._address import Address, parse_address
    from ._errors import (
        ActivationError,
        AddressError,
        NotifyError,
        SockactError,
        SpawnError,
        StateError,
        SuccessorError,
        UpgradeError,
        UsageError,
    )
    from ._journal import JournalFormatter
    from ._listeners import Listeners, get_listeners
    from ._notify import (
        barrier,
        errno,
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
    from ._spawn import Child
    from ._upgrade import Upgrader
    from ._watchdog import AsyncWatchdog, Watchdog, watchdog_interval

#: Where each public name lives. ``import sockact`` imports none of these modules: a name is
#: imported on first use (PEP 562), so a process that only needs ``sockact.ready()`` never pays
#: for the upgrader, and start-up stays fast.
_HOMES = {
    "_address": ("Address", "parse_address"),
    "_errors": (
        "ActivationError",
        "AddressError",
        "NotifyError",
        "SockactError",
        "SpawnError",
        "StateError",
        "SuccessorError",
        "UpgradeError",
        "UsageError",
    ),
    "_journal": ("JournalFormatter",),
    "_listeners": ("Listeners", "get_listeners"),
    "_notify": (
        "barrier",
        "errno",
        "extend_timeout",
        "fdstore",
        "fdstore_remove",
        "mainpid",
        "notify",
        "ready",
        "reloading",
        "status",
        "stopping",
        "watchdog_ping",
        "watchdog_trigger",
    ),
    "_receiver": ("Message", "NotifyReceiver"),
    "_reload": ("ReloadHandler",),
    "_spawn": ("Child",),
    "_upgrade": ("Upgrader",),
    "_watchdog": ("AsyncWatchdog", "Watchdog", "watchdog_interval"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


if not TYPE_CHECKING:  # type checkers see only the imports above: a misspelt name is their error

    def __getattr__(name: str) -> object:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module 'sockact' has no attribute {name!r}")
        value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "Address",
    "ActivationError",
    "AddressError",
    "AsyncWatchdog",
    "Child",
    "JournalFormatter",
    "Listeners",
    "Message",
    "NotifyError",
    "NotifyReceiver",
    "ReloadHandler",
    "SockactError",
    "SpawnError",
    "StateError",
    "SuccessorError",
    "UpgradeError",
    "UsageError",
    "Upgrader",
    "barrier",
    "errno",
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
