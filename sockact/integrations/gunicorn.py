"""gunicorn under ``sockact run``: sockact keeps the sockets and MainPID, gunicorn is a plain child.

    sockact run --listen http=127.0.0.1:8000 --drain-timeout 35 -- \\
        python -m gunicorn --graceful-timeout 30 --worker-class gthread myapp:app

(:func:`command` builds that line.) Each gunicorn is started exactly as systemd starts a service:
the sockets on fds 3.., LISTEN_FDS/LISTEN_PID for its own pid, NOTIFY_SOCKET pointing at sockact.
gunicorn's own systemd support takes them (``--bind`` is ignored then, whatever the socket's family)
and sends READY=1 once its arbiter listens. On ``systemctl reload`` (SIGHUP to sockact) a new
gunicorn starts; once it is ready, the old one gets SIGTERM — gunicorn's graceful stop: its workers
finish their requests within ``--graceful-timeout`` — and SIGKILL after sockact's
``--drain-timeout``, which should therefore be the longer of the two. Between the new arbiter's
READY=1 and its first worker's accept() connections wait in the kernel backlog: none is refused.

Why not gunicorn's own USR2 under systemd: the new master is a child of the old one and gunicorn
never sends MAINPID=, so systemd keeps supervising the old master. Completing the upgrade (QUIT to
the old master) makes the unit's main process exit, and systemd then considers the service stopped
and kills the new master with the rest of the cgroup (older gunicorn releases also lost the
activated sockets on re-exec). Under ``sockact run`` the main process never changes.

gunicorn ≥ 25.1 also opens a control socket (``--control-socket``, default ``~/.gunicorn/gunicorn.ctl``),
which the old and the new gunicorn would share during a reload: give each service its own path.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from ._service import listen_spec

__all__ = ["command"]


def command(
    app: str,
    gunicorn_args: Sequence[str] = (),
    *,
    listen: str | Mapping[str, str] | None = None,
    drain_timeout: float = 30.0,
    python: str = sys.executable,
) -> list[str]:
    """The ``sockact run … -- gunicorn …`` command line for ``app`` (``module:callable``).

    ``listen``: addresses to bind when not socket-activated (default: everything inherited);
    gunicorn's ``--graceful-timeout`` is set a little below sockact's ``drain_timeout`` unless given.
    """
    argv = [python, "-m", "sockact", "run", "--drain-timeout", f"{drain_timeout:g}"]
    for name, address in (listen_spec(listen) if listen is not None else {}).items():
        argv += ["--listen", f"{name}={address}"]
    extra = list(gunicorn_args)
    if not any(arg.split("=")[0] == "--graceful-timeout" for arg in extra):
        extra = ["--graceful-timeout", f"{max(drain_timeout - 2, 1):g}", *extra]
    return [*argv, "--", python, "-m", "gunicorn", *extra, app]
