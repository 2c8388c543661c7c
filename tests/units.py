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


def shipped_pairs() -> list[str]:
    """Base names (``sockact-http``) of every .socket/.service pair in units/."""
    names = sorted(f[: -len(".service")] for f in os.listdir(UNITS_DIR) if f.endswith(".service"))
    assert names and all(os.path.exists(os.path.join(UNITS_DIR, n + ".socket")) for n in names)
    return names


def localized(
    name: str, port: int | None = None, log: str | None = None, python: str = sys.executable
) -> dict[str, str]:
    """{filename: text} for one pair, pointing at this checkout, ``python`` (this one), and ``port``."""
    out = {}
    for suffix in (".socket", ".service"):
        with open(os.path.join(UNITS_DIR, name + suffix)) as f:
            text = f.read()
        text = text.replace("/opt/sockact", ROOT).replace("/usr/bin/python3", python)
        if port is not None:
            text = text.replace(f"127.0.0.1:{PORTS[name]}", f"127.0.0.1:{port}")
        if log is not None and suffix == ".service":
            text = text.replace("[Service]\n", f"[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n")
        out[name + suffix] = text
    return out


def supervised(name: str) -> bool:
    """Whether the pair runs its server under ``sockact run`` (MainPID stays sockact's)."""
    with open(os.path.join(UNITS_DIR, name + ".service")) as f:
        return "-m sockact run" in f.read()


def generated(name: str, port: int, mode: str, script: str, log: str, python: str, extra: str = "") -> dict[str, str]:
    """The pair `sockact units` writes for ``script`` (an http_server.py) on ``port``, in ``mode``, run by
    ``python`` with this checkout on PYTHONPATH, its output appended to ``log`` (``extra``: more lines)."""
    from sockact._units import render_units

    units = render_units(
        name,
        [("http", f"127.0.0.1:{port}")],
        [python, script, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10"],
        mode=mode,
        drain_timeout=10,
        environment={"PYTHONPATH": ROOT},
        sockact_command=[python, "-m", "sockact"],
    )
    units[f"{name}.service"] = units[f"{name}.service"].replace(
        "[Service]\n", f"[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n{extra}"
    )
    return units
