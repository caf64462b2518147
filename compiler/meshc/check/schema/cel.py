"""CEL engines for CRD ``x-kubernetes-validations`` rules.

Input:  CEL source strings taken from a CRD schema; at evaluation, ``Bindings`` holding the
        plain JSON-like value of ``self``.
Output: ``CelCompiler.compile(source)`` returns a ``CelProgram`` whose ``run(bindings)`` gives
        the Python result or raises ``CelEvalError`` (reason in str()), or a
        ``CompileFailure`` when no engine can compile the source.

Invariants:
* Each distinct source is compiled once per ``CelCompiler`` (cache held by the instance).
* The Rust engine (``cel``, package common-expression-language) is preferred; cel-python
  (``celpy``) is used only for sources the Rust engine cannot parse or that call functions it
  does not provide. A source neither can handle yields a ``CompileFailure``, never a pass.
* Before compiling, ``duration(...)`` and ``matches(...)`` calls are routed to the
  Kubernetes-exact functions of ``meshc.crd_cel_ext`` (Go duration grammar, RE2), and
  ``substring`` is provided there; both engines get the same functions.
* Failures of these extension functions are reported through ``CelEvalError``; the duplicate
  WARNING record the Rust engine logs on logger ``cel`` for them is filtered out so it does
  not leak to stderr. Engines are imported lazily (``cel`` pulls in a CLI toolkit).

Finding codes are assigned by the caller (meshc.crd_sites).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from meshc.check.schema.cel_ext import (
    GO_DURATION_FN,
    IS_CIDR_FN,
    IS_IP_FN,
    MATCHES_FN,
    PUBLIC_NAMES,
    SUBSTRING_FN,
    RegexCache,
    cel_is_cidr,
    cel_is_ip,
    cel_substring,
    go_duration,
    rewrite_calls,
)

EXTENSION_FUNCTIONS = frozenset({GO_DURATION_FN, MATCHES_FN, SUBSTRING_FN, IS_IP_FN, IS_CIDR_FN})
# Functions and macros the Rust engine implements natively (operators are recognised by shape).
RUST_NATIVE_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
    "bytes", "timestamp", "duration", "dyn", "type", "has", "all", "exists", "exists_one",
    "map", "filter", "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek",
    "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
})
CELPY_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_PY_FAILURE = re.compile(r"Function '(\w+)' error: Python function call failed: \w+: ")


class CelEvalError(Exception):
    """A CEL expression could not be evaluated; str() is the reason."""


class Bindings:
    """Variables for one evaluation; each engine's representation is built lazily, once."""

    __slots__ = ("value", "with_old_self", "_rust", "_celpy")

    def __init__(self, value: Any, with_old_self: bool = False) -> None:
        self.value = value
        self.with_old_self = with_old_self
        self._rust: Any = None
        self._celpy: dict[str, Any] | None = None

    def rust(self, engine: Any, functions: dict[str, Callable[..., Any]]) -> Any:
        if self._rust is None:
            variables = {"self": self.value}
            if self.with_old_self:
                variables["oldSelf"] = engine.OptionalValue.none()
            self._rust = engine.Context(variables=variables, functions=functions)
        return self._rust

    def celpy(self, engine: Any) -> dict[str, Any]:
        if self._celpy is None:
            self._celpy = {"self": engine.json_to_cel(self.value)}
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

    def __init__(self, module: Any, program: Any,
                 functions: dict[str, Callable[..., Any]]) -> None:
        self._module = module
        self._program = program
        self._functions = functions

    def run(self, bindings: Bindings) -> Any:
        try:
            return self._program.execute(bindings.rust(self._module, self._functions))
        except KeyError as exc:
            raise CelEvalError(f"no such key: {exc.args[0] if exc.args else exc}") from None
        except Exception as exc:  # the engine raises RuntimeError/TypeError/ValueError/...
            raise CelEvalError(clean_reason(str(exc))) from None


class _PyProgram:
    engine = "celpy"

    def __init__(self, module: Any, runner: Any) -> None:
        self._module = module
        self._runner = runner

    def run(self, bindings: Bindings) -> Any:
        try:
            result = self._runner.evaluate(bindings.celpy(self._module))
        except Exception as exc:  # CELEvalError and conversion errors
            raise CelEvalError(_celpy_reason(exc)) from None
        if isinstance(result, self._module.CELEvalError):
            raise CelEvalError(_celpy_reason(result))
        return _from_celpy(self._module, result)


def clean_reason(text: str) -> str:
    """Engine error text without internal function names and boilerplate advice."""
    for internal, public in PUBLIC_NAMES.items():
        text = text.replace(internal, public)
    text = text.split(" Check function arguments")[0].split(". Check that the variable")[0]
    return _PY_FAILURE.sub(r"\1(): ", " ".join(text.split())).rstrip(".")


