"""sockact.daemon as a drop-in for systemd.daemon: python-systemd's own kinds of tests, on both backends."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from sockact import daemon

from conftest import need_module
from helpers import child_env, run_child


@pytest.fixture(params=["python", "libsystemd"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "libsystemd":
        need_module("systemd.daemon")
    daemon.use_backend(request.param)
    yield request.param
    daemon.use_backend(None)


def test_same_names_as_python_systemd() -> None:
    for name in (
        "LISTEN_FDS_START",
        "booted",
        "notify",
        "listen_fds",
        "listen_fds_with_names",
        "is_fifo",
        "is_socket",
        "is_socket_inet",
        "is_socket_unix",
        "is_socket_sockaddr",
        "is_mq",
    ):
        assert hasattr(daemon, name)
    assert daemon.LISTEN_FDS_START == 3


def test_booted(backend: str) -> None:
    assert daemon.booted() == os.path.isdir("/run/systemd/system")


def test_is_fifo(tmp_path: object, backend: str) -> None:
    path = os.path.join(str(tmp_path), "f")
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd) as f:
        assert daemon.is_fifo(f) and daemon.is_fifo(fd, path) and daemon.is_fifo(fd)
        assert not daemon.is_fifo(fd, os.path.join(str(tmp_path), "other"))
    regular = os.path.join(str(tmp_path), "r")
    with open(regular, "w") as f:
        assert not daemon.is_fifo(f) and not daemon.is_fifo(f, regular)
    with pytest.raises(OSError):
        daemon.is_fifo(-1)


def test_sockets(backend: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        for arg in (a, a.fileno()):
            assert daemon.is_socket(arg) and daemon.is_socket(arg, socket.AF_UNIX)
            assert not daemon.is_socket(arg, socket.AF_INET)
            assert daemon.is_socket(arg, socket.AF_UNIX, socket.SOCK_STREAM)
            assert not daemon.is_socket(arg, socket.AF_UNIX, socket.SOCK_DGRAM)
            assert daemon.is_socket(arg, listening=0) and not daemon.is_socket(arg, listening=1)
            assert daemon.is_socket_unix(arg) and daemon.is_socket_unix(arg, socket.SOCK_STREAM)
            assert not daemon.is_socket_unix(arg, socket.SOCK_DGRAM)
            assert not daemon.is_socket_unix(arg, path="/no/such/path")
            assert not daemon.is_socket_inet(arg) and not daemon.is_fifo(arg) and not daemon.is_mq(arg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert daemon.is_socket_inet(s, socket.AF_INET, socket.SOCK_STREAM, 1, port)
        assert not daemon.is_socket_inet(s, socket.AF_INET6)
        assert not daemon.is_socket_inet(s, port=port + 1 if port < 65535 else 1)
        assert daemon.is_socket_sockaddr(s, f"127.0.0.1:{port}")
        assert daemon.is_socket_sockaddr(s, "127.0.0.1")
        assert not daemon.is_socket_sockaddr(s, f"127.0.0.2:{port}")
        with pytest.raises(ValueError):
            daemon.is_socket_sockaddr(s, "not-an-address")
    if backend == "python":  # python-systemd's FSConverter refuses the NUL of an abstract name
        with socket.socket(socket.AF_UNIX) as u:
            u.bind("\0sockact-api-test")
            assert daemon.is_socket_unix(u, path="\0sockact-api-test")


def test_listen_fds_no_fds(backend: str, fresh_env: None) -> None:
    assert daemon.listen_fds() == [] and daemon.listen_fds(False) == [] and daemon.listen_fds_with_names() == {}


@pytest.mark.parametrize("backend_name", ["python", "libsystemd"])
def test_listen_fds(backend_name: str) -> None:
    """python-systemd's own test, in a child with fds 3-5 open: LISTEN_FDS=3 for us → [3, 4, 5]."""
    if backend_name == "libsystemd":
        need_module("systemd.daemon")
    code = (
        "from sockact import daemon\n"
        "out = [daemon.listen_fds(False), daemon.listen_fds(True), 'LISTEN_FDS' in os.environ, daemon.listen_fds()]\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "out += [daemon.listen_fds(False), daemon.listen_fds(), daemon.listen_fds()]\n"
        "print(json.dumps(out))\n"
    )
    nulls = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    try:
        env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": "3", "SOCKACT_DAEMON_BACKEND": backend_name})
        out = run_child(code, nulls, env)
    finally:
        for fd in nulls:
            os.close(fd)
    assert out == [[3, 4, 5], [3, 4, 5], False, [], [3], [3], []]


@pytest.mark.parametrize("backend_name", ["python", "libsystemd"])
def test_grandchild_inherits_nothing(backend_name: str) -> None:
    """After listen_fds_with_names(), a grandchild started with env=dict(os.environ) sees no LISTEN_* and no fd."""
    if backend_name == "libsystemd":
        need_module("systemd.daemon")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code = (
            "import subprocess\n"
            "from sockact import daemon\n"
            "got = daemon.listen_fds_with_names()\n"
            "gc = subprocess.run([sys.executable, '-c', 'import os, json; print(json.dumps({\"env\": "
            'sorted(k for k in os.environ if k.startswith("LISTEN_")), "fd3_open": '
            'os.path.exists("/proc/self/fd/3")}))\'], env=dict(os.environ), close_fds=False,\n'
            "    capture_output=True, text=True)\n"
            "print(json.dumps({'got': got, 'grandchild': json.loads(gc.stdout)}))\n"
        )
        env = child_env(
            {"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "SOCKACT_DAEMON_BACKEND": backend_name}
        )
        out = run_child(code, [s.fileno()], env)
    assert out["got"] == {"3": "web"}
    assert out["grandchild"]["env"] == []
    assert out["grandchild"]["fd3_open"] is False  # claimed fds are close-on-exec


def test_backend_switch_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown"):
        daemon.use_backend("nope")
