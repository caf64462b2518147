"""Structural OpenAPI v3 (CRD) schema -> JSON Schema draft 4, and schema errors -> findings.

Input:  one ``openAPIV3Schema`` from a CRD version (plain dict, as parsed from YAML); later,
        the ``jsonschema_rs.ValidationError``s produced when validating a manifest against the
        converted schema.
Output: ``to_json_schema`` returns a new JSON Schema dict (the input is not modified);
        ``explain`` turns one validation error into S001 ``Finding``s.

Invariants (mirroring the Kubernetes API server's pruning + strict field validation):
* every structural object node without ``additionalProperties`` and without
  ``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false`` (unknown fields
  are errors); junctor branches (allOf/anyOf/oneOf/not) are value validations and stay open;
* ``x-kubernetes-int-or-string`` -> ``type: [integer, string]``; ``nullable`` adds ``null``;
* only string formats the API server checks are kept (``date-time``, lenient as in
  kube-openapi); numeric formats such as ``int32``/``double`` are dropped, as the server ignores
  them for validation;
* the top level also accepts ``apiVersion``/``kind`` (strings) and ``metadata`` (an object
  whose name/namespace/generateName are strings and labels/annotations maps of strings);
* the converted schema keeps the input's shape, so a jsonschema_rs ``schema_path`` can be
  resolved in it to recover allowed property names or oneOf branches.
* findings carry code S001, Severity.ERROR, and a path into the manifest.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any

import jsonschema_rs

from meshc.model.diagnostics import Finding, Severity

SCHEMA_CODE = "S001"
_DROPPED_KEYS = frozenset({
    "description", "default", "example", "externalDocs", "nullable", "x-kubernetes-validations",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-map-type",
})
_JUNCTORS = ("allOf", "anyOf", "oneOf")
_CHECKED_STRING_FORMATS = frozenset({"date-time"})
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "namespace": {"type": "string"},
        "generateName": {"type": "string"}, "labels": _STRING_MAP, "annotations": _STRING_MAP,
    },
}
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?"
)


def is_k8s_date_time(text: str) -> bool:
    """Lenient date-time check in the spirit of kube-openapi's strfmt.DateTime layouts."""
    return bool(_DATE_TIME.fullmatch(text))


