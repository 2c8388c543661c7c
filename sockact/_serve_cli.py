"""``sockact serve SERVER APP``: an app named ``module:attribute`` on one of the server integrations.

A thin command line over ``sockact.integrations.<server>.run()``: the same listeners, READY=1, in-place
reload and drain as a script calling ``run()`` itself — one spawn path, one hand-over machine. The
successor a reload starts is this very command line again (the upgrader re-executes
``sys.orig_argv``), so it imports the app's new code as a cold start would.

The parsing here is pure (``parse_app``, ``parse_listen``, ``parse_option``, ``check_options``);
``load_app`` imports the user's module with ``app_dir`` first on ``sys.path`` (as ``uvicorn
main:app`` does), and ``serve`` runs it. Every user error is a :class:`UsageError` whose message
names the option and the fix; the one exception that is the user's own — their module failing while
it is imported, or their factory failing — has its traceback (their frames only) written to stderr
before the one-line error, since that traceback is what they need to fix it.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import inspect
import logging
import os
import re
import ssl
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import UsageError

__all__ = [
    "SERVERS",
    "Server",
    "check_options",
    "load_app",
    "parse_app",
    "parse_listen",
    "parse_option",
    "parse_value",
    "serve",
    "server_named",
]

log = logging.getLogger("sockact.serve")

#: Options of every ``run()`` that sockact serve sets itself, with the flag that sets them.
_COMMON = {
    "listen": "--listen",
    "drain_timeout": "--drain-timeout",
    "ready_timeout": "--ready-timeout",
    "idle_grace": "--idle-grace",
    "pidfile": "--pidfile",
    "environ": "(sockact serve reads the process environment)",
}
_LISTEN_HINT = "--listen (sockact takes the sockets from systemd or binds them)"
_WORKERS_HINT = "one process per service (reload in place with SIGHUP or sockact reload)"


def _uvicorn_options() -> set[str]:
    import uvicorn

    return set(inspect.signature(uvicorn.Config.__init__).parameters) - {"self", "app"}


def _hypercorn_options() -> set[str]:
    from hypercorn.config import Config

    def settable(value: object) -> bool:
        return value.fset is not None if isinstance(value, property) else not callable(value)

    return {name for name in dir(Config) if not name.startswith("_") and settable(getattr(Config, name))}


def _aiohttp_options() -> set[str]:
    from aiohttp import web, web_protocol

    names = set(inspect.signature(web_protocol.RequestHandler.__init__).parameters)
    names |= set(inspect.signature(web.BaseRunner.__init__).parameters)
    names |= set(inspect.signature(web.Server.__init__).parameters)
    return names - {"self", "manager", "loop", "handler", "kwargs", "handle_signals", "request_factory"}


def _tornado_options() -> set[str]:
    from tornado.httpserver import HTTPServer

    return set(inspect.signature(HTTPServer.initialize).parameters) - {"self", "request_callback"}


def _waitress_options() -> set[str]:
    from waitress.adjustments import Adjustments

    return {name for name, _ in Adjustments._params}


def _context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


@dataclass(frozen=True)
class Server:
    """What sockact serve knows about one server: its package and extra, what an app for it is, its
    options (``run()``'s keyword arguments) and which of them sockact owns, and how it takes TLS."""

    name: str
    package: str
    kind: str
    options: Callable[[], set[str]]
    owned: Mapping[str, str] = field(default_factory=dict)
    tls: Callable[[str, str], dict[str, Any]] | None = None
    accepts: Callable[[object], bool] = callable
    #: options sockact passes on only with one of these values
    limited: Mapping[str, tuple[object, ...]] = field(default_factory=dict)

    def install_hint(self) -> str:
        return f"pip install 'sockact[{self.name}]'"


def _is_aiohttp_app(app: object) -> bool:
    from aiohttp import web

    return isinstance(app, web.Application)


def _is_tornado_app(app: object) -> bool:
    from tornado.httputil import HTTPServerConnectionDelegate

    return isinstance(app, HTTPServerConnectionDelegate) or callable(app)


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server(
            "uvicorn",
            "uvicorn",
            "an ASGI app",
            _uvicorn_options,
            owned={
                **dict.fromkeys(("host", "port", "uds", "fd"), _LISTEN_HINT),
                **dict.fromkeys(("reload", "reload_dirs", "reload_delay", "reload_includes"), _WORKERS_HINT),
                "reload_excludes": _WORKERS_HINT,
                "workers": _WORKERS_HINT,
                "timeout_graceful_shutdown": "--drain-timeout",
                "ssl_certfile": "--certfile",
                "ssl_keyfile": "--keyfile",
            },
            tls=lambda cert, key: {"ssl_certfile": cert, "ssl_keyfile": key},
            limited={"interface": ("auto", "asgi3")},  # its drain wrapper hands back an ASGI 3 coroutine
        ),
        Server(
            "hypercorn",
            "hypercorn",
            "an ASGI or WSGI app",
            _hypercorn_options,
            owned={
                **dict.fromkeys(("bind", "insecure_bind", "quic_bind"), _LISTEN_HINT),
                "workers": _WORKERS_HINT,
                "use_reloader": _WORKERS_HINT,
                "graceful_timeout": "--drain-timeout",
                "certfile": "--certfile",
                "keyfile": "--keyfile",
            },
            tls=lambda cert, key: {"certfile": cert, "keyfile": key},
        ),
        Server(
            "aiohttp",
            "aiohttp",
            "an aiohttp web.Application",
            _aiohttp_options,
            owned={"shutdown_timeout": "--drain-timeout", "ssl_context": "--certfile/--keyfile"},
            tls=lambda cert, key: {"ssl_context": _context(cert, key)},
            accepts=_is_aiohttp_app,
        ),
        Server(
            "tornado",
            "tornado",
            "a tornado web.Application",
            _tornado_options,
            owned={"ssl_options": "--certfile/--keyfile"},
            tls=lambda cert, key: {"ssl_options": _context(cert, key)},
            accepts=_is_tornado_app,
        ),
        Server(
            "waitress",
            "waitress",
            "a WSGI app",
            _waitress_options,
            owned={
                **dict.fromkeys(("host", "port", "listen", "unix_socket", "sockets"), _LISTEN_HINT),
                **dict.fromkeys(("ipv4", "ipv6", "unix_socket_perms"), _LISTEN_HINT),
            },
        ),
    )
}


