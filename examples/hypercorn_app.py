"""An ASGI app served by hypercorn on sockact's listeners, with in-place reload.

    python examples/hypercorn_app.py [--listen ADDR] [--drain-timeout S] [--certfile PEM --keyfile PEM]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.
"""

from __future__ import annotations

import sys

from _common import asgi_app, parse_args, run_main

from sockact.integrations import hypercorn as sockact_hypercorn


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    tls = {"certfile": args.certfile, "keyfile": args.keyfile} if args.certfile else {}
    return run_main(
        lambda: sockact_hypercorn.run(
            asgi_app,
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            loglevel="WARNING",
            **tls,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
