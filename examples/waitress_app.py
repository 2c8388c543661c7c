"""A WSGI app served by waitress on sockact's listeners, with in-place reload.

    python examples/waitress_app.py [--listen ADDR] [--drain-timeout S]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.
waitress serves no TLS (``--certfile`` is refused). The same ``app`` runs under gunicorn:
``sockact run --listen http=127.0.0.1:8000 -- gunicorn --chdir examples waitress_app:app``.
"""

from __future__ import annotations

import sys

from _common import parse_args, run_main, wsgi_app

from sockact.integrations import waitress as sockact_waitress

app = wsgi_app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    if args.certfile:
        print("waitress_app.py: waitress serves no TLS; terminate TLS in a proxy", file=sys.stderr)
        return 2
    return run_main(
        lambda: sockact_waitress.run(
            app,
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            threads=8,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
