"""Entry point: ``python -m bench NAME [options]``; ``python -m bench --help`` lists them."""

from __future__ import annotations

import argparse
import sys

from bench import _util, boxes, faults, handover, keepalive, overhead, reload, soak, spawn, startup, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="name", required=True)
    suite.add_parser(sub)
    spawn.add_parser(sub)
    soak.add_parser(sub)
    faults.add_parser(sub)
    startup.add_parser(sub)
    reload.add_parser(sub)
    overhead.add_parser(sub)
    handover.add_parser(sub)
    keepalive.add_parser(sub)
    boxes.add_parser(sub)
    args = parser.parse_args(argv)
    _util.compile_checkout()  # servers start from .pyc files, as an installed sockact does
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
