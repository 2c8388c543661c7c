"""``sockact serve SERVER APP``: each of the five servers run by the real command (``python -m sockact
serve``) answers, survives reloads under load with 0 failed requests and drains a request in flight
across SIGTERM; every user error is one line on stderr with exit status 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sockact._errors import UsageError
from sockact._serve_cli import SERVERS, check_options, parse_app, parse_listen, parse_option, parse_value

from conftest import need_module
from helpers import PY, ROOT, child_env, free_port
from reloads import assert_zero_downtime, become_subreaper, reloads_under_load, serving_pid

TESTS = os.path.join(ROOT, "tests")
RELOADS = 3
#: server → (APP, extra arguments): between them a plain app, a factory, an async factory and a lazily
#: made Application, with server options passed through --option.
CASES = {
    "uvicorn": ("serve_apps:asgi", ["--option", "access_log=false", "--option", "log-level=warning"]),
    "hypercorn": ("serve_apps:create_asgi", ["--factory", "--option", "keep_alive_timeout=5"]),
    "aiohttp": ("serve_apps:make_aiohttp_async", ["--factory", "--option", "access_log=none"]),
    "tornado": ("serve_apps:tornado_app", ["--option", "xheaders=true"]),
    "waitress": ("serve_apps:wsgi", ["--option", "threads=8"]),
}


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


def serve_argv(server: str, app: str, *args: str) -> list[str]:
    return [PY, "-m", "sockact", "serve", server, app, "--app-dir", TESTS, *args]


@pytest.mark.parametrize("server", list(CASES))
def test_serve_reloads_under_load_and_drains(server: str, tmp_path: object) -> None:
    """GET answered by the serving pid; 3 SIGHUP reloads under load, 0 failed, a request in flight across
    a reload and across the final SIGTERM both answered; each successor was this same command line."""
    need_module(server)
    port = free_port()
    app, extra = CASES[server]
    argv = serve_argv(server, app, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10", *extra)
    run = reloads_under_load(argv, port, child_env(), os.path.join(str(tmp_path), "log"), RELOADS)
    assert_zero_downtime(run, RELOADS)
    output = str(run["output"])
    assert output.count("upgraded; drained") == RELOADS, output[-3000:]
    assert output.count("stop; drained") == 1, output[-3000:]
    pids = run["pids"]
    assert isinstance(pids, list)
    for old, new in zip(pids, pids[1:]):  # the successors: re-executed from the same argv (sys.orig_argv)
        assert f"sockact[{old}]: upgraded: pid {old} → pid {new} in " in output, output[-3000:]


def serve_error(*args: str, python: list[str] | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``sockact serve ARGS``; assert exit 2 and no traceback; return stderr."""
    out = subprocess.run(
        [*(python or [PY]), "-m", "sockact", "serve", *args],
        env=env or child_env(),
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr.strip()


ERRORS = [
    (["flask", "serve_apps:asgi"], "unknown server 'flask': use one of uvicorn, hypercorn, aiohttp, tornado, waitress"),
    (["gunicorn", "serve_apps:wsgi"], "gunicorn runs under sockact run -- gunicorn"),
    (["uvicorn", "serve_apps"], "APP 'serve_apps': use module:attribute, e.g. main:app"),
    (["uvicorn", "serve apps:asgi"], "use module:attribute"),
    (["uvicorn", "no_such_module:app"], "no module named 'no_such_module' in " + TESTS),
    (["uvicorn", "serve_apps:asgii"], "'serve_apps' has no attribute 'asgii'; did you mean asgi"),
    (["uvicorn", "serve_apps:not_an_app"], "APP serve_apps:not_an_app is an int, not an ASGI app"),
    (["uvicorn", "serve_apps:not_an_app", "--factory"], "--factory: serve_apps:not_an_app is an int, not callable"),
    (["uvicorn", "serve_apps:needs_arguments", "--factory"], "cannot be called without arguments"),
    (["aiohttp", "serve_apps:make_aiohttp"], "is a function, not an aiohttp web.Application; add --factory"),
    (["tornado", "serve_apps:not_an_app"], "not a tornado web.Application"),
    (
        ["uvicorn", "serve_apps:asgi", "--option", "acess_log=false"],
        "uvicorn has no such option; did you mean access_log",
    ),
    (["hypercorn", "serve_apps:asgi", "--option", "no_such=1"], "--option no_such: hypercorn has no such option"),
    (["waitress", "serve_apps:wsgi", "--option", "port=80"], "--option port: sockact serve sets it; use --listen"),
    (["uvicorn", "serve_apps:asgi", "--option", "drain_timeout=1"], "sets it; use --drain-timeout"),
    (
        ["uvicorn", "serve_apps:asgi", "--option", "interface=asgi2"],
        "--option interface=asgi2: sockact serves uvicorn with interface auto or asgi3 only",
    ),
    (["uvicorn", "serve_apps:asgi", "--option", "workers"], "--option 'workers': use KEY=VALUE"),
    (["uvicorn", "serve_apps:asgi", "--workers", "4"], "goes through --option, e.g. --option workers=VALUE"),
    (["waitress", "serve_apps:wsgi", "--certfile", "c.pem", "--keyfile", "k.pem"], "waitress serves no TLS"),
    (["uvicorn", "serve_apps:asgi", "--certfile", "c.pem"], "--certfile and --keyfile go together"),
    (["uvicorn", "serve_apps:asgi", "--certfile", "nope.pem", "--keyfile", "nope.pem"], "--certfile nope.pem"),
    (["uvicorn", "serve_apps:asgi", "--app-dir", "/nonexistent"], "--app-dir /nonexistent: no such directory"),
    (["uvicorn", "serve_apps:asgi", "--listen", "a=1", "--listen", "a=2"], "--listen a given more than once"),
    (["uvicorn", "serve_apps:asgi", "--listen", "localhost:notaport"], "localhost:notaport"),
    (["uvicorn", "serve_apps:asgi", "--drain-timeout", "-1"], "give a finite number of seconds > 0"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_each_user_error_is_one_line_exit_2(args: list[str], message: str) -> None:
    if args[0] in SERVERS:
        need_module(args[0])
    assert message in serve_error(*args)


def test_a_server_not_installed_names_the_extra() -> None:
    """A real interpreter without the server on its path (``-S``: no site-packages): the pip line."""
    env = child_env({"PYTHONPATH": ROOT})
    for server in SERVERS:
        stderr = serve_error(server, "serve_apps:asgi", python=[PY, "-S"], env=env)
        assert f"{server} is not installed here" in stderr and f"pip install 'sockact[{server}]'" in stderr, stderr


def test_the_listen_address_taken_is_one_line(tmp_path: object) -> None:
    import socket

    need_module("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stderr = serve_error("uvicorn", "serve_apps:asgi", "--listen", f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in stderr, stderr


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("raise RuntimeError('boom at import')\n", "importing 'broken' failed: RuntimeError: boom at import"),
        ("import no_such_dependency_of_theirs\n", "No module named 'no_such_dependency_of_theirs'"),
        ("def oops(:\n", "importing 'broken' failed: SyntaxError"),
    ],
    ids=["raises", "missing-dependency", "syntax-error"],
)
def test_an_error_in_the_users_module_shows_their_traceback_then_one_line(
    tmp_path: object, source: str, said: str
) -> None:
    """Their module failing is theirs to fix: the traceback of their frames (none of sockact's or
    importlib's), then sockact's one line naming the module; exit 2."""
    need_module("uvicorn")
    with open(os.path.join(str(tmp_path), "broken.py"), "w") as f:
        f.write("import os\n" + source)
    out = subprocess.run(
        [PY, "-m", "sockact", "serve", "uvicorn", "broken:app", "--app-dir", str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("sockact: ") and said in lines[-1] and "(traceback above)" in lines[-1], out.stderr
    assert os.path.join(str(tmp_path), "broken.py") in out.stderr, out.stderr
    assert "_serve_cli.py" not in out.stderr and "importlib" not in out.stderr, out.stderr


def test_a_failing_factory_shows_its_traceback(tmp_path: object) -> None:
    need_module("uvicorn")
    with open(os.path.join(str(tmp_path), "fact.py"), "w") as f:
        f.write("def create():\n    return {}['missing']\n")
    out = subprocess.run(
        [PY, "-m", "sockact", "serve", "uvicorn", "fact:create", "--factory", "--app-dir", str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert "return {}['missing']" in out.stderr, out.stderr
    assert (
        out.stderr.strip().splitlines()[-1]
        == "sockact: --factory: fact:create() failed: KeyError: 'missing' (traceback above)"
    )


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("main:app", ("main", "app")), ("app.main:api.app", ("app.main", "api.app")), ("_m:_a", ("_m", "_a"))],
)
def test_parse_app(text: str, parsed: tuple[str, str]) -> None:
    assert parse_app(text) == parsed


@pytest.mark.parametrize("text", ["main", "main:", ":app", "1x:app", "a-b:app", "main:app:x", "main:app()", "a..b:c"])
def test_parse_app_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="use module:attribute"):
        parse_app(text)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8000", ("http", "127.0.0.1:8000")),
        ("8000", ("http", "8000")),
        ("api=[::1]:80", ("api", "[::1]:80")),
        ("[::1]:80", ("http", "[::1]:80")),
        ("/run/a=b.sock", ("http", "/run/a=b.sock")),
        ("web=/run/app.sock", ("web", "/run/app.sock")),
        ("@abstract=x", ("http", "@abstract=x")),
    ],
)
def test_parse_listen(text: str, parsed: tuple[str, str]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("False", False), ("none", None), ("8", 8), ("-3", -3), ("2.5", 2.5), ("warning", "warning")],
)
def test_parse_value(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_option_and_check() -> None:
    assert parse_option("keep-alive-timeout=5") == ("keep_alive_timeout", 5)
    assert parse_option("root_path=") == ("root_path", "")
    with pytest.raises(UsageError, match="did you mean threads"):
        check_options(SERVERS["waitress"], {"thread": 4}, {"threads", "backlog"})
    with pytest.raises(UsageError, match="sockact serve sets it; use --listen"):
        check_options(SERVERS["uvicorn"], {"host": "0.0.0.0"}, {"host"})
    check_options(SERVERS["uvicorn"], {"log_level": "info"}, {"log_level"})


@pytest.mark.parametrize("server", list(SERVERS))
def test_every_server_has_options_to_pass_and_owns_what_sockact_sets(server: str) -> None:
    """The option lists read from each installed server: the common ones are there, and every one
    sockact sets itself is refused with the flag to use."""
    need_module(server)
    known = SERVERS[server].options()
    common = {"uvicorn": "log_level", "hypercorn": "keep_alive_timeout", "aiohttp": "access_log"}
    common |= {"tornado": "xheaders", "waitress": "threads"}
    assert common[server] in known, sorted(known)
    for owned in SERVERS[server].owned:
        assert owned in known or owned in ("ssl_context",), owned  # aiohttp's ssl_context is run()'s own


def test_help_lists_the_servers_and_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "serve", "--help"], capture_output=True, text=True, env=child_env()
    )
    assert out.returncode == 0
    assert "uvicorn, hypercorn, aiohttp, tornado or waitress" in out.stdout
    assert "\nExamples:\n  sockact serve uvicorn app.main:app --listen 127.0.0.1:8000\n" in out.stdout


@pytest.mark.parametrize("server", ["uvicorn", "aiohttp"])
def test_a_stop_with_no_connection_open_does_not_wait_for_the_idle_grace(server: str) -> None:
    """With a 60 s idle grace, a server that answered a request (its connection closed since) and gets
    SIGTERM exits well within 30 s: with no connection open there is no next request to wait for."""
    need_module(server)
    port = free_port()
    app, extra = CASES[server]
    argv = serve_argv(
        server, app, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "120", "--idle-grace", "60", *extra
    )
    proc = subprocess.Popen(argv, env=child_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert serving_pid(port) == proc.pid  # one request, on a connection the client closed
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("still draining after 30 s with no connection open: it waited for the 60 s grace")
        assert proc.returncode == 0 and "stop; drained" in err, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
