"""Input fuzzing: properties of the notify message format, and the coverage-guided LISTEN_* fuzzer
(fuzz/listen_env.py, atheris) cross-checked against libsystemd for 100,000 inputs in CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockact import UsageError
from sockact._message import format_message, parse_message, validate_state

from conftest import need_module
from helpers import ROOT, child_env

KEYS = st.from_regex(r"[A-Z][A-Z0-9_]{0,11}", fullmatch=True)
VALUES = st.text(max_size=40).filter(lambda v: "\n" not in v and "\0" not in v)


@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=6))
def test_format_parse_round_trip(fields: dict[str, str]) -> None:
    """Any valid assignments format to a message that parses back to them and passes validation."""
    data = format_message(fields)
    assert parse_message(data) == fields
    if len(data) <= 4096:
        assert validate_state(data.decode()) == data


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), min_size=1, max_size=4))
def test_format_refuses_with_its_own_error_only(fields: dict[str, str]) -> None:
    """Arbitrary keys and values: a message, or sockact's UsageError naming the problem — nothing else."""
    try:
        data = format_message(fields)
    except UsageError as exc:
        assert "sd_notify" in str(exc)
        return
    assert parse_message(data) == fields


@given(st.binary(max_size=200))
def test_parse_is_total(data: bytes) -> None:
    """What a receiver gets from anyone: parsed to a dict of str, never an exception."""
    fields = parse_message(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@given(st.text(max_size=60))
def test_validate_state_refuses_with_its_own_error_only(state: str) -> None:
    try:
        validate_state(state)
    except UsageError:
        pass


@pytest.mark.peer
def test_atheris_listen_env_agrees_with_libsystemd() -> None:
    """100,000 coverage-guided inputs: sockact and libsystemd accept and reject the same LISTEN_*."""
    need_module("atheris")
    need_module("systemd.daemon")
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "fuzz", "listen_env.py"),
            "-runs=100000",
            "-seed=1",
            "-print_final_stats=1",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.join(ROOT, "fuzz"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Done 100000 runs" in out.stderr, out.stderr[-3000:]
