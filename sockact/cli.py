"""The ``sockact`` command (console script ``sockact``, ``python -m sockact``).

Every ``systemctl reload`` of a sockact unit runs ``sockact reload``, and its start-up is part of the
round trip: the forms ``sockact units`` writes are answered by ``_ask.quick`` without argparse, and
everything else (other commands, ``--help``, a mistake) by the full command line in ``_cli``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: see _ask
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockact`` console script; returns the exit status. Called with no ``argv``
    (as the program), a ``sockact reload`` answered by ``_ask.quick`` ends the process itself."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["reload"]:
        from ._ask import quick

        status = quick(words[1:], os.environ)
        if status is not None:
            if argv is None:  # the program itself: skip the interpreter's teardown, 1.2 ms of each reload
                _exit(status)
            return status
    from ._cli import main as full

    return full(words)


def _exit(status: int) -> NoReturn:
    """Flush what the answer printed and end the process now with ``status``: nothing of this path
    needs a finalizer. A stdout that cannot take the line (closed, a full disk) leaves the status as it is:
    the reload's outcome is the exit status, which ExecReload= reports."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the fd was closed when the interpreter started
                stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            pass
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
