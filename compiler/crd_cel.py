"""CEL engine for CRD ``x-kubernetes-validations`` rules, with Kubernetes semantics.

Input:  CEL source strings taken from a CRD schema, and plain JSON-like Python values
        (dict/list/str/int/float/bool/None) to bind to ``self``.
Output: ``CelProgram`` objects whose ``run(bindings)`` returns the Python result of the
        expression or raises ``CelEvalError`` with a human-readable reason, and
        ``CompileFailure`` values for sources no engine can compile.

Invariants:
* Each distinct source is compiled once per ``CelCompiler`` (cache held by the instance).
* The Rust engine (``cel``, package common-expression-language) is preferred; cel-python
  (``celpy``) is used only for sources the Rust engine cannot parse or that call functions it
  does not provide. A source neither can handle yields a ``CompileFailure``, never a pass.
* Kubernetes behaviour is reproduced where the engines differ from cel-go:
  ``<string>.substring(start[, end])`` follows the cel-go strings extension (code points,
  error when out of range), and ``duration(<string>)`` follows Go's ``time.ParseDuration``
  grammar (the Rust engine alone would accept e.g. ``"1e3ms"`` or ``"1h1"``).
  Durations are carried with microsecond resolution (truncated toward zero).
* Failures raised by these extension functions are reported through the exception; the
  matching WARNING log records the Rust engine emits on logger ``cel`` are filtered out so that
  they do not leak onto stderr.

Findings codes are assigned by the caller (compiler.crd_sites): this module only evaluates.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import cel
import celpy
from celpy import celtypes

GO_DURATION_FN = "meshcGoDuration"
SUBSTRING_FN = "substring"
EXTENSION_FUNCTIONS = frozenset({GO_DURATION_FN, SUBSTRING_FN})
# Functions and macros the Rust engine implements natively (operators are recognised by shape).
RUST_NATIVE_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
    "bytes", "bool", "timestamp", "duration", "dyn", "type", "has", "all", "exists", "exists_one",
    "map", "filter", "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek",
    "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
})
CELPY_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})

_NS_PER_UNIT = {
    "ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
    "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_GO_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_NUMBER = re.compile(r"[0-9][0-9a-zA-Z_.]*")
_STRING_PREFIXES = frozenset({"r", "b", "rb", "br"})
_TWO_63 = 2**63
_PY_FAILURE = re.compile(r"Function '(\w+)' error: Python function call failed: \w+: ")


class CelEvalError(Exception):
    """A CEL expression could not be evaluated; str() is the reason."""


# --------------------------------------------------------------------------- extensions


def cel_substring(text: object, start: object, end: object = None) -> str:
    """Kubernetes/cel-go ``<string>.substring(start[, end])`` over Unicode code points."""
    if not isinstance(text, str) or not _is_int(start) or (end is not None and not _is_int(end)):
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def go_parse_duration(text: str) -> int:
    """Nanoseconds for ``text`` following Go's ``time.ParseDuration``; ValueError otherwise."""
    rest, negative = text, False
    if rest[:1] in ("+", "-") and rest:
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0, 0
    while pos < len(rest):
        match = _GO_DURATION_PART.match(rest, pos)
        assert match is not None  # the pattern matches the empty string
        total += _duration_part(text, match)
        if total > _TWO_63:
            raise ValueError(f'time: invalid duration "{text}"')
        pos = match.end()
    if negative:
        return -total
    if total > _TWO_63 - 1:
        raise ValueError(f'time: invalid duration "{text}"')
    return total


def _duration_part(text: str, match: re.Match[str]) -> int:
    whole, frac, unit = match.group(1), match.group(2), match.group(3)
    if not whole and not frac:
        raise ValueError(f'time: invalid duration "{text}"')
    if not unit:
        raise ValueError(f'time: missing unit in duration "{text}"')
    scale = _NS_PER_UNIT.get(unit)
    if scale is None:
        raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
    whole_value = int(whole or "0")
    if whole_value > _TWO_63 // scale:
        raise ValueError(f'time: invalid duration "{text}"')
    fraction = int(frac) * scale // 10 ** len(frac) if frac else 0
    return whole_value * scale + fraction