def server_named(text: str) -> Server:
    """The :class:`Server` called ``text``; UsageError listing the five otherwise."""
    server = SERVERS.get(text.strip().lower())
    if server is None:
        names = ", ".join(SERVERS)
        extra = "; gunicorn runs under sockact run -- gunicorn …" if text.strip().lower() == "gunicorn" else ""
        raise UsageError(f"unknown server {text!r}: use one of {names}{extra}")
    return server


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def parse_app(text: str) -> tuple[str, str]:
    """``"app.main:app"`` → ``("app.main", "app")`` (the attribute may be dotted: ``main:api.app``). Pure."""
    module, colon, attr = text.partition(":")
    if not colon or not _DOTTED.match(module) or not _DOTTED.match(attr):
        raise UsageError(f"APP {text!r}: use module:attribute, e.g. main:app or app.main:app")
    return module, attr


def parse_listen(text: str, default_name: str = "http") -> tuple[str, str]:
    """``"[NAME=]ADDRESS"`` → ``(name, address)``; without a name, ``default_name``. Pure.

    A FileDescriptorName= has no ``:`` and no ``/`` and does not start with ``@``, so
    ``/run/a=b.sock`` and ``[::1]:80`` stay whole addresses.
    """
    name, eq, address = text.partition("=")
    if not eq or ":" in name or "/" in name or name.startswith("@"):
        name, address = default_name, text
    if not name or not address:
        raise UsageError(f"--listen {text!r}: use [NAME=]ADDRESS, e.g. 127.0.0.1:8000 or http=/run/app.sock")
    return name, address


