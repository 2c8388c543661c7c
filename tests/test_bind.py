"""Fallback binding: what get_listeners does when nothing was handed over. Real sockets on loopback."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from sockact import ActivationError, AddressError, UsageError, get_listeners


def test_v4_v6_dual_unix_abstract_udp(tmp_path: object, fresh_env: None) -> None:
    path = os.path.join(str(tmp_path), "app.sock")
    abstract = f"@sockact-test-{os.getpid()}"
    spec = {"v4": "127.0.0.1:0", "v6": "[::1]:0", "dual": "0", "unix": path, "abs": abstract, "udp": "udp:127.0.0.1:0"}
    with get_listeners(spec) as ls:
        assert list(ls) == list(spec)
        assert ls.bound == set(spec) and not ls.inherited and not ls.unclaimed
        assert ls["dual"].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert ls["v6"].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        for name in ("v4", "v6", "dual", "unix", "abs"):
            assert ls[name].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1, name
        assert ls["udp"].type == socket.SOCK_DGRAM
        # each really accepts: connect through the dual-stack one over IPv4
        port = ls["dual"].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = ls["dual"].accept()
            conn.close()
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect("\0" + abstract[1:])
        assert not ls["v4"].get_inheritable()
    assert ls.closed and all(s.fileno() == -1 for s in ls.values())


def test_unix_stale_file_reclaimed_live_refused(tmp_path: object, fresh_env: None) -> None:
    path = os.path.join(str(tmp_path), "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # leaves the file, nobody listening
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with get_listeners({"u": path}, unix_mode=0o660) as ls:
        assert ls.bound == {"u"}
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(AddressError, match="already listening"):
            get_listeners({"u2": path})
    regular = os.path.join(str(tmp_path), "file")
    open(regular, "w").close()
    with pytest.raises(AddressError, match="not a socket"):
        get_listeners({"u": regular})
    assert os.path.exists(regular)
    with pytest.raises(AddressError, match="does not exist"):
        get_listeners({"u": os.path.join(str(tmp_path), "nodir", "x.sock")})


def test_partial_failure_closes_everything(fresh_env: None) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(AddressError) as info:
        get_listeners({"a": "127.0.0.1:0", "b": "@sockact-partial", "c": f"127.0.0.1:{port}"})
    assert f"127.0.0.1:{port}" in str(info.value) and "in use" in str(info.value)
    assert set(os.listdir("/proc/self/fd")) == before  # nothing left open
    # the abstract name it had bound is free again
    with get_listeners({"b": "@sockact-partial"}):
        pass
    busy.close()


def test_require_activation_refuses_to_bind(fresh_env: None) -> None:
    with pytest.raises(ActivationError, match="require_activation"):
        get_listeners({"http": "127.0.0.1:0"}, require_activation=True)


def test_bad_names_and_addresses(fresh_env: None) -> None:
    with pytest.raises(UsageError, match="FileDescriptorName"):
        get_listeners({"a:b": "8080"})
    with pytest.raises(AddressError, match="Accepted forms"):
        get_listeners({"a": "nonsense"})


def test_spec_none_without_activation_is_empty(fresh_env: None) -> None:
    with get_listeners() as ls:
        assert dict(ls) == {}


def test_bound_sockets_go_to_the_fd_store(fresh_env: None) -> None:
    from sockact import NotifyReceiver

    with NotifyReceiver() as manager:
        env = {"NOTIFY_SOCKET": manager.address, "FDSTORE": "4"}
        with get_listeners({"http": "127.0.0.1:0", "dns": "udp:127.0.0.1:0"}, environ=env) as ls:
            stored = {}
            for _ in range(2):
                m = manager.receive(timeout=5)
                assert m is not None and m["FDSTORE"] == "1"
                (fd,) = m.take_fds()
                with socket.socket(fileno=fd) as copy:
                    stored[m["FDNAME"]] = copy.getsockname()
            assert stored == {name: sock.getsockname() for name, sock in ls.items()}  # the very same sockets
        with get_listeners({"http": "127.0.0.1:0"}, environ={"NOTIFY_SOCKET": manager.address}):
            assert manager.receive(timeout=0.2) is None  # no $FDSTORE: nothing stored
        with get_listeners({"http": "127.0.0.1:0"}, environ={"NOTIFY_SOCKET": manager.address}, fdstore=True):
            assert manager.receive(timeout=5)["FDNAME"] == "http"  # explicit opt-in (systemd < 254)


def test_unix_socket_mode_owner_group(tmp_path: object, fresh_env: None) -> None:
    """SocketMode=/SocketUser=/SocketGroup= for sockets bound here: applied before listen()."""
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    import grp
    import pwd

    path = os.path.join(str(tmp_path), "app.sock")
    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
    with get_listeners({"u": path}, unix_mode=0o660, unix_owner="nobody", unix_group=nogroup.gr_name) as ls:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nogroup.gr_gid, 0o660)
        assert ls["u"].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    path2 = os.path.join(str(tmp_path), "app2.sock")
    with get_listeners({"u": path2}, unix_owner=4242, unix_group="4343"):
        assert (os.stat(path2).st_uid, os.stat(path2).st_gid) == (4242, 4343)
    with pytest.raises(AddressError, match="unix socket user 'no-such-user-x' does not exist"):
        get_listeners({"u": os.path.join(str(tmp_path), "x.sock")}, unix_owner="no-such-user-x")
    assert not os.path.exists(os.path.join(str(tmp_path), "x.sock"))  # refused before anything was bound


def test_unix_socket_owner_refused_is_clear(tmp_path: object, fresh_env: None) -> None:
    """A process that may not chown gets an AddressError naming the path, and nothing stays bound."""
    import shutil
    import subprocess
    import sys
    import tempfile

    from helpers import ROOT, child_env

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    directory = tempfile.mkdtemp(prefix="sockact-test-", dir="/tmp")  # reachable by nobody, unlike tmp_path
    os.chmod(directory, 0o777)
    path = os.path.join(directory, "app.sock")
    code = (
        "import grp, os, pwd, sockact  # modules first: nobody may not read this Python's files\n"
        "from sockact import AddressError, get_listeners  # (sockact imports its modules on first use)\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"try:\n    sockact.get_listeners({{'u': {path!r}}}, unix_owner=0)\n"
        "except sockact.AddressError as e:\n    print(e)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, cwd=ROOT)
        assert f"cannot give unix socket {path} to uid:gid 0:-1" in out.stdout, (out.stdout, out.stderr)
        assert "needs root" in out.stdout
        assert not os.path.exists(path)
    finally:
        shutil.rmtree(directory)


def test_bound_tcp_listener_gets_tcp_nodelay_from_asyncio(fresh_env: None) -> None:
    """A socket sockact binds names IPPROTO_TCP, as the connections it accepts then do; asyncio sets
    TCP_NODELAY only on those (with protocol 0, every keep-alive response waited for a delayed ACK)."""
    import asyncio

    with get_listeners({"http": "127.0.0.1:0", "u": "udp:127.0.0.1:0"}) as listeners:
        sock = listeners["http"]
        assert sock.proto == socket.IPPROTO_TCP and listeners["u"].proto == 0
        seen: list[int] = []

        async def main() -> None:
            def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(handle, sock=sock)
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            assert await reader.read() == b""  # closed by the server once it looked
            writer.close()
            server.close()

        asyncio.run(asyncio.wait_for(main(), 10))
        assert seen and seen[0] != 0
