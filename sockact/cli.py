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

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockact`` console script; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["reload"]:
        from ._ask import quick

        status = quick(words[1:], os.environ)
        if status is not None:
            return status
    from ._cli import main as full

    return full(words)


if __name__ == "__main__":
    sys.exit(main())
