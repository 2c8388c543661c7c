"""Coverage-guided fuzzing of the LISTEN_* rules, cross-checked against libsystemd.

    python fuzz/listen_env.py -runs=100000 [-seed=N] [libFuzzer options…]

Each input becomes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (each may be absent, this process's
pid in some spelling, a small number in some spelling, or any text). On the same environment and
the same open fds (sockets on fds 3, 4 and 5), sockact.daemon.listen_fds_with_names() and
python-systemd's — sd_listen_fds_with_names(3) in libsystemd — must agree: the same fds and names,
or the same errno. A disagreement raises, and atheris prints the input that caused it.
"""

from __future__ import annotations

import os
import socket
import sys

import atheris

with atheris.instrument_imports(include=["sockact"]):
    from sockact import daemon as ours

from systemd import daemon as theirs

VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
DECORATIONS = ["", " ", "\t", "+", "0", "00", "-", "0x", " +", "\n"]
_keep: list[socket.socket] = []


def _fds_3_to_5() -> None:
    """Listening sockets on fds 3, 4 and 5, as a manager would pass them (refuse to clobber anything)."""
    for fd in (3, 4, 5):
        try:
            os.fstat(fd)
        except OSError:
            pass
        else:
            sys.exit(f"fd {fd} is already open in the fuzzer; cannot place a socket there")
    made = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        made.append(sock)
    for fd, sock in zip((3, 4, 5), made):
        if sock.fileno() != fd:
            os.dup2(sock.fileno(), fd, inheritable=True)
    for sock in made:
        if sock.fileno() not in (3, 4, 5):
            sock.close()
        else:
            sock.detach()
    _keep.extend(socket.socket(fileno=fd) for fd in (3, 4, 5))


def _value(fdp: atheris.FuzzedDataProvider, kind: str) -> str | None:
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return None
    if mode == 3:
        return str(fdp.ConsumeUnicodeNoSurrogates(24)).replace("\0", "")
    prefix = str(DECORATIONS[fdp.ConsumeIntInRange(0, len(DECORATIONS) - 1)])
    suffix = str(DECORATIONS[fdp.ConsumeIntInRange(0, len(DECORATIONS) - 1)])
    if kind == "LISTEN_FDNAMES":
        names = [str(fdp.ConsumeUnicodeNoSurrogates(6)).replace("\0", "") for _ in range(fdp.ConsumeIntInRange(0, 6))]
        return ":".join(names) if mode == 1 else prefix + ":".join(names) + suffix
    if kind == "LISTEN_PID" and mode == 1:
        return prefix + str(os.getpid()) + suffix
    return prefix + str(fdp.ConsumeIntInRange(-2, 9)) + suffix


def _outcome(fn: object) -> object:
    try:
        return ("ok", sorted(fn(False).items()))  # type: ignore[operator]
    except OSError as exc:
        return ("errno", exc.errno)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    case = {var: _value(fdp, var) for var in VARS}
    for var, value in case.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    mine, libsystemd = _outcome(ours.listen_fds_with_names), _outcome(theirs.listen_fds_with_names)
    if mine != libsystemd:
        raise AssertionError(f"disagreement on {case!r}: sockact {mine!r}, libsystemd {libsystemd!r}")


def main() -> None:
    _fds_3_to_5()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
