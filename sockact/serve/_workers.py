"""Threads that serve one connection at a time and then wait for the next, for :class:`HTTPServer`.

``socketserver.ThreadingMixIn`` starts a thread per connection, and ``Thread.start()`` waits until
the new thread has run: under load that is two turns of the GIL behind every busy handler thread
(up to ``sys.getswitchinterval()``, 5 ms, each), taken by the accept loop for every connection. With
16 keep-alive clients busy, clients opening a connection per request waited 51 ms (median) for
their answer, against 17 ms when the connection goes to a thread that is already waiting here. The
same wait hits every client at once right after a hand-over, when all of them reconnect to the
successor, whose threads can be started beforehand (``prestart``).
"""

from __future__ import annotations

import contextvars
import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable

from .._errors import StateError

__all__ = ["Workers"]

Job = Callable[[], object]


class Workers:
    """As many threads as jobs running, and the idle ones waiting for the next job; an idle thread
    exits after ``idle_timeout`` seconds without one. Each job runs in a fresh ``contextvars``
    context, as it would in a thread of its own (a ``threading.local`` does carry over).

    A process forked from this one starts with no threads here (a fork copies only the forking
    thread): the child forgets the parent's, and starts its own as jobs come.

    A context manager: :meth:`close` ends the idle threads, and a busy one once its job is done.
    ``daemon`` threads are not waited for, as ``ThreadingHTTPServer``'s (``daemon_threads``): its
    ``server_close()`` does not wait for a handler either, so a drain's hammer ends the process under
    a handler still sleeping. ``close(wait=True)`` waits for running jobs (``block_on_close`` with
    non-daemon threads).
    """

    def __init__(self, idle_timeout: float = 60.0, name: str = "sockact-worker", daemon: bool = True) -> None:
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
        self.idle_timeout = idle_timeout
        self.name = name
        self.daemon = daemon
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._idle = 0  # waiting for a job and not yet promised one
        self._running = 0
        self._threads = 0
        self._closed = False
        self._numbers = itertools.count(1)  # thread names, so that %(threadName)s tells them apart
        _EVERY.add(self)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def counts(self) -> tuple[int, int]:
        """(threads, idle threads)."""
        with self._lock:
            return self._threads, self._idle

    def submit(self, job: Job) -> None:
        """Run ``job`` in an idle thread, or in a new one when none is idle.

        Raises:
            StateError: after :meth:`close`.
        """
        with self._lock:
            if self._closed:
                raise StateError("Workers.submit() after close(): the server was closed")
            self._running += 1
            if self._idle:
                self._idle -= 1  # that thread is promised this job: it is in (or on its way to) get()
                self._jobs.put(job)
                return
            self._threads += 1
        self._start(job)

    def prestart(self, count: int) -> None:
        """Start ``count`` idle threads now (say, before READY=1), so the first clients find them."""
        for _ in range(count):
            with self._lock:
                if self._closed:
                    return
                self._threads += 1
            self._start(None)

    def _start(self, job: Job | None) -> None:
        name = f"{self.name}-{next(self._numbers)}"
        try:
            threading.Thread(target=self._work, args=(job,), name=name, daemon=self.daemon).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
                if job is not None:
                    self._done()
            raise

    def _done(self) -> None:
        """A job ended (under the lock)."""
        self._running -= 1
        self._finished.notify_all()

    def _work(self, job: Job | None) -> None:
        _current.pool = self
        try:
            while True:
                if job is not None:
                    try:
                        contextvars.Context().run(job)
                    finally:
                        job = None  # not kept alive (its socket, its server) while this thread waits
                        with self._lock:
                            self._done()
                with self._lock:
                    if self._closed:
                        return
                    self._idle += 1
                job = self._next()
                if job is None:
                    return
        finally:
            with self._lock:
                self._threads -= 1

    def _next(self) -> Job | None:
        """The next job, or None to exit: closed, or idle for ``idle_timeout`` and promised nothing."""
        while True:
            try:
                return self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # some idle thread is not promised a job: this one leaves
                        self._idle -= 1
                        return None
                # every idle thread is promised a job, this one too: it is in the queue or on its way

    def _in_own_thread(self) -> bool:
        """Whether the calling thread is one of this pool's."""
        return getattr(_current, "pool", None) is self

    def _forget_threads(self) -> None:
        """In a forked child: of the parent's threads only the forking one exists here (one of ours,
        running its job, if a job forked), and the lock may be held."""
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._idle = 0
        self._running = self._threads = 1 if self._in_own_thread() else 0

    def close(self, wait: bool = False) -> None:
        """Refuse further jobs; idle threads exit now, busy ones after their job. ``wait``: return
        only once no other job runs (called from a job, it does not wait for that one). Idempotent."""
        mine = 1 if self._in_own_thread() else 0
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
            for _ in range(idle):
                self._jobs.put(None)
            while wait and self._running > mine:
                self._finished.wait()


_EVERY: weakref.WeakSet[Workers] = weakref.WeakSet()
_current = threading.local()  # .pool: the Workers whose thread this is


def _after_fork_in_child() -> None:
    for workers in list(_EVERY):
        workers._forget_threads()


os.register_at_fork(after_in_child=_after_fork_in_child)
