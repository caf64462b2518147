"""Kubernetes CEL library pieces the engines lack or implement differently, plus source analysis.

Input:  CEL source strings (for the analysis helpers) and CEL argument values (for the functions).
Output: rewritten sources, ``self`` field projections, and the extension functions:
  * ``cel_substring`` - cel-go strings extension ``<string>.substring(start[, end])``: indices
    are Unicode code points; negative or > size indices raise "index out of range: N", and
    start > end raises "invalid substring range. start: S, end: E";
  * ``go_duration`` / ``go_parse_duration`` - ``duration(<string>)`` with Go's
    ``time.ParseDuration`` grammar (units ns, us, µs, μs, ms, s, m, h; optional sign; "0";
    overflow beyond int64 nanoseconds is an error), parsed by `meshc.model.values`;
  * ``RegexCache.matches`` - ``matches()`` with RE2 semantics (the engine Kubernetes uses), each
    pattern compiled once;
  * ``cel_is_ip`` / ``cel_is_cidr`` - ``isIP(<string>)`` and ``isCIDR(<string>)`` of the Kubernetes
    CEL IP and CIDR libraries (k8s.io/apiserver pkg/cel/library/ip.go, cidr.go: an IPv4 or IPv6
    address, no zone, no IPv4-mapped IPv6 form; a prefix in CIDR notation); Gateway API's CRDs call
    isIP on hostnames.

Invariants: the functions are pure and raise ``TypeError`` (no such overload) or ``ValueError``
(evaluation error) instead of returning error values; string literals in sources are never
rewritten. No finding codes are produced here.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any

import re2

from meshc.model.values import parse_go_duration

GO_DURATION_FN = "meshcGoDuration"
IS_IP_FN = "isIP"
IS_CIDR_FN = "isCIDR"
MATCHES_FN = "meshcMatches"
SUBSTRING_FN = "substring"
# identifier in the source -> (replacement, also rewrite method-call form `x.name(...)`)
CALL_REWRITES = {"duration": (GO_DURATION_FN, False), "matches": (MATCHES_FN, True)}
PUBLIC_NAMES = {GO_DURATION_FN: "duration", MATCHES_FN: "matches"}

_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_NUMBER = re.compile(r"[0-9][0-9a-zA-Z_.]*")
_DURATION_LITERAL_CALL = re.compile(r"""\s*\(\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\)""")
_STRING_PREFIXES = frozenset({"r", "b", "rb", "br"})
_REGEX_CACHE_LIMIT = 4096


# --------------------------------------------------------------------------- functions


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:
        return None  # a zone is not allowed
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None
    return addr


def cel_is_ip(text: object) -> bool:
    """``isIP(<string>)``: an IPv4 or IPv6 address (Kubernetes CEL IP library)."""
    if not isinstance(text, str):
        raise TypeError("no such overload: isIP(string)")
    return _address(text) is not None


def cel_is_cidr(text: object) -> bool:
    """``isCIDR(<string>)``: an address and a prefix length (Kubernetes CEL CIDR library)."""
    if not isinstance(text, str):
        raise TypeError("no such overload: isCIDR(string)")
    addr, slash, bits = text.partition("/")
    if not slash or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
        return False
    found = _address(addr)
    return found is not None and int(bits) <= found.max_prefixlen


def cel_substring(text: object, start: object, end: object = None) -> str:
    """``<string>.substring(start[, end])`` over Unicode code points, as in cel-go."""
    if not isinstance(text, str) or not _is_int(start) or not (end is None or _is_int(end)):
        raise TypeError("no such overload: substring(string, int[, int])")
    length = len(text)
    if end is None:
        if start < 0 or start > length:  # type: ignore[operator]
            raise ValueError(f"index out of range: {start}")
        return text[start:]  # type: ignore[index]
    if start > end:  # type: ignore[operator]
        raise ValueError(f"invalid substring range. start: {start}, end: {end}")
    for index in (start, end):
        if index < 0 or index > length:  # type: ignore[operator]
            raise ValueError(f"index out of range: {index}")
    return text[start:end]  # type: ignore[index]


def go_parse_duration(text: str) -> int:
    """Nanoseconds for ``text`` following Go's ``time.ParseDuration``; ValueError otherwise."""
    return parse_go_duration(text)


def go_duration(value: object) -> datetime.timedelta:
    """CEL ``duration()`` with Go parsing; keeps microseconds (truncated toward zero)."""
    if isinstance(value, datetime.timedelta):
        return value
    if not isinstance(value, str):
        raise TypeError("no such overload: duration(string)")
    nanos = go_parse_duration(value)
    micros = abs(nanos) // 1000
    return datetime.timedelta(microseconds=micros if nanos >= 0 else -micros)


class RegexCache:
    """``<string>.matches(<pattern>)`` with RE2; compiled patterns are kept (bounded)."""

    def __init__(self) -> None:
        self._compiled: dict[str, Any] = {}
        self._options = re2.Options()
        self._options.log_errors = False

    def matches(self, text: object, pattern: object) -> bool:
        if not isinstance(text, str) or not isinstance(pattern, str):
            raise TypeError("no such overload: matches(string, string)")
        compiled = self._compiled.get(pattern)
        if compiled is None:
            compiled = self._compile(pattern)
        return compiled.search(text) is not None

    def _compile(self, pattern: str) -> Any:
        try:
            compiled = python_equivalent(pattern) or re2.compile(pattern, self._options)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            raise ValueError(f"invalid regular expression {pattern!r}: {reason}") from None
        if len(self._compiled) >= _REGEX_CACHE_LIMIT:
            self._compiled.clear()
        self._compiled[pattern] = compiled
        return compiled