def go_duration(value: object) -> datetime.timedelta:
    """CEL ``duration()`` with Go parsing; keeps microseconds (truncated toward zero)."""
    if isinstance(value, datetime.timedelta):
        return value
    if not isinstance(value, str):
        raise TypeError("no such overload: duration(string)")
    nanos = go_parse_duration(value)
    micros = abs(nanos) // 1000
    return datetime.timedelta(microseconds=micros if nanos >= 0 else -micros)


# --------------------------------------------------------------------------- source analysis


def scan_identifiers(source: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every identifier outside string literals, in order."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char in "'\"":
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
    """First non-blank character from ``pos`` walking by ``step`` ('' at either end)."""
    while 0 <= pos < len(source):
        if not source[pos].isspace():
            return source[pos]
        pos += step
    return ""


def rewrite_duration_calls(source: str) -> str:
    """Route global ``duration(...)`` calls to the Go-compatible extension function."""
    pieces: list[str] = []
    last = 0
    for start, end, name in scan_identifiers(source):
        if name == "duration" and _neighbour(source, end, 1) == "(" \
                and _neighbour(source, start - 1, -1) != ".":
            pieces.extend((source[last:start], GO_DURATION_FN))
            last = end
    pieces.append(source[last:])
    return "".join(pieces)


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


# --------------------------------------------------------------------------- programs


class Bindings:
    """Variables for one evaluation; each engine's representation is built lazily once."""

    __slots__ = ("value", "with_old_self", "_rust", "_celpy")

    def __init__(self, value: Any, with_old_self: bool = False) -> None:
        self.value = value
        self.with_old_self = with_old_self
        self._rust: cel.Context | None = None
        self._celpy: dict[str, Any] | None = None

    def rust(self, functions: dict[str, Callable[..., Any]]) -> cel.Context:
        if self._rust is None:
            variables = {"self": self.value}
            if self.with_old_self:
                variables["oldSelf"] = cel.OptionalValue.none()
            self._rust = cel.Context(variables=variables, functions=functions)
        return self._rust

    def celpy(self) -> dict[str, Any]:
        if self._celpy is None:
            self._celpy = {"self": celpy.json_to_cel(self.value)}
            if self.with_old_self:
                self._celpy["oldSelf"] = None
        return self._celpy


class CelProgram(Protocol):
    engine: str

    def run(self, bindings: Bindings) -> Any: ...


@dataclass(frozen=True)
class CompileFailure:
    source: str
    reason: str


class _RustProgram:
    engine = "cel"

    def __init__(self, program: Any, functions: dict[str, Callable[..., Any]]) -> None:
        self._program = program
        self._functions = functions

    def run(self, bindings: Bindings) -> Any:
        try:
            return self._program.execute(bindings.rust(self._functions))
        except KeyError as exc:
            raise CelEvalError(f"no such key: {exc.args[0] if exc.args else exc}") from None
        except Exception as exc:  # the engine raises RuntimeError/TypeError/ValueError/...
            raise CelEvalError(_clean_reason(str(exc))) from None


class _PyProgram:
    engine = "celpy"

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def run(self, bindings: Bindings) -> Any:
        try:
            result = self._runner.evaluate(bindings.celpy())
        except celpy.CELEvalError as exc:
            raise CelEvalError(_celpy_reason(exc)) from None
        except Exception as exc:
            raise CelEvalError(_clean_reason(str(exc))) from None
        if isinstance(result, celpy.CELEvalError):
            raise CelEvalError(_celpy_reason(result))
        return _from_celpy(result)


def _from_celpy(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value


def _clean_reason(text: str) -> str:
    text = text.replace(GO_DURATION_FN, "duration")
    text = text.split(" Check function arguments")[0].split(". Check that the variable")[0]
    return _PY_FAILURE.sub(r"\1(): ", " ".join(text.split())).rstrip(".")


def _celpy_reason(error: Exception) -> str:
    first = error.args[0] if error.args else str(error)
    return _clean_reason(str(first).split(" (in activation")[0])


# --------------------------------------------------------------------------- compiler


class _DropExtensionFailureLogs(logging.Filter):
    """Drops the Rust engine's log line for failures of our own extension functions."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Python function '{name}'") for name in EXTENSION_FUNCTIONS)


def _install_log_filter() -> None:
    logger = logging.getLogger("cel")
    if not any(isinstance(f, _DropExtensionFailureLogs) for f in logger.filters):
        logger.addFilter(_DropExtensionFailureLogs())


class CelCompiler:
    """Compiles CEL sources once each, preferring the Rust engine."""

    def __init__(self) -> None:
        _install_log_filter()
        self._rust_functions: dict[str, Callable[..., Any]] = {
            GO_DURATION_FN: go_duration, SUBSTRING_FN: cel_substring,
        }
        self._celpy_env = celpy.Environment()
        self._celpy_functions: dict[str, Callable[..., Any]] = {
            GO_DURATION_FN: _celpy_adapter(go_duration, _to_celpy_duration),
            SUBSTRING_FN: _celpy_adapter(cel_substring, celtypes.StringType),
        }
        self._cache: dict[str, CelProgram | CompileFailure] = {}

    def compile(self, source: str) -> CelProgram | CompileFailure:
        if source not in self._cache:
            self._cache[source] = self._compile(source)
        return self._cache[source]

    def _compile(self, source: str) -> CelProgram | CompileFailure:
        rewritten = rewrite_duration_calls(source)
        program, rust_reason = self._compile_rust(rewritten)
        if program is not None:
            return program
        program, py_reason = self._compile_celpy(rewritten)
        if program is not None:
            return program
        return CompileFailure(source, _clean_reason(f"{rust_reason} (cel-python: {py_reason})"))

    def _compile_rust(self, source: str) -> tuple[CelProgram | None, str]:
        try:
            program = cel.compile(source)
        except Exception as exc:
            return None, str(exc).replace("\n", " ")
        known = RUST_NATIVE_FUNCTIONS | EXTENSION_FUNCTIONS
        unknown = sorted(f for f in program.functions() if not _is_operator(f) and f not in known)
        if unknown:
            return None, f"undeclared function(s): {', '.join(unknown)}"
        return _RustProgram(program, self._rust_functions), ""

    def _compile_celpy(self, source: str) -> tuple[CelProgram | None, str]:
        try:
            tree = self._celpy_env.compile(source)
        except Exception as exc:
            return None, " ".join(str(exc).split())[:200]
        known = set(celpy.evaluation.base_functions) | CELPY_MACROS | EXTENSION_FUNCTIONS
        unknown = sorted(_celpy_called_functions(tree) - known)
        if unknown:
            return None, f"undeclared function(s): {', '.join(unknown)}"
        runner = self._celpy_env.program(tree, functions=self._celpy_functions)
        return _PyProgram(runner), ""


def _is_operator(name: str) -> bool:
    return not _IDENT.fullmatch(name)


def _celpy_called_functions(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident_arg" and node.children:
            names.add(str(node.children[0]))
        elif node.data == "member_dot_arg" and len(node.children) > 1:
            names.add(str(node.children[1]))
    return names


def _celpy_adapter(func: Callable[..., Any], wrap: Callable[[Any], Any]) -> Callable[..., Any]:
    def adapted(*args: Any) -> Any:
        try:
            return wrap(func(*(_from_celpy_arg(a) for a in args)))
        except (TypeError, ValueError) as exc:
            return celpy.CELEvalError(str(exc), type(exc), None)
    return adapted


def _from_celpy_arg(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    return value


def _to_celpy_duration(value: datetime.timedelta) -> Any:
    return celtypes.DurationType(value)
