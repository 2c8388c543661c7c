"""An aiohttp web app on sockact's listeners, with in-place reload.

    python examples/aiohttp_app.py [--listen ADDR] [--drain-timeout S] [--certfile PEM --keyfile PEM]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.
"""

from __future__ import annotations

import asyncio
import sys

from _common import parse_args, pid_body, run_main, sleep_seconds
from aiohttp import web

from sockact.integrations import aiohttp as sockact_aiohttp


async def index(request: web.Request) -> web.Response:
    return web.Response(body=pid_body(), content_type="text/plain")


async def sleep(request: web.Request) -> web.Response:
    try:
        seconds = sleep_seconds(request.query_string)
    except ValueError:
        return web.Response(status=400, text="seconds must be a number\n")
    await asyncio.sleep(seconds)
    return web.Response(body=pid_body(), content_type="text/plain")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/sleep", sleep)
    return app


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    return run_main(
        lambda: sockact_aiohttp.run(
            make_app(),
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            ssl_context=args.tls,
            access_log=None,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
