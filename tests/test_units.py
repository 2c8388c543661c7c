"""Every unit pair in units/ passes `systemd-analyze verify` with a clean stderr (it exits 0 on many mistakes)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from sockact import AddressError, SockactError
from sockact._units import render_units

from conftest import need_tool
from helpers import ROOT, child_env
from units import localized, shipped_pairs


def verify(directory: str, files: list[str]) -> subprocess.CompletedProcess[str]:
    tool = need_tool("systemd-analyze")
    return subprocess.run(
        [tool, "verify", *(os.path.join(directory, f) for f in files)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )


@pytest.mark.peer
@pytest.mark.parametrize("name", shipped_pairs())
def test_shipped_units_verify_cleanly(name: str, tmp_path: object) -> None:
    files = localized(name)
    for filename, text in files.items():
        (tmp_path / filename).write_text(text)  # type: ignore[operator]
    out = verify(str(tmp_path), sorted(files))
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.peer
def test_verify_check_catches_a_mistake(tmp_path: object) -> None:
    """The check above can fail: a misspelt key exits 0 but warns on stderr."""
    files = localized(shipped_pairs()[0])
    for filename, text in files.items():
        (tmp_path / filename).write_text(text.replace("KillMode=", "KilMode="))  # type: ignore[operator]
    out = verify(str(tmp_path), sorted(files))
    assert out.returncode == 0 and "KilMode" in out.stderr


# -- sockact units: the generator ---------------------------------------------------------------


def test_render_inprocess_pair() -> None:
    units = render_units(
        "app",
        [("http", "8080"), ("dns", "udp:127.0.0.1:53")],
        ["/usr/bin/python3", "app.py"],
        environment={"PYTHONPATH": "/opt/app"},
        drain_timeout=20,
    )
    assert sorted(units) == ["app-dns.socket", "app.service", "app.socket"]
    assert "ListenStream=8080\nFileDescriptorName=http\nService=app.service" in units["app.socket"]
    assert "ListenDatagram=127.0.0.1:53\nFileDescriptorName=dns" in units["app-dns.socket"]
    service = units["app.service"]
    for line in (
        "Type=notify",
        "NotifyAccess=all",
        "PIDFile=%t/app/app.pid",
        "RuntimeDirectory=app",
        "ExecStart=/usr/bin/python3 app.py",
        "ExecReload=sockact reload --control=%t/app/control",
        "KillMode=mixed",
        "TimeoutStopSec=35",
        "Restart=on-failure",
        "LimitNICE=+0",
        "Environment=PYTHONPATH=/opt/app",
        "Environment=SOCKACT_PIDFILE=%t/app/app.pid",
        "Environment=SOCKACT_CONTROL=%t/app/control",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "Requires=app.socket app-dns.socket",
        "WantedBy=multi-user.target",
    ):
        assert line in service.splitlines(), line


def test_render_supervise_user() -> None:
    units = render_units(
        "app",
        [("http", "/run/app.sock")],
        ["/bin/server", "--port=$PORT", "100%"],
        mode="supervise",
        user=True,
        sockact_command=["/venv/bin/python", "-m", "sockact"],
    )
    service = units["app.service"].splitlines()
    assert (
        "ExecStart=/venv/bin/python -m sockact run --listen=http=/run/app.sock --control=%t/app/control "
        "--drain-timeout=30 -- /bin/server '--port=$$PORT' 100%%"
    ) in service  # $ and % are escaped for systemd
    assert "ExecReload=/venv/bin/python -m sockact reload --control=%t/app/control" in service
    assert "Type=notify" in service and "NotifyAccess=main" in service
    assert "WantedBy=default.target" in service and not any(x.startswith("PIDFile=") for x in service)
    # a user manager cannot apply namespaces or users: only the unprivileged part of the sandbox
    assert "NoNewPrivileges=yes" in service and "SystemCallFilter=@system-service" in service
    assert not any(x.startswith(("DynamicUser=", "User=", "ProtectSystem=", "PrivateUsers=")) for x in service)
    assert "SocketMode=0660" in units["app.socket"].splitlines()  # a unix listener: root and its group only
    assert "MemoryDenyWriteExecute=yes" not in service  # supervise: COMMAND may be a JIT runtime
    assert "LimitNICE=+0" in service  # a user manager that cannot raise it clamps it: the unit still starts


def test_render_hardening_choices() -> None:
    """DynamicUser= by default; User= when named; ReadWritePaths= per writable path; none of it unhardened."""

    def service(**kwargs: object) -> list[str]:
        return render_units("app", [("http", "8080")], ["/bin/app"], **kwargs)["app.service"].splitlines()  # type: ignore[arg-type]

    named = service(run_as="www-app", writable=["/var/lib/app", "/srv/uploads"])
    assert "User=www-app" in named and "DynamicUser=yes" not in named
    assert "ReadWritePaths=/var/lib/app" in named and "ReadWritePaths=/srv/uploads" in named
    bare = service(harden=False)
    assert not any(x.startswith(("DynamicUser=", "ProtectSystem=", "NoNewPrivileges=", "UMask=")) for x in bare)
    assert "RuntimeDirectory=app" in bare and "PIDFile=%t/app/app.pid" in bare  # the same layout either way
    tcp = render_units("app", [("http", "8080")], ["/bin/app"])["app.socket"]
    assert "SocketMode" not in tcp
    abstract = render_units("app", [("http", "@app")], ["/bin/app"])["app.socket"]
    assert "SocketMode" not in abstract  # an abstract name has no file mode: anyone in the netns may connect


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "a.service"}, SockactError, "bare name"),
        ({"listens": []}, SockactError, "--listen"),
        ({"listens": [("http", "nonsense")]}, AddressError, "Accepted forms"),
        ({"listens": [("a:b", "80")]}, SockactError, "FileDescriptorName"),
        ({"command": []}, SockactError, "command"),
        ({"mode": "x"}, SockactError, "inprocess or supervise"),
        ({"service_type": "simple"}, SockactError, "notify"),
        ({"environment": {"SOCKACT_PIDFILE": "/x"}}, SockactError, "set by the generated unit"),
        ({"run_as": "Root Admin"}, SockactError, "unprivileged user's name"),
        ({"run_as": "root"}, SockactError, "unprivileged user's name"),
        ({"run_as": "app", "harden": False}, SockactError, "hardened system unit"),
        ({"run_as": "app", "user": True}, SockactError, "hardened system unit"),
        ({"writable": ["var/lib/app"], "run_as": "app"}, SockactError, "absolute path"),
        ({"writable": ["/srv/a b"], "run_as": "app"}, SockactError, "without spaces"),
        ({"writable": ["/srv/100%"], "run_as": "app"}, SockactError, "without spaces"),
        ({"writable": ["/srv"]}, SockactError, "dynamic user gets a new uid"),
        ({"writable": ["/srv"], "harden": False}, SockactError, "only for a hardened system unit"),
        ({"writable": ["/srv"], "user": True}, SockactError, "only for a hardened system unit"),
        ({"listens": [("http", "/run/app/app.sock")]}, SockactError, "empties at every stop"),
    ],
)
def test_render_refuses_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = {"name": "app", "listens": [("http", "80")], "command": ["/bin/true"], **kwargs}
    with pytest.raises(error, match=match):
        render_units(args.pop("name"), args.pop("listens"), args.pop("command"), **args)


def units_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sockact", "units", *args],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["inprocess", "supervise"])
def test_generated_units_verify_cleanly(tmp_path: object, mode: str) -> None:
    need_tool("systemd-analyze")
    out = units_cli(
        "app",
        "--mode",
        mode,
        "--listen",
        "http=127.0.0.1:8000",
        "--out",
        str(tmp_path),
        "--env",
        f"PYTHONPATH={ROOT}",
        "--",
        "python3",
        f"{ROOT}/examples/http_server.py",
    )
    assert out.returncode == 0 and "systemd-analyze verify: clean" in out.stdout, out.stdout + out.stderr
    service = (tmp_path / "app.service").read_text()  # type: ignore[operator]
    assert f"ExecStart={os.path.realpath(sys.executable)}" in service or "ExecStart=/" in service


def test_generator_refuses_a_type_that_cannot_report_a_failed_deploy(tmp_path: object) -> None:
    """Type=notify-reload: systemd sends the signal itself and takes any READY=1 as a successful reload,
    so a broken deploy would make `systemctl reload` exit 0. The generator refuses it, in one line."""
    out = units_cli(
        "app", "--type", "notify-reload", "--listen", "http=8000", "--out", str(tmp_path), "--", "/bin/true"
    )
    assert out.returncode == 2 and "failed deploy would look like a success" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not os.listdir(str(tmp_path))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["app", "--listen", "http=8000", "--", "/nonexistent/x"], "command not found"),
        (["app", "--listen", "http=8000"], "no command given"),
        (["app", "--listen", "http=bogus", "--", "/bin/true"], "invalid address"),
        (["app", "--listen", "http=8000", "--out", "/dev/null/dir", "--", "/bin/true"], "cannot create directory"),
        (["app", "--user", "--listen", "http=8000", "--", "/bin/true"], "a unit for systemctl --user is --user-unit"),
        (["app", "--listen", "http=8000", "--writable", "/srv", "--", "/bin/true"], "dynamic user"),
    ],
)
def test_generator_errors_are_one_line(args: list[str], match: str) -> None:
    out = units_cli(*args)
    assert out.returncode == 2 and match in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_generator_creates_the_out_directory(tmp_path: pathlib.Path) -> None:
    out_dir = tmp_path / "new" / "units"
    out = units_cli("app", "--listen", "http=8000", "--out", str(out_dir), "--no-verify", "--", "/bin/true")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["app.service", "app.socket"]


def exposure(path: str) -> float:
    """`systemd-analyze security --offline=true`'s overall exposure level of the unit at ``path`` (0–10)."""
    tool = need_tool("systemd-analyze")
    out = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", path], capture_output=True, text=True, timeout=60
    )
    last = [line for line in out.stdout.splitlines() if "Overall exposure level" in line]
    assert last, out.stdout + out.stderr
    return float(last[-1].split(":")[1].split()[0])


