"""The public surface is exactly what __all__ says, and importing sockact stays light."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import types

import pytest

import sockact

from helpers import child_env, python_prints

PUBLIC = {
    "Address",
    "ActivationError",
    "AddressError",
    "Listeners",
    "NotifyError",
    "SockactError",
    "SpawnError",
    "StateError",
    "SuccessorError",
    "UpgradeError",
    "UsageError",
    "barrier",
    "extend_timeout",
    "fdstore",
    "fdstore_remove",
    "get_listeners",
    "mainpid",
    "notify",
    "parse_address",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_ping",
    "watchdog_trigger",
    "NotifyReceiver",
    "Message",
    "Watchdog",
    "AsyncWatchdog",
    "watchdog_interval",
    "errno",
    "Child",
    "JournalFormatter",
    "ReloadHandler",
    "Upgrader",
}


def test_all_is_the_public_surface() -> None:
    assert set(sockact.__all__) == PUBLIC
    public_attrs = {
        name
        for name in dir(sockact)
        if not name.startswith("_") and not isinstance(getattr(sockact, name), types.ModuleType)
    } - {"annotations", "TYPE_CHECKING"}
    assert public_attrs == PUBLIC
    for name in sockact.__all__:
        assert getattr(sockact, name).__doc__, f"{name} has no docstring"


def test_errors_share_one_root() -> None:
    for err in (sockact.ActivationError, sockact.AddressError, sockact.NotifyError, sockact.UpgradeError):
        assert issubclass(err, sockact.SockactError)


@pytest.mark.parametrize(
    ("call", "base", "rule"),
    [
        (lambda: sockact.notify("lowercase=1"), ValueError, r"sd_notify\(3\)"),
        (lambda: sockact.notify({"STATUS": "a\nb"}), ValueError, "newline"),
        (lambda: sockact.extend_timeout(-1), ValueError, "positive number of seconds"),
        (lambda: sockact.extend_timeout(float("nan")), ValueError, "positive number of seconds"),
        (lambda: sockact.mainpid(0), ValueError, "positive pid"),
        (lambda: sockact.fdstore_remove("a:b"), ValueError, r"FileDescriptorName=.*systemd.socket\(5\)"),
        (lambda: sockact.get_listeners({"café": "127.0.0.1:0"}, environ={}), ValueError, r"systemd.socket\(5\)"),
        (lambda: sockact.get_listeners({"": "127.0.0.1:0"}, environ={}), ValueError, "1-255"),
        (lambda: sockact.get_listeners({"x" * 256: "127.0.0.1:0"}, environ={}), ValueError, "1-255"),
        (lambda: sockact.Upgrader(sockact.Listeners({}), ready_timeout=-1), ValueError, "ready_timeout"),
        (lambda: sockact.Upgrader(sockact.Listeners({})).reload(), RuntimeError, "context manager"),
        (lambda: sockact.Upgrader(sockact.Listeners({})).wait(0), RuntimeError, "context manager"),
    ],
)
def test_a_callers_mistake_is_never_an_oserror(call: object, base: type, rule: str) -> None:
    """Misuse raises at once, names the rule, and is a ValueError/RuntimeError that ``except OSError``
    around I/O cannot swallow (nothing was sent: NOTIFY_SOCKET may be unset or set)."""
    with pytest.raises(sockact.SockactError, match=rule) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, base) and not isinstance(info.value, OSError)


def test_import_pulls_no_asyncio_or_server() -> None:
    code = (
        "import sys, sockact, sockact.daemon, sockact.serve, sockact.integrations\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'systemd', 'uvicorn', 'aiohttp', 'tornado', 'waitress', 'gunicorn', 'hypercorn', 'ctypes'}))"
    )
    assert python_prints(code) == "[]"


def test_import_is_lazy() -> None:
    """``import sockact`` imports none of its own modules (each public name on first use), nor typing."""
    code = "import sys, sockact; print(sorted(m for m in sys.modules if m.startswith('sockact.') or m == 'typing'))"
    assert python_prints(code) == "[]"
    code = "import sockact; print(sockact.Upgrader.__module__, sockact.ready.__module__, 'nope' in dir(sockact))"
    assert python_prints(code).split() == ["sockact._upgrade", "sockact._notify", "False"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sockact.nope  # noqa: B018


def test_a_successors_path_imports_no_typing() -> None:
    """What a successor imports on its way to READY=1 — the listeners, the upgrader, the reload
    handler, the watchdog, the draining servers — leaves ``typing`` out (~3 ms of CPU in the
    reload window of a busy server): type-only names live under ``TYPE_CHECKING = False``."""
    imports = "sockact, sockact._upgrade, sockact._listeners, sockact._reload, sockact._watchdog, sockact.serve"
    assert python_prints(f"import sys, {imports}; sockact.serve.HTTPServer; print('typing' in sys.modules)") == "False"


def test_the_asyncio_servers_do_not_import_the_stdlib_server() -> None:
    """The integrations need ``sockact.serve.stop_accepting``; ``http.server`` (with ``http.client`` and
    ``ssl``) comes only with ``HTTPServer``: ~25 ms of every uvicorn/aiohttp/hypercorn successor's start."""
    code = (
        "import sys, sockact.serve, sockact._upgrade\n"
        "print('http.server' in sys.modules)\n"
        "from sockact.serve import HTTPServer, HTTPRequestHandler\n"
        "print('http.server' in sys.modules, HTTPServer.__module__, HTTPRequestHandler.__module__)"
    )
    assert python_prints(code).split() == ["False", "True", "sockact.serve._stdlib", "sockact.serve._stdlib"]
    import sockact.serve

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sockact.serve.nope  # type: ignore[attr-defined]  # noqa: B018


def test_type_checkers_see_the_public_names_and_only_them(tmp_path: pathlib.Path) -> None:
    """The lazy ``__getattr__`` is hidden from type checkers: a misspelt name fails ``mypy --strict``
    (as it fails at run time), while every documented name, ``errno`` and ``Child`` included, checks."""
    pytest.importorskip("mypy", reason="mypy is a lint tool, installed by `make test`, not in the version venvs")
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """\
            import sockact
            from sockact import redy

            def after_handover(child: sockact.Child) -> None:
                sockact.errno(child.pid)
                sockact.status(f"handed over to {child.pid}")
            """
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            "probe.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        'probe.py:2: error: Module "sockact" has no attribute "redy"; maybe "ready"?  [attr-defined]'
    ]
