"""The one start line every sockact server logs: its version, its pid, each socket and where it came from.

``sockact run`` logs it once its first child is ready (naming the child); every integration
(uvicorn, hypercorn, aiohttp, tornado, waitress) logs it once the server accepts, in place of the
"running on" line a server prints only for sockets it binds itself. Pure: the callers read the
sockets (:meth:`sockact.Listeners.origins`) and the pids.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["describe_sockets", "start_line"]

#: (name, address, inherited): what :meth:`sockact.Listeners.origins` returns for each socket.
Origin = tuple[str, str, bool]


def describe_sockets(sockets: Sequence[Origin]) -> str:
    """``http=127.0.0.1:8000 (inherited), admin=/run/app.sock (bound)``; ``no sockets`` for none.

    *inherited*: handed over through LISTEN_FDS (by systemd or a predecessor); *bound*: bound by
    this process because nothing was handed over for that name.
    """
    if not sockets:
        return "no sockets"
    return ", ".join(f"{name}={addr} ({'inherited' if inherited else 'bound'})" for name, addr, inherited in sockets)


def start_line(
    version: str,
    pid: int,
    sockets: Sequence[Origin],
    *,
    server: str | None = None,
    child: int | None = None,
    ready_in: float | None = None,
) -> str:
    """The start line, the same shape everywhere::

        sockact 0.1.0 pid 812 serving http=127.0.0.1:8000 (inherited) with uvicorn 0.30.6
        sockact 0.1.0 pid 700 serving http=127.0.0.1:8000 (bound) with child pid 701 ready in 0.21 s

    ``server`` names the server (and its version) serving in this process; ``child`` the child
    ``sockact run`` started, ``ready_in`` how long after its start it was ready (seconds).
    """
    line = f"sockact {version} pid {pid} serving {describe_sockets(sockets)}"
    if server:
        line += f" with {server}"
    if child is not None:
        line += f" with child pid {child}"
        if ready_in is not None:
            line += f" ready in {ready_in:.2f} s"
    return line
