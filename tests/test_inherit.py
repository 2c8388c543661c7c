"""get_listeners() in real child processes that inherited real sockets on fds 3.. ."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from helpers import child_env, run_child, tcp_listener

GET = (
    "import sockact\n"
    "try:\n"
    "    ls = sockact.get_listeners(SPEC)\n"
    "except sockact.SockactError as e:\n"
    "    print(json.dumps({'error': type(e).__name__, 'msg': str(e)})); sys.exit(0)\n"
    "print(json.dumps({'keys': list(ls), 'inherited': sorted(ls.inherited), 'bound': sorted(ls.bound),\n"
    "  'fds': {k: s.fileno() for k, s in ls.items()}, 'unclaimed': {str(k): v for k, v in ls.unclaimed.items()},\n"
    "  'names': {k: str(s.getsockname()) for k, s in ls.items()}, 'protos': {k: s.proto for k, s in ls.items()},\n"
    "  'env': sorted(k for k in os.environ if k.startswith('LISTEN_'))}))\n"
)


def get(spec: object, fds: list[int], names: str | None, options: str = "") -> dict:
    env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": str(len(fds))})
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return run_child(GET.replace("SPEC", repr(spec) + options), fds, env)


def test_by_name_then_bind_rest_only_when_asked() -> None:
    """An entry that matches nothing while an inherited socket goes unclaimed is a unit/app mismatch:
    an error naming both sides, unless bind_missing=True."""
    a, b = tcp_listener(), tcp_listener()
    spec = {"web": "127.0.0.1:1", "admin": "127.0.0.1:0"}
    refused = get(spec, [a.fileno(), b.fileno()], "other:web")
    assert refused["error"] == "ActivationError"
    assert "admin='127.0.0.1:0'" in refused["msg"] and "fd 3 'other'" in refused["msg"], refused
    assert "bind_missing=True" in refused["msg"] and "FileDescriptorName=" in refused["msg"]
    out = get(spec, [a.fileno(), b.fileno()], "other:web", ", bind_missing=True")
    assert out["fds"]["web"] == 4 and out["inherited"] == ["web"] and out["bound"] == ["admin"]
    assert out["unclaimed"] == {"3": "other"} and out["env"] == []
    # inherited and bound alike name their protocol (asyncio sets TCP_NODELAY only when proto is TCP)
    assert out["protos"] == {"web": socket.IPPROTO_TCP, "admin": socket.IPPROTO_TCP}


def test_by_address_when_names_unknown() -> None:
    a, b = tcp_listener(), tcp_listener()
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    out = get({"x": f"127.0.0.1:{pb}", "y": f"127.0.0.1:{pa}"}, [a.fileno(), b.fileno()], None)
    assert out["fds"] == {"x": 4, "y": 3} and out["bound"] == []


def test_unit_default_names_match_by_address() -> None:
    a = tcp_listener()
    out = get({"http": f"127.0.0.1:{a.getsockname()[1]}"}, [a.fileno()], "app.socket")
    assert out["fds"] == {"http": 3}


def test_spec_none_disambiguates_duplicates() -> None:
    socks = [tcp_listener() for _ in range(3)]
    out = get(None, [s.fileno() for s in socks], "app.socket:app.socket:web")
    assert out["keys"] == ["app.socket", "app.socket:2", "web"]


def test_wrong_kind_is_an_error_naming_fd_and_kinds() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    out = get({"http": "127.0.0.1:0"}, [udp.fileno()], "http")
    assert out["error"] == "ActivationError"
    assert "fd 3" in out["msg"] and "inet datagram" in out["msg"] and "inet stream" in out["msg"]
    u = socket.socket(socket.AF_UNIX)
    out = get({"http": "127.0.0.1:0"}, [u.fileno()], "http")
    assert "unix stream" in out["msg"]


def test_fifo_refused_by_name(tmp_path: object) -> None:
    r, _w = os.pipe()
    out = get({"http": "127.0.0.1:0"}, [r], "http")
    assert out["error"] == "ActivationError" and "fifo" in out["msg"] and "fd 3" in out["msg"]
    out = get(None, [r], "store")  # spec=None: a FIFO is left for listen_fds(), not an error
    assert out["keys"] == [] and out["unclaimed"] == {"3": "store"}


def test_fd_not_open_is_an_activation_error() -> None:
    a = tcp_listener()
    env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": "3"})
    out = run_child(GET.replace("SPEC", "None"), [a.fileno()], env)
    assert out["error"] == "ActivationError" and "fd 4" in out["msg"] and "not open" in out["msg"]


def test_inherited_listening_socket_is_not_listened_again() -> None:
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    a.listen(7)
    port = a.getsockname()[1]
    code = GET.replace("SPEC", "{'h': '127.0.0.1:1'}") + "sys.stdout.flush()\nsys.stdin.read()\n"
    # keep the child alive while ss reads the backlog (Send-Q of a listening socket)
    env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "h"})
    import json
    import sys

    r, w = os.pipe()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os;os.dup2(int(os.environ['XFD']),3);os.environ['LISTEN_PID']=str(os.getpid());"
            + "import sys,json\n"
            + code,
        ],
        env={**env, "XFD": str(a.fileno())},
        pass_fds=[a.fileno()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert json.loads(line)["inherited"] == ["h"]
        a.close()
        ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
        assert ss[2] == "7", ss  # a second listen(4096) would have changed it
    finally:
        proc.communicate("", timeout=10)
    os.close(r), os.close(w)
    assert proc.returncode == 0


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_listen_pid_is_a_clear_error(value: str) -> None:
    env = child_env({"LISTEN_PID": value, "LISTEN_FDS": "1"})
    out = run_child(GET.replace("SPEC", "None"), [], env)
    assert out["error"] == "ActivationError" and "LISTEN_PID" in out["msg"] and repr(value) in out["msg"]


@pytest.mark.parametrize("spec", [None, "bind"])
def test_a_connection_from_accept_yes_is_named_as_such(spec: str | None) -> None:
    """Accept=yes hands each instance a connected socket: an ActivationError that names the setting."""
    listener = tcp_listener()
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    port = listener.getsockname()[1]
    with listener, client, conn:
        out = get({"http": f"127.0.0.1:{port}"} if spec else None, [conn.fileno()], "connection")
    assert out["error"] == "ActivationError"
    assert "fd 3 named 'connection' is a connected inet stream socket" in out["msg"] and "Accept=no" in out["msg"]


def test_a_socket_that_matched_nothing_is_a_mismatch_named_as_such() -> None:
    """The usual cause of "in use" under systemd: the unit's socket came, named otherwise, on another
    address. That is refused before binding (no "in use" at all), naming what came and what was asked."""
    passed, held = tcp_listener(), tcp_listener()  # held: the port asked for, taken by "the manager"
    port = passed.getsockname()[1]
    with passed, held:
        out = get({"http": f"127.0.0.1:{held.getsockname()[1]}"}, [passed.fileno()], "app.socket")
    assert out["error"] == "ActivationError" and "'app.socket'" in out["msg"] and str(port) in out["msg"]
    assert "FileDescriptorName=" in out["msg"] and "bind_missing=True" in out["msg"]


def test_an_address_in_use_names_a_wrapper_that_forked() -> None:
    """LISTEN_PID names another process (a shell that forked instead of exec'ing): the message says so."""
    held = tcp_listener()
    env = child_env({"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    with held:
        out = run_child(GET.replace("SPEC", repr({"http": f"127.0.0.1:{held.getsockname()[1]}"})), [], env)
    assert out["error"] == "AddressError" and "in use" in out["msg"]
    assert "LISTEN_PID=1 names another process" in out["msg"] and "exec the program directly" in out["msg"]


OPEN_AFTER = (
    "import gc, stat, sockact\n"
    "try:\n"
    "    ls = sockact.get_listeners(SPEC)\n"
    "    error = None\n"
    "except sockact.SockactError as e:\n"
    "    ls, error = None, type(e).__name__\n"
    "gc.collect()  # a socket object left holding an inherited fd would close it now\n"
    "def kind(fd):\n"
    "    try:\n"
    "        return 'socket' if stat.S_ISSOCK(os.fstat(fd).st_mode) else 'other'\n"
    "    except OSError:\n"
    "        return 'closed'\n"
    "print(json.dumps({'error': error, 'fds': [kind(fd) for fd in (3, 4, 5)],\n"
    "  'unclaimed': sorted(ls.unclaimed) if ls else None}))\n"
)


@pytest.mark.parametrize(
    "spec, error",
    [
        ({"http": "127.0.0.1:0", "dns": "udp:127.0.0.1:0"}, "ActivationError"),  # fd 4 is TCP: wrong kind
        ({"http": "127.0.0.1:0"}, None),  # dns and the FIFO stay unclaimed
        (None, None),  # the FIFO stays unclaimed
    ],
)
def test_inherited_fds_stay_open_after_an_error_and_when_unclaimed(spec: object, error: str | None) -> None:
    """get_listeners() inspects the inherited fds through socket objects that adopt them: an error
    must hand every fd back untouched, and an unclaimed one stays an open fd for close_unclaimed()."""
    http, dns = tcp_listener(), tcp_listener()
    r, w = os.pipe()
    code = OPEN_AFTER.replace("SPEC", repr(spec))
    env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "http:dns:store"})
    with http, dns:
        out = run_child(code, [http.fileno(), dns.fileno(), r], env)
    os.close(r)
    os.close(w)
    assert out["error"] == error
    assert out["fds"] == ["socket", "socket", "other"]
    if error is None:
        assert out["unclaimed"] == ([4, 5] if spec else [5])


def test_fdinfo_fields_are_the_ones_type_checkers_see() -> None:
    """FdInfo is a collections.namedtuple at run time (typing.NamedTuple would import typing into
    every successor) and a typing.NamedTuple for type checkers: both declare the same fields and
    defaults."""
    import ast
    import inspect

    from sockact import _fds

    tree = ast.parse(inspect.getsource(_fds))
    typed = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "_FdFields")
    fields = [s.target.id for s in typed.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    defaults = {
        s.target.id: ast.literal_eval(s.value)
        for s in typed.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None
    }
    assert list(_fds.FdInfo._fields) == fields
    assert _fds.FdInfo._field_defaults == defaults
    info = _fds.FdInfo(3, "fifo")
    assert (info.family, info.listening, info.sockname) == (0, False, None) and info.describe() == "fifo"
