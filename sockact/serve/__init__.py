"""Serving on sockact's listeners with true draining: stop accepting, finish in-flight requests,
close idle keep-alive connections, and give up after a drain timeout ("the hammer").

* :class:`HTTPServer` + :class:`HTTPRequestHandler` — stdlib ``http.server``, a thread per connection,
  reused from one connection to the next.
* :class:`ConnectionSet` — the same bookkeeping for asyncio protocols (imports no asyncio until used).

Nothing here is imported by ``import sockact``, and ``http.server`` (with ``http.client`` and ``ssl``,
~25 ms of a successor's start) only when :class:`HTTPServer` or :class:`HTTPRequestHandler` is first
used (PEP 562): the asyncio servers' integrations import this package for :func:`stop_accepting`.
"""

from ._aio import Acceptor, ConnectionSet, stop_accepting

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see sockact/__init__.py
if TYPE_CHECKING:
    from ._stdlib import HTTPRequestHandler, HTTPServer

__all__ = ["Acceptor", "ConnectionSet", "HTTPRequestHandler", "HTTPServer", "stop_accepting"]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in ("HTTPRequestHandler", "HTTPServer"):
            raise AttributeError(f"module 'sockact.serve' has no attribute {name!r}")
        from . import _stdlib

        value = getattr(_stdlib, name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
