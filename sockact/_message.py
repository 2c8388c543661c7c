"""sd_notify(3) message formatting and parsing. Pure: no environment, no syscalls.

A message is newline-separated ``KEY=VALUE`` assignments in one datagram. systemd reads at most
``NOTIFY_BUFFER_MAX`` bytes (4096 in systemd 252, ``PIPE_BUF``), so longer messages are refused
here before sending rather than cut by the manager.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ._errors import UsageError

__all__ = ["MAX_MESSAGE", "format_message", "parse_message", "validate_state"]

MAX_MESSAGE = 4096
_KEY = re.compile(r"[A-Z][A-Z0-9_]*\Z")


def _check_pair(key: str, value: str) -> None:
    if not _KEY.match(key):
        raise UsageError(
            f"invalid sd_notify key {key!r}: a key is an upper-case letter, then upper-case letters, digits "
            "and '_' (sd_notify(3))"
        )
    if "\n" in value or "\0" in value:
        raise UsageError(f"sd_notify value for {key} contains a newline or NUL: {value!r}; send it on one line")


def format_message(assignments: Mapping[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """Build one datagram from ``{KEY: value}`` (ints and bools become ``1``/``0``).

    Raises:
        UsageError: bad key, newline/NUL in a value, or longer than MAX_MESSAGE bytes.
    """
    pairs = assignments.items() if isinstance(assignments, Mapping) else assignments
    lines = []
    for key, raw in pairs:
        value = str(int(raw)) if isinstance(raw, bool) else str(raw)
        _check_pair(key, value)
        lines.append(f"{key}={value}")
    return validate_state("\n".join(lines))


def validate_state(state: str) -> bytes:
    """Check a ready-made ``KEY=VALUE\\n…`` string and encode it (sockact.notify's input rule)."""
    if not state:
        raise UsageError("empty sd_notify message; send at least one KEY=VALUE assignment")
    for line in state.split("\n"):
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise UsageError(f"sd_notify line {line!r} is not a KEY=VALUE assignment")
        _check_pair(key, value)
    data = state.encode()
    if len(data) > MAX_MESSAGE:
        raise UsageError(f"sd_notify message is {len(data)} bytes; the manager reads at most {MAX_MESSAGE}")
    return data


def parse_message(data: bytes) -> dict[str, str]:
    """Parse a received datagram the way systemd does: later keys win, lines without ``=`` ignored."""
    result: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, eq, value = line.partition("=")
        if eq and key:
            result[key] = value
    return result
