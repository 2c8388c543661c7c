"""A tornado web app on sockact's listeners, with in-place reload.

    python examples/tornado_app.py [--listen ADDR] [--drain-timeout S] [--certfile PEM --keyfile PEM]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import tornado.web
from _common import parse_args, pid_body, run_main, sleep_seconds

from sockact.integrations import tornado as sockact_tornado


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write(pid_body())


class Sleep(tornado.web.RequestHandler):
    async def get(self) -> None:
        try:
            seconds = sleep_seconds(self.request.query)
        except ValueError:
            raise tornado.web.HTTPError(400, "seconds must be a number") from None
        await asyncio.sleep(seconds)
        self.set_header("Content-Type", "text/plain")
        self.write(pid_body())


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", Index), (r"/sleep", Sleep)], log_function=lambda handler: None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    options: dict[str, Any] = {"ssl_options": args.tls} if args.tls else {}
    return run_main(
        lambda: sockact_tornado.run(
            make_app(),
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            **options,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
