"""The unit pairs shipped in units/, with their paths and ports rewritten for this machine."""

from __future__ import annotations

import os
import sys

from helpers import ROOT

UNITS_DIR = os.path.join(ROOT, "units")
PORTS = {"sockact-http": 8000, "sockact-asyncio": 8001, "sockact-uvicorn": 8002, "sockact-hypercorn": 8003}
PORTS |= {"sockact-aiohttp": 8004, "sockact-tornado": 8005, "sockact-waitress": 8006, "sockact-gunicorn": 8007}
#: The pairs whose server needs only the stdlib and sockact (the others run on the 252 box only).
STDLIB_ONLY = ("sockact-http", "sockact-asyncio")

#: Where a hardened test service sees this checkout and its app: bound read-only into its private /tmp
#: (the service's user cannot reach a pytest directory, nor /root where the venv's interpreter lives).
VIEW = "/tmp/sockact-view"
#: The interpreter hardened test services run: the box's own, reachable by any user.
SYSTEM_PYTHON = "/usr/bin/python3"


def checkout_binds(view: str) -> str:
    """A ``BindReadOnlyPaths=`` value showing this checkout's ``sockact/`` and ``examples/`` (all a
    hardened test service reads of it) at ``view``. The two directories are bound, not the checkout
    itself: a clone made in a 0700 ``mktemp -d`` would keep its 0700 at the mount point, out of the
    dynamic user's reach; the directories inside a clone are 0755."""
    return f"{ROOT}/sockact:{view}/sockact {ROOT}/examples:{view}/examples"


def shipped_pairs() -> list[str]:
    """Base names (``sockact-http``) of every .socket/.service pair in units/."""
    names = sorted(f[: -len(".service")] for f in os.listdir(UNITS_DIR) if f.endswith(".service"))
    assert names and all(os.path.exists(os.path.join(UNITS_DIR, n + ".socket")) for n in names)
    return names


def localized(
    name: str, port: int | None = None, log: str | None = None, python: str = sys.executable
) -> dict[str, str]:
    """{filename: text} for one pair, pointing at this checkout and ``port``.

    A pair whose server needs only the stdlib runs as shipped: a dynamic user, the box's /usr/bin/python3,
    this checkout bound read-only into its view (:data:`VIEW`). The others need ``python`` (this venv's,
    which lives under /root, out of a dynamic user's reach): they run as root with ProtectHome=no and the
    rest of the sandbox kept."""
    stdlib = name in STDLIB_ONLY
    checkout = f"{VIEW}/checkout" if stdlib else ROOT
    out = {}
    for suffix in (".socket", ".service"):
        with open(os.path.join(UNITS_DIR, name + suffix)) as f:
            text = f.read()
        text = text.replace("/opt/sockact", checkout).replace("/usr/bin/python3", SYSTEM_PYTHON if stdlib else python)
        if port is not None:
            text = text.replace(f"127.0.0.1:{PORTS[name]}", f"127.0.0.1:{port}")
        if suffix == ".service":
            if stdlib:  # the unit names the checkout by its view's path
                text = text.replace("[Service]\n", f"[Service]\nBindReadOnlyPaths={checkout_binds(checkout)}\n")
            else:
                text = as_root_with_this_venv(text)
            if log is not None:
                logs = f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
                text = text.replace("[Service]\n", f"[Service]\n{logs}")
        out[name + suffix] = text
    return out


def as_root_with_this_venv(service: str) -> str:
    """A hardened .service made runnable with this checkout's venv: that interpreter lives under /root,
    out of a dynamic user's reach, so it runs as root with ProtectHome=no and the rest of the sandbox
    kept; the checkout is bound read-only onto itself, since a checkout under /tmp (a fresh clone) is
    hidden by PrivateTmp= otherwise."""
    service = service.replace("\nDynamicUser=yes\n", "\n").replace("ProtectHome=yes", "ProtectHome=no")
    return service.replace("[Service]\n", f"[Service]\nBindReadOnlyPaths={ROOT}\n")


def supervised(name: str) -> bool:
    """Whether the pair runs its server under ``sockact run`` (MainPID stays sockact's)."""
    with open(os.path.join(UNITS_DIR, name + ".service")) as f:
        return "-m sockact run" in f.read()


def generated(name: str, port: int, mode: str, script: str, log: str, extra: str = "") -> dict[str, str]:
    """The hardened pair `sockact units` writes for ``script`` (an http_server.py) on ``port``, in
    ``mode``: a dynamic user, run by the box's /usr/bin/python3 with this checkout on PYTHONPATH, both
    bound read-only into the service's view (:data:`VIEW`); its output appended to ``log`` (opened by
    systemd before the sandbox applies); ``extra``: more [Service] lines."""
    from sockact._units import render_units

    app = os.path.dirname(script)
    seen = f"{VIEW}/app/{os.path.basename(script)}"
    units = render_units(
        name,
        [("http", f"127.0.0.1:{port}")],
        [SYSTEM_PYTHON, seen, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10"],
        mode=mode,
        drain_timeout=10,
        environment={"PYTHONPATH": f"{VIEW}/checkout"},
        sockact_command=[SYSTEM_PYTHON, "-m", "sockact"],
    )
    binds = f"BindReadOnlyPaths={checkout_binds(VIEW + '/checkout')} {app}:{VIEW}/app\n"
    units[f"{name}.service"] = units[f"{name}.service"].replace(
        "[Service]\n", f"[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n{binds}{extra}"
    )
    return units
