"""wrk, a load generator nobody here wrote and which never retries, as the reference client for
reload figures and tests: start it, stop it (SIGINT: wrk then prints its summary), read its summary
strictly.

wrk counts as a socket error every EOF or reset before a response is complete — including on a
keep-alive connection the server closed between two requests — and every response that is not
2xx/3xx as "Non-2xx or 3xx responses". A run that served nothing is not a clean run.
"""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Wrk", "WrkResult", "parse"]

_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_SOCKET = re.compile(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.M)
_NON2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$", re.M)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests: int
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    non2xx: int = 0

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx/3xx response (wrk counts an error per failed attempt)."""
        return self.socket_errors + self.non2xx

    def describe(self) -> str:
        return (
            f"{self.requests} requests, socket errors: connect {self.connect}, read {self.read}, "
            f"write {self.write}, timeout {self.timeout}; non-2xx {self.non2xx}"
        )


def parse(output: str) -> WrkResult:
    """wrk's summary as numbers.

    Raises:
        ValueError: no "N requests in T" line (wrk did not run to its summary), or a line about
            errors that is not one of the two wrk prints.
    """
    found = _REQUESTS.search(output)
    if found is None:
        raise ValueError(f"wrk printed no 'requests in' summary: {output[-500:]!r}")
    counts = {"requests": int(found.group(1))}
    sock = _SOCKET.search(output)
    if sock is not None:
        counts.update(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    elif "Socket errors" in output:
        raise ValueError(f"wrk's socket errors line is not in the expected form: {output[-500:]!r}")
    non2xx = _NON2XX.search(output)
    if non2xx is not None:
        counts["non2xx"] = int(non2xx.group(1))
    elif "Non-2xx" in output:
        raise ValueError(f"wrk's Non-2xx line is not in the expected form: {output[-500:]!r}")
    return WrkResult(**counts)


class Wrk:
    """``wrk`` running against ``url`` until :meth:`stop` (or ``max_seconds``); a context manager.

    ``close=True`` sends ``Connection: close`` on every request (a new connection each).
    """

    def __init__(
        self,
        url: str,
        *,
        wrk: str = "wrk",
        connections: int = 16,
        threads: int = 1,
        close: bool = False,
        max_seconds: int = 120,
        timeout: float = 5.0,
    ) -> None:
        self.argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max_seconds}s", f"--timeout={timeout:g}s"]
        if close:
            self.argv += ["-H", "Connection: close"]
        self.argv.append(url)
        self._proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> Wrk:
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def stop(self, timeout: float = 30.0) -> WrkResult:
        """Stop wrk (SIGINT: it prints its summary) and read it.

        Raises:
            ValueError: wrk printed no summary (see :func:`parse`).
        """
        if self._proc is None:
            raise RuntimeError("Wrk.stop() before start()")
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            self.output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.output, _ = proc.communicate()
        return parse(self.output)

    def __enter__(self) -> Wrk:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            try:
                self.stop()
            except ValueError:
                pass
