"""Declaration schemas: the JSON Schema files editors use are the ones meshc validates with.

Input: a plain value and its YAML node. Output: diagnostics with file:line:col, key path and a fix.
Codes: D001 unknown key (with did-you-mean), D002 wrong type, D003 missing key, D004 invalid value.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
from yaml.nodes import Node

from meshc.files.source import locate
from meshc.model.diagnostics import Diagnostic, Position, Severity, format_path

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
          dict: "mapping", type(None): "null"}


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("meshc.schemas").joinpath(f"{name}.schema.json").read_text()
    return dict(json.loads(text))


def _root(name: str) -> dict[str, Any]:
    """`declarations#service` names a definition inside a schema file."""
    file, _, definition = name.partition("#")
    root = schema(file)
    if definition:
        return {**root["$defs"][definition], "$defs": root["$defs"]}
    return root


@cache
def _validator(name: str) -> Any:
    return jsonschema_rs.validator_for(_root(name))


def _schema_at(root: dict[str, Any], schema_path: Sequence[str | int]) -> dict[str, Any]:
    node: Any = root
    for elem in schema_path:
        if elem == "$ref":
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            continue
        node = node[elem]
    return node if isinstance(node, dict) else {}


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate(name: str, value: Any, file: str, node: Node | None,
             prefix: Sequence[str | int] = ()) -> list[Diagnostic]:
    """Validate `value` against schema `name`; positions come from `node`."""
    validator = _validator(name)
    if validator.is_valid(value):
        return []
    root = _root(name)
    out: list[Diagnostic] = []
    for err in validator.iter_errors(value):
        out.extend(_explain(err, root, value, file, node, list(prefix)))
    return out


def _value_at(value: Any, path: Sequence[str | int]) -> Any:
    for elem in path:
        value = value[elem]
    return value


def _where(file: str, node: Node | None, path: Sequence[str | int], on_key: bool = False) -> Position:
    if node is None:
        return Position(file)
    return locate(file, node, tuple(path), on_key=on_key)[0]


def _explain(err: Any, root: dict[str, Any], value: Any, file: str, node: Node | None,
             prefix: list[str | int]) -> list[Diagnostic]:
    path = list(err.instance_path)
    kind = type(err.kind).__name__.rsplit("_", 1)[-1]
    shown = format_path(prefix + path)
    sub = _schema_at(root, list(err.schema_path)[:-1])
    if kind == "AdditionalProperties":
        allowed = sorted(sub.get("properties", {}))
        return [Diagnostic(
            "D001", Severity.ERROR, f"unknown key {key!r}{did_you_mean(key, allowed)}",
            _where(file, node, path + [key], on_key=True), format_path(prefix + path + [key]),
            hint=f"allowed keys here: {', '.join(allowed)}") for key in err.kind.unexpected]
    pos = _where(file, node, path)
    if kind == "Required":
        prop = err.kind.property
        return [Diagnostic("D003", Severity.ERROR, f"missing required key {prop!r}", pos, shown,
                           hint=f"add {prop}: to this entry")]
    if kind == "Type":
        got = _TYPES.get(type(_value_at(value, path)), "value")
        want = sub.get("type", "?")
        described = str(sub.get("description") or "")
        if want == "string" and "duration" in described.lower():
            hint = f"write a duration with its unit, e.g. {_value_at(value, path)}s (units: ms, s, m, h)"
        elif want == "string":
            hint = "quote the value to make it a string"
        else:
            hint = f"write {_a(str(want))}"
        return [Diagnostic("D002", Severity.ERROR, f"expected {_a(str(want))}, found {_a(got)}", pos, shown,
                           hint=hint)]
    message, hint = _invalid(err, sub)
    return [Diagnostic("D004", Severity.ERROR, message, pos, shown, hint=hint)]


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _invalid(err: Any, sub: dict[str, Any]) -> tuple[str, str]:
    """(what is wrong, what to write instead) for a value the schema refuses."""
    kind = type(err.kind).__name__.rsplit("_", 1)[-1]
    described = str(sub.get("description") or "")
    if kind == "Enum" and "enum" in sub:
        choices = [str(c) for c in sub["enum"]]
        value = str(err.instance)
        meshc_spelling = value.strip().lower().replace("_", "-")
        if meshc_spelling in choices and meshc_spelling != value:
            suggestion = f' (did you mean "{meshc_spelling}"? meshc spells Istio\'s {value} as {meshc_spelling})'
        else:
            suggestion = did_you_mean(value, choices)
        return (f"{value!r} is not one of {', '.join(choices)}{suggestion}",
                f"write one of: {', '.join(choices)}")
    if kind == "Pattern" and sub.get("pattern", "").startswith("^[a-z0-9]"):
        return (f"{err.instance!r} is not a valid name: use lowercase letters, digits and '-', "
                "starting and ending with a letter or digit",
                "rename it, e.g. " + repr(_to_name(str(err.instance))))
    if kind == "Pattern":
        return (f"{err.instance!r} is not a valid value here", described or f"write a value matching {sub['pattern']}")
    what = f" ({described.rstrip('.')})" if described else " (docs/declarations.md lists them)"
    return str(err.message), f"write a value this key accepts{what}"


def _to_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name[:63].rstrip("-") or "my-service"

