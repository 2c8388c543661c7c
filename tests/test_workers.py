"""sockact.serve._workers: threads reused across jobs, started beforehand, retired when idle, and a
close() that waits for running jobs. Real threads; every wait is on an event or bounded."""

from __future__ import annotations

import threading
import time

import pytest

from sockact._errors import StateError
from sockact.serve._workers import Workers

from helpers import until


def test_an_idle_thread_takes_the_next_job_instead_of_a_new_one() -> None:
    idents: list[int] = []
    with Workers() as workers:
        for _ in range(3):
            workers.submit(lambda: idents.append(threading.get_ident()))
            until(lambda: workers.counts == (1, 1))  # the job ran and its thread waits again
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
        until(lambda: workers.counts == (3, 3))
        done = threading.Event()
        workers.submit(done.set)
        assert done.wait(5)
        until(lambda: workers.counts == (3, 3))


def test_a_thread_idle_past_the_timeout_exits() -> None:
    with Workers(idle_timeout=0.5) as workers:
        workers.prestart(2)
        assert workers.counts[0] == 2  # started; none can have waited 0.5 s yet
        until(lambda: workers.counts == (0, 0))
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
    until(lambda: workers.counts == (2, 2))
    workers.submit(job)
    workers.close()  # returns with the job still running
    assert not finished.is_set()
    until(lambda: workers.counts == (1, 0))  # the idle one left; the busy one runs on
    release.set()
    assert finished.wait(10)
    until(lambda: workers.counts == (0, 0))  # and it left after its job instead of waiting for more
    workers.close()  # idempotent
    with pytest.raises(StateError, match="after close"):
        workers.submit(job)


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout must be positive"):
        Workers(idle_timeout=0)


def test_no_job_is_lost_when_idle_threads_time_out_as_jobs_come() -> None:
    """The race the idle accounting exists for: a thread timing out just as a job is promised to
    it must take that job, not leave. 4 submitters pause for the idle timeout every 7 jobs (pacing,
    so that timeouts and submits meet; not a synchronisation), 5 rounds of 800 jobs, each awaited."""
    timeout = 0.0002
    done = threading.Semaphore(0)

    def submitter(workers: Workers) -> None:
        for i in range(200):
            workers.submit(done.release)
            if i % 7 == 0:
                time.sleep(timeout)

    with Workers(idle_timeout=timeout) as workers:
        for _ in range(5):
            threads = [threading.Thread(target=submitter, args=(workers,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            lost = sum(1 for _ in range(800) if not done.acquire(timeout=2))
            assert lost == 0


def test_each_job_runs_in_a_fresh_context() -> None:
    """A ContextVar one connection's handler set is not seen by the next one its thread serves."""
    import contextvars

    user: contextvars.ContextVar[str | None] = contextvars.ContextVar("user", default=None)
    seen: list[str | None] = []
    with Workers() as workers:
        for name in ("alice", "bob"):
            done = threading.Event()

            def job(name: str = name, done: threading.Event = done) -> None:
                seen.append(user.get())
                user.set(name)
                done.set()

            workers.submit(job)
            assert done.wait(5)
            until(lambda: workers.counts == (1, 1))  # the same thread serves the next one
    assert seen == [None, None]


def test_a_forked_child_starts_its_own_threads() -> None:
    """fork() copies only the forking thread: the child must not hand its jobs to the parent's
    idle threads, which do not exist there (a pre-fork server builds, then forks)."""
    import os
    import warnings

    with Workers() as workers:
        workers.prestart(2)
        until(lambda: workers.counts == (2, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
            pid = os.fork()
        if pid == 0:  # the child: only os._exit, whatever happens
            code = 1
            try:
                done = threading.Event()
                fresh = workers.counts == (0, 0)
                workers.submit(done.set)
                code = 0 if fresh and done.wait(5) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_close_wait_waits_for_a_running_job() -> None:
    """close(wait=True): ThreadingHTTPServer's server_close() with non-daemon threads and
    block_on_close waits for its handlers."""
    release = threading.Event()
    workers = Workers(daemon=False)
    workers.submit(lambda: release.wait(10))
    closer = threading.Thread(target=workers.close, kwargs={"wait": True})
    closer.start()
    until(lambda: workers._closed)
    assert closer.is_alive()  # the job still waits for release, so close() cannot have returned
    release.set()
    closer.join(10)
    assert not closer.is_alive()


def test_close_wait_from_a_job_does_not_wait_for_that_job() -> None:
    """A handler calling server_close() (close(wait=True)) from its own thread must not deadlock."""
    done = threading.Event()
    workers = Workers(daemon=False)

    def job() -> None:
        workers.close(wait=True)
        done.set()

    workers.submit(job)
    assert done.wait(5)
