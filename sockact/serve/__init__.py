"""Serving on sockact's listeners with true draining: stop accepting, finish in-flight requests,
close idle keep-alive connections, and give up after a drain timeout ("the hammer").

* :class:`HTTPServer` + :class:`HTTPRequestHandler` — stdlib ``http.server``, one thread per connection.
* :class:`ConnectionSet` — the same bookkeeping for asyncio protocols (imports no asyncio until used).

Nothing here is imported by ``import sockact``.
"""

from ._aio import Acceptor, ConnectionSet, stop_accepting
from ._stdlib import HTTPRequestHandler, HTTPServer

__all__ = ["Acceptor", "ConnectionSet", "HTTPRequestHandler", "HTTPServer", "stop_accepting"]