@pytest.mark.peer
@pytest.mark.parametrize("mode", ["inprocess", "supervise"])
def test_generated_units_are_hardened(tmp_path: pathlib.Path, mode: str) -> None:
    """Target of issue 17: exposure ≤ 2.5 ("OK") for what `sockact units` writes; 9.8 without the sandbox."""
    for harden, name in ((True, "app"), (False, "bare")):
        units = render_units(name, [("http", "8080")], ["/usr/bin/python3", "/opt/app.py"], mode=mode, harden=harden)
        for filename, text in units.items():
            (tmp_path / filename).write_text(text)
    assert exposure(str(tmp_path / "app.service")) <= 2.5
    assert exposure(str(tmp_path / "bare.service")) > 9  # the check can fail


@pytest.mark.peer
@pytest.mark.parametrize("name", shipped_pairs())
def test_shipped_units_are_hardened(name: str) -> None:
    assert exposure(os.path.join(ROOT, "units", f"{name}.service")) <= 2.5


@pytest.mark.parametrize("name", shipped_pairs())
def test_shipped_units_carry_the_generators_sandbox(name: str) -> None:
    """units/ and `sockact units` do not drift apart: every hardening line of the generator is shipped."""
    from sockact._units import _SYSTEM_HARDENING, _UNPRIVILEGED_HARDENING

    lines = pathlib.Path(ROOT, "units", f"{name}.service").read_text().splitlines()
    from sockact._units import _NOT_FOR_ANY_PROGRAM

    dropped = _NOT_FOR_ANY_PROGRAM if any("-m sockact run" in line for line in lines) else ()
    expected = ["DynamicUser=yes", *_SYSTEM_HARDENING, *_UNPRIVILEGED_HARDENING]
    missing = [line for line in expected if line not in lines and line not in dropped]
    assert not [line for line in dropped if line in lines]
    assert not missing and f"RuntimeDirectory={name}" in lines, missing
    assert "LimitNICE=+0" in lines  # a successor started nicer can get nice 0 back (_units._nice_lines)


