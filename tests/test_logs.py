"""What sockact logs: one start line of one shape (``sockact run`` and every integration), one line per
reload outcome, ``<N>`` priorities when stderr is the journal ($JOURNAL_STREAM names its dev:ino,
systemd.exec(5)), ``--log-level``/``-v``, and the rule that sockact only logs on its own when the
application configured nothing. Pure tables first, then real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping

import pytest

from sockact import __version__
from sockact._startline import describe_sockets, start_line

from conftest import need_module
from helpers import ROOT, FakeSystemd, child_env, free_port
from reloads import become_subreaper, serving_pid

PY = sys.executable
PLAIN = os.path.join(ROOT, "tests", "plain_server.py")
LOGGED = os.path.join(ROOT, "tests", "logged_app.py")


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()  # an in-process successor outlives its predecessor: it is reaped here


@pytest.mark.parametrize(
    ("sockets", "kwargs", "line"),
    [
        ([("http", "127.0.0.1:8000", True)], {}, "sockact 1.2.3 pid 7 serving http=127.0.0.1:8000 (inherited)"),
        (
            [("http", "[::1]:80", False), ("admin", "/run/app.sock", True)],
            {"server": "uvicorn 0.30.6"},
            "sockact 1.2.3 pid 7 serving http=[::1]:80 (bound), admin=/run/app.sock (inherited) with uvicorn 0.30.6",
        ),
        (
            [("http", "127.0.0.1:8000", False)],
            {"child": 9, "ready_in": 0.214},
            "sockact 1.2.3 pid 7 serving http=127.0.0.1:8000 (bound) with child pid 9 ready in 0.21 s",
        ),
        (
            [("http:2", "@abstract", True)],
            {"child": 9},
            "sockact 1.2.3 pid 7 serving http:2=@abstract (inherited) with child pid 9",
        ),
        ([], {"server": "waitress"}, "sockact 1.2.3 pid 7 serving no sockets with waitress"),
    ],
)
def test_start_line(sockets: list[tuple[str, str, bool]], kwargs: Mapping[str, object], line: str) -> None:
    assert start_line("1.2.3", 7, sockets, **kwargs) == line  # type: ignore[arg-type]


def test_describe_sockets_is_the_start_lines_middle() -> None:
    sockets = [("a", "1.2.3.4:5", True), ("b", "/x", False)]
    assert describe_sockets(sockets) in start_line("0", 1, sockets)


# -- real processes ------------------------------------------------------------------------------------


def journal_env(path: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose JOURNAL_STREAM names the file at ``path`` (what systemd sets for a
    service whose stderr is the journal stream), for a child whose stderr is that file."""
    st = os.stat(path)
    return child_env({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **(extra or {})})


def sockact_lines(text: str) -> list[str]:
    """The lines sockact itself wrote (``[<N>]sockact[PID]: …``), not the child's or the server's."""
    return [line for line in text.splitlines() if re.match(r"(<\d>)?sockact\[\d+\]: ", line)]


def run_crash_loop(tmp_path: object, *options: str, journal: bool = True) -> list[str]:
    """`sockact run` of a child that exits at once, twice: start line, a crash, a restart, giving up."""
    err = os.path.join(str(tmp_path), "stderr")
    open(err, "w").close()
    env = journal_env(err) if journal else child_env()
    argv = [PY, "-m", "sockact", "run", f"--listen=http=127.0.0.1:{free_port()}", "--ready=spawn"]
    argv += ["--give-up-after=2", *options, "--", "/bin/sh", "-c", "exit 3"]
    with open(err, "a") as stderr:
        code = subprocess.run(argv, env=env, stderr=stderr, stdout=subprocess.DEVNULL, timeout=60).returncode
    assert code == 1
    with open(err) as f:
        return sockact_lines(f.read())


def test_sockact_run_under_the_journal_prefixes_each_line_with_its_priority(tmp_path: object) -> None:
    lines = run_crash_loop(tmp_path)
    assert lines, "sockact run wrote nothing"
    start = [line for line in lines if " serving http=127.0.0.1:" in line]
    assert len(start) == 1 and start[0].startswith("<6>sockact[")
    assert re.search(
        rf": sockact {re.escape(__version__)} pid \d+ serving http=127\.0\.0\.1:\d+ \(bound\) with child pid \d+",
        start[0],
    )
    crashes = [line for line in lines if "exited unexpectedly with status 3" in line]
    assert len(crashes) == 2 and all(line.startswith("<3>") for line in crashes), lines  # journalctl -p err sees them
    assert "giving up" in crashes[-1]
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines


def test_sockact_run_without_the_journal_writes_plain_lines(tmp_path: object) -> None:
    lines = run_crash_loop(tmp_path, journal=False)
    assert lines and not [line for line in lines if line.startswith("<")], lines


def test_a_journal_stream_that_is_not_stderr_gets_no_prefixes(tmp_path: object) -> None:
    other = os.path.join(str(tmp_path), "other")
    open(other, "w").close()
    err = os.path.join(str(tmp_path), "stderr")
    with open(err, "w") as stderr:  # stderr redirected away from the stream systemd named
        argv = [PY, "-m", "sockact", "run", f"--listen=http=127.0.0.1:{free_port()}", "--ready=spawn"]
        argv += ["--give-up-after=1", "--", "/bin/sh", "-c", "exit 3"]
        subprocess.run(argv, env=journal_env(other), stderr=stderr, timeout=60)
    with open(err) as f:
        lines = sockact_lines(f.read())
    assert lines and not [line for line in lines if line.startswith("<")], lines


def test_log_level_error_keeps_only_the_failures(tmp_path: object) -> None:
    lines = run_crash_loop(tmp_path, "--log-level", "error")
    assert len(lines) == 2 and all(line.startswith("<3>") for line in lines), lines


def test_verbose_shows_the_debug_lines(tmp_path: object) -> None:
    lines = run_crash_loop(tmp_path, "-v")
    assert any(line.startswith("<7>") and "started successor pid" in line for line in lines), lines