def parse_value(text: str) -> object:
    """An option's value: ``true``/``false``, ``none``, an int, a float, else the text itself. Pure."""
    lowered = text.strip().lower()
    words: dict[str, object] = {"true": True, "false": False, "none": None, "null": None}
    if lowered in words:
        return words[lowered]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_option(text: str) -> tuple[str, object]:
    """``"keep-alive-timeout=5"`` → ``("keep_alive_timeout", 5)`` (``-`` in the key becomes ``_``). Pure."""
    key, eq, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not eq or not key.isidentifier():
        raise UsageError(f"--option {text!r}: use KEY=VALUE, e.g. --option limit_concurrency=100")
    return key, parse_value(value)


def check_options(server: Server, options: Mapping[str, object], known: set[str]) -> None:
    """UsageError for an option sockact sets itself (naming the flag to use) or that ``server`` lacks
    (with the nearest names it has). ``known``: the server's options (``server.options()``). Pure."""
    for key in options:
        if key in _COMMON or key in server.owned:
            raise UsageError(f"--option {key}: sockact serve sets it; use {_COMMON.get(key) or server.owned[key]}")
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; see {server.name}'s documentation"
            raise UsageError(f"--option {key}: {server.name} has no such option{hint}")
        if key in server.limited and options[key] not in server.limited[key]:
            allowed = " or ".join(map(str, server.limited[key]))
            raise UsageError(f"--option {key}={options[key]}: sockact serves {server.name} with {key} {allowed} only")


def require_server(server: Server) -> None:
    """Import the server's package; UsageError with the pip line when it is not installed."""
    try:
        importlib.import_module(server.package)
    except ModuleNotFoundError as exc:
        if exc.name != server.package and not (exc.name or "").startswith(server.package + "."):
            raise
        raise UsageError(f"{server.name} is not installed here ({sys.executable}): {server.install_hint()}") from exc


class _UserCodeError(UsageError):
    """The user's module or factory raised: ``details`` is their traceback (their frames only)."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def _theirs(exc: BaseException) -> str:
    """``exc``'s traceback without this module's and importlib's frames: what the user can act on."""
    here = os.path.abspath(__file__)
    shown = traceback.TracebackException.from_exception(exc)
    frames = [f for f in shown.stack if os.path.abspath(f.filename) != here and "importlib" not in f.filename]
    shown.stack = traceback.StackSummary.from_list(frames)
    return "".join(shown.format())


