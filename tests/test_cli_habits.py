"""The command line's habits: every subcommand's --help ends with examples, every option says what it
does, one word per mode, and a forgotten ``--`` before the program gets a hint instead of a bare
"unrecognized arguments"."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from sockact._ask import quick_args
from sockact._cli import _parse, _parser

from helpers import ROOT, child_env


def sockact(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sockact", *args], env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_every_subcommand_has_examples_and_every_option_help() -> None:
    parser, subparsers = _parser()
    assert set(subparsers) == {"inspect", "run", "units", "reload", "demo", "serve"}
    for name, sub in [("sockact", parser), *subparsers.items()]:
        epilog = sub.epilog or ""
        examples = epilog.splitlines()[1:]
        assert epilog.startswith("Examples:\n") and examples, name
        assert all(line.startswith("  ") and "sockact" in line for line in examples), (name, examples)
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings or action.dest)
    for name in subparsers:
        assert subparsers[name].description, name


def test_help_shows_the_examples_as_written() -> None:
    """Each example line comes out of --help whole (never re-wrapped), after the wrapped description."""
    _, subparsers = _parser()
    for name, sub in subparsers.items():
        out = sockact(name, "--help")
        assert out.returncode == 0, out.stderr
        tail = out.stdout.split("\nExamples:\n", 1)[1]
        assert tail.splitlines() == (sub.epilog or "").splitlines()[1:], (name, tail)
        assert max(len(line) for line in out.stdout.split("\nExamples:\n")[0].splitlines()) <= 100, name


def test_one_word_for_each_mode() -> None:
    """units and demo both say supervise; the demo's old word still parses (hidden) to the same mode."""
    assert _parse(["demo", "--mode", "supervise"]).mode == "supervise"
    assert _parse(["demo", "--mode", "supervisor"]).mode == "supervise"
    assert _parse(["units", "x", "--listen", "http=8080", "--mode", "supervise", "--", "true"]).mode == "supervise"
    for name in ("demo", "units"):
        out = sockact(name, "--help")
        assert "{inprocess,supervise}" in out.stdout and "supervisor}" not in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["run", "--listen", "http=127.0.0.1:8080", "python3", "app.py"], "sockact run [OPTIONS] -- COMMAND"),
        (["run", "gunicorn", "--workers", "2", "app:app"], "sockact run [OPTIONS] -- COMMAND"),
        (["units", "myapp", "--listen", "http=127.0.0.1:8080", "/usr/bin/python3", "app.py"], "-- COMMAND"),
    ],
)
def test_a_forgotten_double_dash_gets_a_hint(args: list[str], hint: str) -> None:
    out = sockact(*args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "unrecognized arguments" in lines[0] and "put the program after --: " in lines[0] and hint in lines[0]


def test_extra_words_elsewhere_get_no_dash_hint() -> None:
    out = sockact("inspect", "stray")
    assert out.returncode == 2 and "unrecognized arguments: stray" in out.stderr and "after --" not in out.stderr


def test_words_after_double_dash_where_no_program_goes_are_an_error() -> None:
    out = sockact("serve", "uvicorn", "main:app", "--", "--workers", "4")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "sockact serve: error: takes no COMMAND after --; unrecognized arguments: -- --workers 4" in out.stderr


def test_log_level_choices_are_the_journal_levels() -> None:
    from sockact._journal import LEVELS

    _, subparsers = _parser()
    for command in ("run", "serve"):
        action = next(a for a in subparsers[command]._actions if a.dest == "log_level" and a.choices)
        assert list(action.choices or []) == list(LEVELS), command


@contextlib.contextmanager
def one_answer(path: str, answer: bytes) -> Iterator[None]:
    """A reload channel at ``path`` that answers one request with ``answer``, in a thread joined on exit."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()

        def reply() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(100)
                conn.sendall(answer)

        replying = threading.Thread(target=reply)
        replying.start()
        try:
            yield
        finally:
            replying.join(10)


def test_sockact_reload_imports_only_what_it_needs(tmp_path: pathlib.Path) -> None:
    # every `systemctl reload` starts this command: on its way to "ok" no argparse, no socket module (its
    # enums), no logging, no typing; its failure path alone imports logging, for the journal's prefix
    path = str(tmp_path / "control")
    with one_answer(path, b"ok 4242\n"):
        code = (
            "import sys; from sockact.cli import main; "
            f"code = main(['reload', '--control={path}']); print(code, ' '.join(sorted(sys.modules)))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True, timeout=30
        )
    said, modules = done.stdout.splitlines()
    status, *loaded = modules.split()
    assert status == "0" and said == "sockact reload: pid 4242 serving", done.stdout
    heavy = {"argparse", "socket", "logging", "typing", "asyncio", "subprocess", "json", "sockact._cli"}
    assert "sockact._ask" in loaded and not set(loaded) & heavy, sorted(set(loaded) & heavy)

    code = (
        "import sys; from sockact.cli import main; "
        "code = main(['reload', '--control', '/nonexistent/control', '--timeout', '0.05']); "
        "print(code, ' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True, timeout=30
    )
    status, *loaded = done.stdout.split()
    heavy = {"asyncio", "subprocess", "typing", "json", "argparse", "sockact._supervisor", "sockact._listeners"}
    assert status == "1" and "nothing serves the reload channel" in done.stderr, done.stderr
    assert not set(loaded) & heavy, sorted(set(loaded) & heavy)


@pytest.mark.parametrize(
    ("answer", "status", "stream", "said"),
    [
        (b"ok 4242\n", 0, "stdout", "sockact reload: pid 4242 serving"),
        (
            b"failed the successor exited with status 3\n",
            1,
            "stderr",
            "sockact reload: the successor exited with status 3",
        ),
    ],
)
def test_the_program_ends_itself_with_the_answer_flushed(
    tmp_path: pathlib.Path, answer: bytes, status: int, stream: str, said: str
) -> None:
    # As a program (no argv), the fast path skips the interpreter's teardown with os._exit: the exit
    # status must still be the outcome, and the line must reach a pipe (block-buffered) whole.
    path = str(tmp_path / "control")
    with one_answer(path, answer):
        done = subprocess.run(
            [sys.executable, "-m", "sockact", "reload", f"--control={path}"],
            env={k: v for k, v in child_env().items() if k != "PYTHONUNBUFFERED"},  # buffered, as under systemd
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == status, (done.stdout, done.stderr)
    assert getattr(done, stream).strip().removeprefix("<3>") == said, (done.stdout, done.stderr)


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"])
def test_a_stdout_that_cannot_take_the_line_leaves_the_outcome(
    tmp_path: pathlib.Path, redirect: str, buffered: bool
) -> None:
    # The reload's outcome is the exit status: a closed or full stdout must not make it a traceback.
    path = str(tmp_path / "control")
    with one_answer(path, b"ok 4242\n"):
        done = subprocess.run(
            [
                "/bin/sh",
                "-c",
                f'exec "$@" {redirect}',
                "sh",
                sys.executable,
                "-m",
                "sockact",
                "reload",
                f"--control={path}",
            ],
            env={
                k: v for k, v in child_env({"PYTHONUNBUFFERED": "1"}).items() if not buffered or k != "PYTHONUNBUFFERED"
            },
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--control", "/run/a/control"],
        ["--control=/run/a/control"],
        ["--control=/run/a/control", "--timeout", "5"],
        ["--timeout=0.5", "--control", "/run/a/control"],
        ["--timeout", "1e1"],
        ["--control", ""],
        ["--control=-odd"],
        # not understood: the full command line answers (help, errors, prefixes, repeats)
        ["--help"],
        ["-h"],
        ["--contr", "/x"],
        ["--control"],
        ["--control", "--timeout", "5"],
        ["--control", "/x", "--control", "/y"],
        ["--timeout", "0"],
        ["--timeout", "-5"],
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["--timeout", "soon"],
        ["/x"],
        ["--control", "/x", "--"],
        ["--control", "/x", "extra"],
    ],
)
@pytest.mark.parametrize("environ", [{}, {"SOCKACT_CONTROL": "/run/env/control"}])
def test_quick_reload_parses_as_the_full_command_line_does(words: list[str], environ: dict[str, str]) -> None:
    """What `sockact reload` answers without argparse it parses exactly as argparse would; all else is
    left to the full command line (None), whose error and exit status 2 the user then sees."""
    quick = quick_args(words, environ)
    try:
        args = _parse(["reload", *words])
    except SystemExit:
        assert quick is None  # an error or --help: only argparse says it
        return
    path = args.control or environ.get("SOCKACT_CONTROL")
    if quick is not None:
        assert quick == (path, args.timeout)
    if words in (["--control=/run/a/control"], ["--control", "/run/a/control"]):  # what `sockact units` writes
        assert quick == ("/run/a/control", 120.0)