def test_log_level_and_verbose_are_one_choice() -> None:
    out = subprocess.run(
        [PY, "-m", "sockact", "run", "-v", "--log-level", "info", "--", "true"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "not allowed with argument" in out.stderr and "Traceback" not in out.stderr


def test_sockact_run_logs_one_line_per_reload_outcome(tmp_path: object) -> None:
    """A reload that succeeds, one that fails, a stop: each one line, at INFO, ERROR, INFO (and the
    failing successor's warning on the way)."""
    err = os.path.join(str(tmp_path), "stderr")
    mode = os.path.join(str(tmp_path), "mode")
    for path, text in ((err, ""), (mode, "ok")):
        with open(path, "w") as f:
            f.write(text)
    port = free_port()
    argv = [PY, "-m", "sockact", "run", f"--listen=http=127.0.0.1:{port}", "--ready-timeout=1", "--", PY, PLAIN, mode]
    with FakeSystemd() as systemd, open(err, "a") as stderr:
        proc = subprocess.Popen(argv, env=journal_env(err, {"NOTIFY_SOCKET": systemd.address}), stderr=stderr)
        try:
            systemd.wait_for(lambda m: m.get("READY") == "1")
            first = serving_pid(port)
            os.kill(proc.pid, signal.SIGHUP)
            systemd.wait_for(lambda m: f"replaced pid {first}" in (m.get("STATUS") or ""))
            second = serving_pid(port, not_pids=[first])
            with open(mode, "w") as f:
                f.write("hang")
            os.kill(proc.pid, signal.SIGHUP)
            systemd.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
    with open(err) as f:
        lines = [re.sub(r"sockact\[\d+\]: ", "", line) for line in sockact_lines(f.read())]
    waiting = [line for line in lines if "has sent no READY=1 yet" in line]  # half the ready timeout passed
    assert len(waiting) == 1 and waiting[0].startswith("<4>"), lines
    lines.remove(waiting[0])
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"<6>sockact {__version__} pid {proc.pid} serving http=127.0.0.1:{port} (bound)")
    assert lines[0].split(" with ")[1].startswith(f"child pid {first} ready in ")
    assert re.fullmatch(rf"<6>upgraded: child pid {first} → pid {second} in \d+\.\d\d s", lines[1]), lines
    assert re.fullmatch(rf"<3>upgrade failed, pid {second} still serving: successor pid \d+ was not ready .*", lines[2])
    assert lines[3] == f"<6>stopping on SIGTERM: child pid {second} has 30.0 s to drain"


@pytest.mark.peer
def test_an_integration_logs_its_start_line_and_each_reload_outcome_with_logging_unconfigured(tmp_path: object) -> None:
    """uvicorn, whose own "running on" line is missing for sockets it did not bind: the app configures
    no logging, so sockact's handler writes (``<N>``-prefixed: stderr is the journal); a reload that
    succeeds (the successor's start line says inherited) and one whose successor fails are one line each."""
    need_module("uvicorn")
    err = os.path.join(str(tmp_path), "stderr")
    gate = os.path.join(str(tmp_path), "gate")
    open(err, "w").close()
    open(gate, "w").close()
    port = free_port()
    successor = 0
    with FakeSystemd() as systemd, open(err, "a") as stderr:
        env = journal_env(err, {"NOTIFY_SOCKET": systemd.address})
        proc = subprocess.Popen([PY, LOGGED, f"127.0.0.1:{port}", gate], env=env, stderr=stderr, stdout=subprocess.PIPE)
        try:
            systemd.wait_for(lambda m: m.get("READY") == "1")
            os.kill(proc.pid, signal.SIGHUP)
            successor = serving_pid(port, not_pids=[proc.pid])
            assert proc.wait(30) == 0  # drained and exited; the successor serves
            os.unlink(gate)
            os.kill(successor, signal.SIGHUP)
            systemd.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if successor:
                os.kill(successor, signal.SIGTERM)
                _, status = os.waitpid(successor, 0)  # ours: we are the subreaper
                assert os.waitstatus_to_exitcode(status) == 0
    with open(err) as f:
        text = f.read()
    lines = [re.sub(r"sockact\[\d+\]: ", "", line) for line in sockact_lines(text)]
    server = f"with uvicorn {need_module('uvicorn').__version__}"
    assert lines[0] == f"<6>sockact {__version__} pid {proc.pid} serving http=127.0.0.1:{port} (bound) {server}", text
    assert lines[1] == f"<6>sockact {__version__} pid {successor} serving http=127.0.0.1:{port} (inherited) {server}"
    assert re.fullmatch(rf"<6>upgraded: pid {proc.pid} → pid {successor} in \d+\.\d\d s; draining", lines[2]), lines
    assert re.fullmatch(
        r"<3>upgrade failed, still serving: successor pid \d+ exited with status \d+ before READY=1", lines[3]
    )
    assert lines[4] == "<6>stopping on SIGTERM: draining" and len(lines) == 5, lines


def child_logs(code: str) -> str:
    """What a fresh interpreter writes to stderr running ``code`` (``configure_logging`` and ``log`` defined)."""
    prelude = (
        "import logging, sys\nfrom sockact._journal import configure_logging\nlog = logging.getLogger('sockact.x')\n"
    )
    out = subprocess.run([PY, "-c", prelude + code], env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_sockact_logs_on_its_own_only_when_the_application_configured_nothing() -> None:
    # nothing configured: one handler on the 'sockact' logger (once), at INFO, the root logger untouched
    alone = child_logs(
        "assert configure_logging() and not configure_logging()\n"
        "assert not logging.getLogger().handlers and len(logging.getLogger('sockact').handlers) == 1\n"
        "log.info('hello'); log.debug('hidden')\n"
    )
    assert re.fullmatch(r"sockact\[\d+\]: hello\n", alone), alone
    # configured first: nothing added, the application's handler formats sockact's lines
    app = child_logs(
        "logging.basicConfig(level=logging.INFO, format='app: %(name)s %(message)s')\n"
        "assert not configure_logging() and not logging.getLogger('sockact').handlers\n"
        "log.info('hello')\n"
    )
    assert app == "app: sockact.x hello\n", app
    # configured later: sockact's handler stands down, no line twice
    later = child_logs("configure_logging()\nlogging.basicConfig(format='app: %(message)s')\nlog.warning('hello')\n")
    assert later == "app: hello\n", later
    # an explicit level (sockact run --log-level) applies either way
    level = child_logs(
        "logging.basicConfig(format='%(message)s')\nconfigure_logging(logging.ERROR)\nlog.warning('no')\nlog.error('yes')\n"
    )
    assert level == "yes\n", level