def _missing_module(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says ``module`` itself (or a package on its path) is missing — not something it imports."""
    parts = module.split(".")
    return exc.name in {".".join(parts[: i + 1]) for i in range(len(parts))}


def load_app(text: str, app_dir: str, *, factory: bool = False) -> object:
    """Import ``module:attr`` with ``app_dir`` first on sys.path; with ``factory``, call the attribute
    (no arguments) and return what it returns.

    Raises:
        UsageError: bad syntax, the module or attribute missing, a factory that is not callable or
            needs arguments; the user's module or factory raised (then with their traceback).
    """
    module_name, attr = parse_app(text)
    directory = os.path.abspath(app_dir)
    if not os.path.isdir(directory):
        raise UsageError(f"--app-dir {app_dir}: no such directory")
    if directory not in sys.path[:1]:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _missing_module(exc, module_name):
            raise _UserCodeError(f"importing {module_name!r} failed: {exc} (traceback above)", _theirs(exc)) from exc
        raise UsageError(
            f"APP {text}: no module named {exc.name!r} in {directory}; run from the project's directory or "
            "give --app-dir DIR"
        ) from exc
    except Exception as exc:  # the user's code raised while imported: their traceback is theirs to read
        kind = type(exc).__name__
        raise _UserCodeError(
            f"importing {module_name!r} failed: {kind}: {exc} (traceback above)", _theirs(exc)
        ) from exc
    obj: object = module
    for index, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join([module_name, *attr.split(".")[:index]])
            near = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UsageError(f"APP {text}: {where!r} has no attribute {part!r}{hint}") from None
    if not factory:
        return obj
    if not callable(obj):
        raise UsageError(f"--factory: {text} is {_a(obj)}, not callable; drop --factory if it is the app itself")
    try:
        inspect.signature(obj).bind()
    except TypeError as exc:
        raise UsageError(f"--factory: {text} cannot be called without arguments ({exc})") from None
    except ValueError:
        pass  # no signature to check (a builtin): just call it
    try:
        return obj()
    except Exception as exc:
        kind = type(exc).__name__
        raise _UserCodeError(f"--factory: {text}() failed: {kind}: {exc} (traceback above)", _theirs(exc)) from exc


def _a(obj: object) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _check_app(server: Server, text: str, app: object, factory: bool) -> None:
    """UsageError unless ``app`` is what ``server`` serves (an awaitable: an async factory's result)."""
    if inspect.isawaitable(app) and server.name != "waitress":
        return
    if server.accepts(app):
        return
    hint = "; add --factory if it returns the app" if callable(app) and not factory else ""
    what = f"{text}()" if factory else text
    raise UsageError(f"APP {what} is {_a(app)}, not {server.kind}{hint}")


def _check_tls(server: Server, certfile: str | None, keyfile: str | None) -> dict[str, Any]:
    """The ``run()`` keywords for TLS, once the pair loads; UsageError naming the problem."""
    if not certfile and not keyfile:
        return {}
    if not (certfile and keyfile):
        raise UsageError("--certfile and --keyfile go together")
    if server.tls is None:
        raise UsageError(f"--certfile: {server.name} serves no TLS; put it behind a proxy that does")
    try:
        _context(certfile, keyfile)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise UsageError(f"--certfile {certfile} --keyfile {keyfile}: {exc}") from exc
    return server.tls(certfile, keyfile)


async def _awaited_then_served(serve: Callable[..., Any], app: Any, listen: Any, options: dict[str, Any]) -> str:
    """An async factory's app, awaited in the loop that serves it (aiohttp.web does the same)."""
    outcome: str = await serve(await app, listen, **options)
    return outcome


def serve(
    server_name: str,
    app_text: str,
    listens: Sequence[tuple[str, str]],
    *,
    factory: bool = False,
    app_dir: str = ".",
    drain_timeout: float = 30.0,
    ready_timeout: float = 60.0,
    idle_grace: float | None = None,
    pidfile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> int:
    """Check everything, load the app, run it; 0 after a hand-over or a stop (both drained), 1 when the
    server stopped by itself.

    Raises:
        UsageError: a bad argument, the server not installed, the app not loadable (see load_app).
        SockactError: the listeners could not be taken or bound (from ``run()``).
    """
    server = server_named(server_name)
    given = dict(options)
    if len(given) != len(options):
        twice = sorted({k for k, _ in options if [o for o, _ in options].count(k) > 1})
        raise UsageError(f"--option {', '.join(twice)} given more than once")
    require_server(server)
    check_options(server, given, server.options())
    tls = _check_tls(server, certfile, keyfile)
    try:
        app = load_app(app_text, app_dir, factory=factory)
    except _UserCodeError as exc:
        sys.stderr.write(exc.details)
        raise
    _check_app(server, app_text, app, factory)
    integration = importlib.import_module(f".integrations.{server.name}", __package__)
    keywords: dict[str, Any] = {"drain_timeout": drain_timeout, "ready_timeout": ready_timeout, "pidfile": pidfile}
    if idle_grace is not None:
        keywords["idle_grace"] = idle_grace
    keywords |= tls | given
    listen = dict(listens) if listens else "127.0.0.1:8000"
    if inspect.isawaitable(app):
        outcome = asyncio.run(_awaited_then_served(integration.serve, app, listen, keywords))
    else:
        outcome = integration.run(app, listen, **keywords)
    if outcome == "failed":
        log.error("%s stopped by itself (its log above says why)", server.name)
        return 1
    log.info("%s; drained", outcome)
    return 0