@pytest.mark.peer
def test_a_user_unit_verifies_without_a_user_session(tmp_path: pathlib.Path) -> None:
    """`systemd-analyze --user verify` needs $XDG_RUNTIME_DIR; from a shell without a user session
    (root over ssh, CI) the generator lends it a temporary one instead of failing."""
    need_tool("systemd-analyze")
    env = {k: v for k, v in child_env().items() if k != "XDG_RUNTIME_DIR"}
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "units", "app", "--user-unit", "--listen", "http=8000"]
        + ["--out", str(tmp_path), "--", "/bin/true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "systemd-analyze verify: clean" in out.stdout, out.stderr
    assert "WantedBy=default.target" in (tmp_path / "app.service").read_text()


@pytest.mark.parametrize(
    ("shebang", "mode", "uses_script"),
    [
        ("#!{python}\n", 0o755, True),
        ("#!{python} -E\n", 0o755, False),  # another command line: not known to be the same
        ("#!/usr/bin/python3\n", 0o755, False),  # another interpreter
        ("#!{python}\n", 0o644, False),  # not executable
        (None, 0, False),  # no script beside the interpreter
    ],
)
def test_units_start_sockact_by_the_console_script_of_the_same_interpreter(
    tmp_path: pathlib.Path, shebang: str | None, mode: int, uses_script: bool
) -> None:
    from sockact._units import sockact_command

    python = str(tmp_path / "python")
    if shebang is not None:
        script = tmp_path / "sockact"
        script.write_text(shebang.format(python=python) + "import sys\n")
        script.chmod(mode)
    expected = [str(tmp_path / "sockact")] if uses_script else [python, "-m", "sockact"]
    assert sockact_command(python) == expected
