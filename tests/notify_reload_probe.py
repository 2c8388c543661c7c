"""A stdlib-only Type=notify-reload service for probing systemd itself (not sockact): READY=1 at start;
on SIGHUP, RELOADING=1 (with MONOTONIC_USEC= unless --bare) and then READY=1; exits on SIGTERM.

systemd ≥ 253 (systemd.service(5), Type=notify-reload; sd_notify(3), RELOADING=1) sends the
ReloadSignal= itself and completes the reload on RELOADING=1 … READY=1; this probe measures what it
does when MONOTONIC_USEC is missing. The datagrams go to $NOTIFY_SOCKET, as sd_notify(3) sends them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time


def notify(text: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(text.encode(), "\0" + address[1:] if address.startswith("@") else address)


def main() -> None:
    bare = "--bare" in sys.argv[1:]
    hups = []
    signal.signal(signal.SIGHUP, lambda *_: hups.append(1))  # recorded; the loop acts
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    notify("READY=1\nSTATUS=probe serving")
    for _ in range(36000):  # bounded: one hour at most
        if hups:
            hups.clear()
            stamp = "" if bare else f"\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
            notify("RELOADING=1" + stamp)
            notify("READY=1\nSTATUS=probe reloaded")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
