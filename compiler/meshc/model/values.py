"""Scalar value syntax shared by every stage: Go durations and Kubernetes label keys and values.

Durations: `parse_go_duration` is Go's `time.ParseDuration` (what istiod, Envoy's Istio
translation and Kubernetes CEL `duration()` use): an optional sign, then one or more
`<number><unit>` parts with units ns, us, µs (U+00B5), μs (U+03BC), ms, s, m, h; `0` alone needs no
unit; the result is int64 nanoseconds (beyond it is an error); a part's fraction is converted as Go
does, through float64, and truncated. Every other duration reader calls it: `duration_nanos` (None
instead of the error) and, above this package, the Envoy conversions, the Istio rules and CEL.
Protocols: `HTTP_FAMILY` (Istio port protocols carried as HTTP) and `TLS_FAMILY`, upper case.
Labels: `label_key_error` / `label_value_error` are Kubernetes' label syntax as
`labels.Instance.Validate` applies it (istio-facts.md 4.1).
Invariants: pure functions; results of the duration parser are cached per string.
"""

from __future__ import annotations

import re
from functools import lru_cache

NANOS_PER_UNIT = {
    "ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
    "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_TWO_63 = 1 << 63

HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
TLS_FAMILY = frozenset({"HTTPS", "TLS"})


def parse_go_duration(text: str) -> int:
    """Nanoseconds for `text` following Go's `time.ParseDuration`; ValueError (Go's message) otherwise."""
    parsed = _parse(text)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    return parsed


def duration_nanos(text: str) -> int | None:
    """Go duration ('1h', '1m30s', '2.5s', '-1s') -> nanoseconds; None when Go would not parse it."""
    parsed = _parse(text)
    return None if isinstance(parsed, str) else parsed


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


@lru_cache(maxsize=4096)  # a few distinct strings, parsed for every cluster and every CEL rule
def _parse(text: str) -> int | str:
    """Nanoseconds, or the error message (a string). A line-by-line port of Go's ParseDuration
    (time/format.go); messages quote `text` as written."""
    invalid = f'time: invalid duration "{text}"'
    rest, negative = text, False
    if rest[:1] in ("+", "-"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return invalid
    total = 0
    while rest:
        if not (rest[0] == "." or _is_digit(rest[0])):
            return invalid
        end = 0
        while end < len(rest) and _is_digit(rest[end]):
            end += 1
        digits = rest[:end].lstrip("0")
        if len(digits) > 19 or int(digits or "0") > _TWO_63:  # Go's leadingInt overflows
            return invalid
        whole = int(digits or "0")
        pre, rest = end > 0, rest[end:]
        fraction, scale, post = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            end = 0
            overflow = False
            while end < len(rest) and _is_digit(rest[end]):
                if not overflow:  # Go's leadingFraction: digits past int64 range are dropped
                    digit = int(rest[end])
                    if fraction > (_TWO_63 - 1) // 10 or fraction * 10 + digit > _TWO_63:
                        overflow = True
                    else:
                        fraction, scale = fraction * 10 + digit, scale * 10
                end += 1
            post, rest = end > 0, rest[end:]
        if not pre and not post:
            return invalid
        end = 0
        while end < len(rest) and not (rest[end] == "." or _is_digit(rest[end])):
            end += 1
        if end == 0:
            return f'time: missing unit in duration "{text}"'
        unit_name, rest = rest[:end], rest[end:]
        unit = NANOS_PER_UNIT.get(unit_name)
        if unit is None:
            return f'time: unknown unit "{unit_name}" in duration "{text}"'
        if whole > _TWO_63 // unit:
            return invalid
        value = whole * unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))  # float64, as Go computes it
            if value > _TWO_63:
                return invalid
        total += value
        if total > _TWO_63:
            return invalid
    if negative:
        return -total
    if total > _TWO_63 - 1:
        return invalid
    return total


# --------------------------------------------------------------------------- label keys and values

_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(rf"(?:({_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?({_QUALIFIED})")
_LABEL_VALUE = re.compile(rf"(?:{_QUALIFIED})?")


def label_key_error(key: str) -> str | None:
    """`[prefix/]name`: a DNS prefix of at most 253 characters, a qualified name of at most 63."""
    match = _LABEL_KEY.fullmatch(key)
    if match is None:
        return f"invalid label key: {key!r}"
    if match.group(1) and len(match.group(1)) > 253:
        return f"invalid label key: {key!r} (DNS prefix is too long)"
    if len(match.group(2)) > 63:
        return f"invalid label key: {key!r} (name is too long)"
    return None


def is_label_value(value: str) -> bool:
    """The label-value alphabet (empty, or alphanumerics with '-', '_' or '.' inside); any length."""
    return _LABEL_VALUE.fullmatch(value) is not None


def label_value_error(value: str) -> str | None:
    """Kubernetes' IsValidLabelValue: at most 63 characters of the qualified-name alphabet."""
    if len(value) > 63:
        return f"invalid label value: {value[:70]!r}... (must be at most 63 characters)"
    if not is_label_value(value):
        return (f"invalid label value: {value!r} (letters, digits, '-', '_' and '.', starting and ending "
                "with a letter or digit)")
    return None