def _celpy_reason(error: Exception) -> str:
    first = error.args[0] if error.args else str(error)
    return clean_reason(str(first).split(" (in activation")[0])


def _from_celpy(module: Any, value: Any) -> Any:
    types = module.celtypes
    if isinstance(value, types.BoolType):
        return bool(value)
    if isinstance(value, types.StringType):
        return str(value)
    return value


class _DropExtensionFailureLogs(logging.Filter):
    """Drops the Rust engine's log record for failures of our own extension functions."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Python function '{n}'") for n in EXTENSION_FUNCTIONS)


def _install_log_filter() -> None:
    logger = logging.getLogger("cel")
    if not any(isinstance(f, _DropExtensionFailureLogs) for f in logger.filters):
        logger.addFilter(_DropExtensionFailureLogs())


class CelCompiler:
    """Compiles CEL sources once each, preferring the Rust engine."""

    def __init__(self) -> None:
        _install_log_filter()
        self._rust = importlib.import_module("cel")
        regex = RegexCache()
        self._functions: dict[str, Callable[..., Any]] = {
            GO_DURATION_FN: go_duration, SUBSTRING_FN: cel_substring, MATCHES_FN: regex.matches,
            IS_IP_FN: cel_is_ip, IS_CIDR_FN: cel_is_cidr,
        }
        self._celpy: tuple[Any, Any, dict[str, Callable[..., Any]]] | None = None
        self._cache: dict[str, CelProgram | CompileFailure] = {}

    def compile(self, source: str) -> CelProgram | CompileFailure:
        if source not in self._cache:
            self._cache[source] = self._compile(source)
        return self._cache[source]

    def _compile(self, source: str) -> CelProgram | CompileFailure:
        rewritten = rewrite_calls(source)
        program, rust_reason = self._compile_rust(rewritten)
        if program is None:
            program, py_reason = self._compile_celpy(rewritten)
            if program is None:
                reason = f"{rust_reason} (cel-python: {py_reason})"
                return CompileFailure(source, clean_reason(reason))
        return program

    def _compile_rust(self, source: str) -> tuple[CelProgram | None, str]:
        try:
            program = self._rust.compile(source)
        except Exception as exc:
            return None, str(exc)
        known = RUST_NATIVE_FUNCTIONS | EXTENSION_FUNCTIONS
        unknown = sorted(f for f in program.functions() if _IDENT.fullmatch(f) and f not in known)
        if unknown:
            return None, f"undeclared function(s): {', '.join(unknown)}"
        return _RustProgram(self._rust, program, self._functions), ""

    def _compile_celpy(self, source: str) -> tuple[CelProgram | None, str]:
        module, env, functions = self._celpy_engine()
        try:
            tree = env.compile(source)
        except Exception as exc:
            return None, str(exc)[:300]
        known = set(module.evaluation.base_functions) | CELPY_MACROS | EXTENSION_FUNCTIONS
        unknown = sorted(_celpy_called_functions(tree) - known)
        if unknown:
            return None, f"undeclared function(s): {', '.join(unknown)}"
        return _PyProgram(module, env.program(tree, functions=functions)), ""

    def _celpy_engine(self) -> tuple[Any, Any, dict[str, Callable[..., Any]]]:
        if self._celpy is None:
            module = importlib.import_module("celpy")
            types = module.celtypes
            wraps = {GO_DURATION_FN: types.DurationType, SUBSTRING_FN: types.StringType,
                     MATCHES_FN: types.BoolType, IS_IP_FN: types.BoolType, IS_CIDR_FN: types.BoolType}
            functions = {name: _celpy_adapter(module, self._functions[name], wrap)
                         for name, wrap in wraps.items()}
            self._celpy = (module, module.Environment(), functions)
        return self._celpy


def _celpy_called_functions(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident_arg" and node.children:
            names.add(str(node.children[0]))
        elif node.data == "member_dot_arg" and len(node.children) > 1:
            names.add(str(node.children[1]))
    return names


def _celpy_adapter(module: Any, func: Callable[..., Any],
                   wrap: Callable[[Any], Any]) -> Callable[..., Any]:
    types = module.celtypes

    def adapted(*args: Any) -> Any:
        plain = [_from_celpy_arg(types, a) for a in args]
        try:
            return wrap(func(*plain))
        except (TypeError, ValueError) as exc:
            return module.CELEvalError(str(exc), type(exc), None)
    return adapted


def _from_celpy_arg(types: Any, value: Any) -> Any:
    if isinstance(value, types.BoolType):
        return bool(value)
    if isinstance(value, types.StringType):
        return str(value)
    if isinstance(value, (types.IntType, types.UintType)):
        return int(value)
    return value
