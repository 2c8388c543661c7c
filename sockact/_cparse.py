"""Integer parsing exactly as libsystemd 252 does it (parse-util.c: safe_atoi, safe_atolu, parse_pid).

Pure functions. libsystemd strips leading ``" \\t\\n\\r"``, accepts Python-style ``0b``/``0o``
prefixes, then calls ``strtol``/``strtoul`` with base 0 (so ``0x`` is hex and a leading ``0`` is
octal), refuses trailing characters with EINVAL and out-of-range values with ERANGE. Matching
this quirk for quirk is what lets a process read the same fds under sockact and libsystemd; the
test suite cross-checks it against the real library.
"""

from __future__ import annotations

import errno as _errno

__all__ = ["CParseError", "safe_atoi", "parse_pid", "safe_atou64"]

_WHITESPACE = " \t\n\r"  # systemd's WHITESPACE
_C_ISSPACE = " \t\n\v\f\r"  # what strtol() itself skips
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_ULONG_MAX = 2**64 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class CParseError(ValueError):
    """The text is not a number libsystemd accepts; ``errno`` is EINVAL or ERANGE."""

    def __init__(self, errno: int, text: str) -> None:
        super().__init__(f"{_errno.errorcode.get(errno, errno)}: {text!r}")
        self.errno = errno


def _mangle_base(s: str) -> tuple[str, int]:
    if s[:2] in ("0b", "0B"):
        return s[2:], 2
    if s[:2] in ("0o", "0O"):
        return s[2:], 8
    return s, 0


def _strto(s: str, base: int, *, unsigned: bool) -> tuple[int, bool, bool]:
    """C strtol/strtoul: (value, consumed everything, overflowed)."""
    i, n = 0, len(s)
    while i < n and s[i] in _C_ISSPACE:
        i += 1
    negative = False
    if i < n and s[i] in "+-":
        negative = s[i] == "-"
        i += 1
    if base in (0, 16) and s[i : i + 2] in ("0x", "0X") and s[i + 2 : i + 3].lower() in set(_DIGITS[:16]):
        base = 16
        i += 2
    elif base == 0:
        base = 8 if s[i : i + 1] == "0" else 10
    digits = _DIGITS[:base]
    j = i
    while j < n and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, False, False  # no conversion at all: endptr == s
    value = int(s[i:j], base)
    if unsigned:
        if value > _ULONG_MAX:
            return _ULONG_MAX, j == n, True
        if negative:
            value = (_ULONG_MAX + 1 - value) % (_ULONG_MAX + 1)
        return value, j == n, False
    if negative:
        value = -value
    if not _LONG_MIN <= value <= _LONG_MAX:
        return (_LONG_MAX if value > 0 else _LONG_MIN), j == n, True
    return value, j == n, False


def _parse(text: str, *, unsigned: bool) -> int:
    s, base = _mangle_base(text.lstrip(_WHITESPACE))
    value, complete, overflow = _strto(s, base, unsigned=unsigned)
    if overflow:
        raise CParseError(_errno.ERANGE, text)
    if not complete:
        raise CParseError(_errno.EINVAL, text)
    if unsigned and value != 0 and s.lstrip(_C_ISSPACE)[:1] == "-":
        raise CParseError(_errno.ERANGE, text)
    return value


def safe_atoi(text: str) -> int:
    """Parse a C ``int`` as libsystemd's ``safe_atoi()``; raises CParseError."""
    value = _parse(text, unsigned=False)
    if not _INT_MIN <= value <= _INT_MAX:
        raise CParseError(_errno.ERANGE, text)
    return value


def safe_atou64(text: str) -> int:
    """Parse an unsigned 64-bit number as libsystemd's ``safe_atou64()``; raises CParseError."""
    return _parse(text, unsigned=True)


def parse_pid(text: str) -> int:
    """Parse a pid as libsystemd's ``parse_pid()``: positive and fitting in ``pid_t``."""
    value = _parse(text, unsigned=True)
    if value <= 0 or value > _INT_MAX:
        raise CParseError(_errno.ERANGE, text)
    return value