def python_equivalent(pattern: str) -> re.Pattern[str] | None:
    """A Python ``re`` pattern with the same RE2 semantics, for a conservative subset.

    Accepted: literals, ``.``, classes without nested ``[``, groups ``(...)``/``(?:...)``,
    alternation, anchors and quantifiers, and escapes of punctuation. RE2's ``$`` (end of
    text) becomes ``\\Z``. Anything else (``\\d``, ``\\w``, flags, named groups, ``{,n}``...)
    returns None so that the caller uses RE2 itself.
    """
    out: list[str] = []
    pos, class_start = 0, -1
    while pos < len(pattern):
        char, nxt = pattern[pos], pattern[pos + 1:pos + 2]
        if char == "\\":
            if not nxt or nxt.isalnum() or nxt == "_" or not nxt.isascii():
                return None
            out.append(pattern[pos:pos + 2])
            pos += 2
            continue
        if class_start >= 0:
            if char == "[":
                return None
            if char == "]" and pos > class_start:
                class_start = -1
        elif char == "[":
            class_start = pos + 1 + (nxt == "^")
        elif char == "$":
            char = "\\Z"
        elif (char == "(" and nxt == "?" and pattern[pos + 2:pos + 3] != ":") or \
                (char == "{" and nxt == ",") or (char in "*+?}" and nxt == "+"):
            return None
        out.append(char)
        pos += 1
    try:
        return re.compile("".join(out)) if class_start < 0 else None
    except re.error:
        return None


# --------------------------------------------------------------------------- source analysis


def scan_identifiers(source: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every identifier outside string literals, in order."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while pos < len(source):
        if source[pos] in "'\"":
            pos = _skip_string(source, pos, raw=False)
            continue
        ident = _IDENT.match(source, pos)
        if ident:
            name, end = ident.group(), ident.end()
            if end < len(source) and source[end] in "'\"" and name.lower() in _STRING_PREFIXES:
                pos = _skip_string(source, end, raw="r" in name.lower())
                continue
            found.append((pos, end, name))
            pos = end
            continue
        number = _NUMBER.match(source, pos)
        pos = number.end() if number else pos + 1
    return found


def _skip_string(source: str, pos: int, raw: bool) -> int:
    quote = source[pos]
    delim = quote * 3 if source.startswith(quote * 3, pos) else quote
    cursor = pos + len(delim)
    while cursor < len(source):
        if not raw and source[cursor] == "\\":
            cursor += 2
        elif source.startswith(delim, cursor):
            return cursor + len(delim)
        else:
            cursor += 1
    return len(source)


def _neighbour(source: str, pos: int, step: int) -> str:
    """First non-blank character from ``pos`` walking by ``step`` ('' past either end)."""
    while 0 <= pos < len(source):
        if not source[pos].isspace():
            return source[pos]
        pos += step
    return ""


def rewrite_calls(source: str) -> str:
    """Route ``duration(...)`` and ``matches(...)`` calls to the Kubernetes-exact functions.

    ``duration('<literal>')`` with a valid Go duration is folded to the canonical
    ``duration('<N>us')``, which every engine parses the same way natively.
    """
    pieces: list[str] = []
    last = 0
    for start, end, name in scan_identifiers(source):
        target = CALL_REWRITES.get(name)
        if target is None or _neighbour(source, end, 1) != "(" or start < last:
            continue
        replacement, method_form = target
        if not method_form and _neighbour(source, start - 1, -1) == ".":
            continue
        folded = _fold_duration_literal(source, end) if name == "duration" else None
        if folded is not None:
            pieces.extend((source[last:start], folded[0]))
            last = folded[1]
        else:
            pieces.extend((source[last:start], replacement))
            last = end
    pieces.append(source[last:])
    return "".join(pieces)


def _fold_duration_literal(source: str, name_end: int) -> tuple[str, int] | None:
    """(canonical call, end offset) for ``duration('<valid Go duration>')`` at ``name_end``."""
    literal = _DURATION_LITERAL_CALL.match(source, name_end)
    if literal is None:
        return None
    text = literal.group(1) if literal.group(1) is not None else literal.group(2)
    try:
        nanos = go_parse_duration(text)
    except ValueError:
        return None
    micros = abs(nanos) // 1000 * (1 if nanos >= 0 else -1)
    return f"duration('{micros}us')", literal.end()


def self_projection(source: str) -> frozenset[str] | None:
    """Fields of ``self`` the expression can observe, or None when it may observe all of it.

    Only ``self.<field>`` uses that are not method calls are projectable; any other use of
    ``self`` (``self.all(...)``, ``size(self)``, ``self[...]``) needs the whole value.
    """
    idents = scan_identifiers(source)
    fields: set[str] = set()
    for index, (start, end, name) in enumerate(idents):
        if name != "self" or _neighbour(source, start - 1, -1) == ".":
            continue
        if _neighbour(source, end, 1) != "." or index + 1 >= len(idents):
            return None
        f_start, f_end, field = idents[index + 1]
        if source[end:f_start].strip() != "." or _neighbour(source, f_end, 1) == "(":
            return None
        fields.add(field)
    return frozenset(fields)


def references_old_self(source: str) -> bool:
    return any(name == "oldSelf" for _, _, name in scan_identifiers(source))
