"""sockact.serve._workers: threads reused across jobs, started beforehand, retired when idle, and a
close() that waits for running jobs. Real threads; every wait is on an event or bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from sockact._errors import StateError
from sockact.serve._workers import Workers


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_an_idle_thread_takes_the_next_job_instead_of_a_new_one() -> None:
    idents: list[int] = []
    with Workers() as workers:
        for _ in range(3):
            workers.submit(lambda: idents.append(threading.get_ident()))
            _until(lambda: workers.counts == (1, 1))  # the job ran and its thread waits again
    assert len(idents) == 3 and len(set(idents)) == 1


def test_busy_threads_make_the_next_job_start_one_more() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def job() -> None:
        started.release()
        release.wait(10)

    workers = Workers()
    try:
        for _ in range(3):
            workers.submit(job)
        for _ in range(3):
            assert started.acquire(timeout=5)  # all three run at once
        assert workers.counts == (3, 0)
    finally:
        release.set()
        workers.close()
    assert workers.counts[1] == 0


def test_prestarted_threads_wait_and_serve_without_starting_more() -> None:
    with Workers() as workers:
        workers.prestart(3)
        _until(lambda: workers.counts == (3, 3))
        done = threading.Event()
        workers.submit(done.set)
        assert done.wait(5)
        _until(lambda: workers.counts == (3, 3))


def test_a_thread_idle_past_the_timeout_exits() -> None:
    with Workers(idle_timeout=0.02) as workers:
        workers.prestart(2)
        _until(lambda: workers.counts == (0, 0))
        done = threading.Event()
        workers.submit(done.set)  # and a new one is started when work comes again
        assert done.wait(5)


def test_close_ends_idle_threads_at_once_a_busy_one_after_its_job_and_refuses_more() -> None:
    """close() does not wait for a running job (ThreadingHTTPServer's daemon threads are not joined
    either: a drain's hammer must not wait for a handler that sleeps)."""
    release = threading.Event()
    finished = threading.Event()

    def job() -> None:
        release.wait(10)
        finished.set()

    workers = Workers()
    workers.prestart(2)
    _until(lambda: workers.counts == (2, 2))
    workers.submit(job)
    workers.close()  # returns with the job still running
    assert not finished.is_set()
    _until(lambda: workers.counts == (1, 0))  # the idle one left; the busy one runs on
    release.set()
    assert finished.wait(10)
    _until(lambda: workers.counts == (0, 0))  # and it left after its job instead of waiting for more
    workers.close()  # idempotent
    with pytest.raises(StateError, match="after close"):
        workers.submit(job)


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout must be positive"):
        Workers(idle_timeout=0)