def to_json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Root conversion: adds apiVersion/kind/metadata to the top-level properties."""
    root = _convert(openapi, structural=True)
    properties = dict(root.get("properties", {}))
    properties.update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata=METADATA_SCHEMA
    )
    root["properties"] = properties
    root.setdefault("type", "object")
    return root


def _convert(node: dict[str, Any], structural: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, structural) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert(value, structural and key != "not")
        elif key in _JUNCTORS:
            out[key] = [_convert(sub, structural=False) for sub in value]
        elif key == "format":
            if node.get("type") == "string" and value in _CHECKED_STRING_FORMATS:
                out[key] = value
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        _int_or_string(out)
    if node.get("nullable"):
        _nullable(out)
    if structural and _is_closed_object(node):
        out["additionalProperties"] = False
        out.setdefault("properties", {})  # so unknown fields are reported by name
    return out


def _int_or_string(out: dict[str, Any]) -> None:
    out["type"] = ["integer", "string"]
    branches = out.get("anyOf", [])
    if all(set(branch) <= {"type"} for branch in branches):
        out.pop("anyOf", None)


def _nullable(out: dict[str, Any]) -> None:
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def _is_closed_object(node: dict[str, Any]) -> bool:
    is_object = node.get("type") == "object" or "properties" in node
    return (
        is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )


def compile_validator(json_schema: dict[str, Any]) -> Any:
    """A draft-4 validator (OpenAPI 3.0 semantics: boolean exclusiveMinimum, 1.0 not integer)."""
    return jsonschema_rs.Draft4Validator(
        json_schema,
        formats={"date-time": is_k8s_date_time},
        validate_formats=True,
        ignore_unknown_formats=True,
        pattern_options=jsonschema_rs.RegexOptions(),
    )


# --------------------------------------------------------------------------- explanations


def explain(error: Any, schema: dict[str, Any]) -> list[Finding]:
    """S001 findings for one jsonschema_rs ValidationError."""
    kind_name = type(error.kind).__name__.rsplit("_", 1)[-1]
    path = tuple(error.instance_path)
    if kind_name == "AdditionalProperties":
        owner = _resolve(schema, error.schema_path[:-1])
        allowed = sorted(owner.get("properties", {}))
        return [_unknown_field(path, name, allowed) for name in error.kind.unexpected]
    if kind_name == "Required":
        name = error.kind.property
        return [_finding(path + (name,), f'missing required field "{name}"')]
    if kind_name in ("OneOfMultipleValid", "OneOfNotValid"):
        owner = _resolve(schema, error.schema_path[:-1])
        return [_finding(path, _one_of_message(owner.get("oneOf", []), error.instance, kind_name))]
    if kind_name == "Enum" and error.instance is None:
        return []  # the type error at the same path already says "got null"
    explainer = _EXPLAINERS.get(kind_name)
    message = explainer(error.kind, error.instance) if explainer else error.message
    hint = _null_hint(error.instance) if kind_name == "Type" else ""
    return [_finding(path, message, hint)]


def _finding(path: tuple[Any, ...], message: str, hint: str = "") -> Finding:
    return Finding(SCHEMA_CODE, Severity.ERROR, message, path, hint=hint)


def _resolve(schema: Any, schema_path: Iterable[Any]) -> dict[str, Any]:
    node = schema
    for step in schema_path:
        node = node[step]
    return node if isinstance(node, dict) else {}


def _unknown_field(path: tuple[Any, ...], name: str, allowed: list[str]) -> Finding:
    close = difflib.get_close_matches(name, allowed, n=1)
    suggestion = f' (did you mean "{close[0]}"?)' if close else ""
    hint = f"allowed fields here: {', '.join(allowed)}" if allowed else "no field is allowed here"
    return _finding(path + (name,), f'unknown field "{name}"{suggestion}', hint)


def _one_of_message(branches: list[Any], instance: Any, kind_name: str) -> str:
    names = [n for b in branches if isinstance(b, dict) for n in b.get("required", [])]
    present = [n for n in names if isinstance(instance, dict) and n in instance]
    if names and kind_name == "OneOfMultipleValid":
        return f"at most one of {', '.join(names)} may be set, got {' and '.join(present)}"
    return "must match exactly one of the alternatives allowed here (oneOf)"


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES: dict[type[object], str] = {str: "string", dict: "object", list: "array"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _null_hint(instance: Any) -> str:
    return "omit the field instead of setting it to null" if instance is None else ""


def _type_message(kind: Any, instance: Any) -> str:
    wanted = " or ".join(t for t in kind.types if t != "null")
    got = _json_type(instance)
    return f"must be {wanted}, got {got}" + ("" if instance is None else f" {_describe(instance)}")


def _enum_message(kind: Any, instance: Any) -> str:
    options = [str(o) for o in kind.options if o is not None]
    close = difflib.get_close_matches(str(instance), options, n=1)
    suggestion = f' (did you mean "{close[0]}"?)' if close else ""
    return f"must be one of {', '.join(options)}, got {_describe(instance)}{suggestion}"


_EXPLAINERS: dict[str, Any] = {
    "Type": _type_message,
    "Enum": _enum_message,
    "Minimum": lambda k, v: f"must be >= {k.limit}, got {_describe(v)}",
    "Maximum": lambda k, v: f"must be <= {k.limit}, got {_describe(v)}",
    "ExclusiveMinimum": lambda k, v: f"must be > {k.limit}, got {_describe(v)}",
    "ExclusiveMaximum": lambda k, v: f"must be < {k.limit}, got {_describe(v)}",
    "MaxItems": lambda k, v: f"must have at most {k.limit} items, got {len(v)}",
    "MinItems": lambda k, v: f"must have at least {k.limit} item(s), got {len(v)}",
    "MaxLength": lambda k, v: f"must be at most {k.limit} characters long, got {len(v)}",
    "MinLength": lambda k, v: f"must be at least {k.limit} characters long, got {len(v)}",
    "MaxProperties": lambda k, v: f"must have at most {k.limit} entries, got {len(v)}",
    "MinProperties": lambda k, v: f"must have at least {k.limit} entries, got {len(v)}",
    "Pattern": lambda k, v: f"must match the pattern {k.pattern}, got {_describe(v)}",
    "Format": lambda k, v: f"must be a valid {k.format}, got {_describe(v)}",
    "MultipleOf": lambda k, v: f"must be a multiple of {k.multiple_of}, got {_describe(v)}",
    "UniqueItems": lambda k, v: "must not contain duplicate items",
    "Not": lambda k, v: "must not match the schema forbidden here (not)",
    "AnyOf": lambda k, v: f"must match at least one of the allowed forms, got {_describe(v)}",
}
