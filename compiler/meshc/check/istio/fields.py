"""Reading manifest fields the way istiod's proto3-JSON decoding sees them.

Input: arbitrary values from a parsed YAML/JSON manifest (types are not trusted: the CRD layer,
compiler/meshc/crd.py, reports type errors; these helpers only make sure the Go-level checks never crash).
Output: plain Python values with proto3 defaults applied: a missing or null message is "unset",
an empty list or map is the same as an unset one, a missing scalar is its zero value.
Invariants: pure functions, no exceptions for any input.
Codes emitted: none.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Mapping, Sequence
from typing import Any

_EMPTY: Mapping[str, Any] = {}


def is_map(value: Any) -> bool:
    """isinstance(value, Mapping), with a fast path for the dicts YAML and JSON produce."""
    return type(value) is dict or isinstance(value, abc.Mapping)


def as_map(value: Any) -> Mapping[str, Any]:
    """A mapping, or an empty one for null / wrong types."""
    return value if is_map(value) else _EMPTY


def as_list(value: Any) -> Sequence[Any]:
    """A list, or an empty one for null / wrong types (proto3: `[]` is the same as unset)."""
    return value if isinstance(value, list) else ()


def as_str(value: Any) -> str:
    """A string; null is the empty string (proto3 zero value)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def as_int(value: Any) -> int | None:
    """An integer, 0 for null, None when the value is not an integer at all."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return None


def as_number(value: Any) -> float | None:
    """A number (wrapper types such as DoubleValue/UInt32Value), None when unset or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def is_set(obj: Mapping[str, Any], key: str) -> bool:
    """Whether a message field is set (present and not null; `{}` counts as set)."""
    return obj.get(key) is not None


def is_true(value: Any) -> bool:
    """A bool or BoolValue field; YAML may give a real bool or the strings true/false."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def has_items(value: Any) -> bool:
    """A repeated or map field that holds at least one entry."""
    return (type(value) is list or is_map(value)) and len(value) > 0


def enum_index(value: Any, names: Sequence[str]) -> int:
    """Enum as its number: unset is 0, a known name its index, a number itself; unknown names -1."""
    if value is None:
        return 0
    if isinstance(value, str):
        return names.index(value) if value in names else -1
    number = as_int(value)
    return -1 if number is None else number


def spec_of(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(manifest.get("spec"))


def metadata_of(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(manifest.get("metadata"))


def namespace_of(manifest: Mapping[str, Any]) -> str:
    """The namespace as written (empty when missing); see `effective_namespace`."""
    return as_str(metadata_of(manifest).get("namespace"))


def effective_namespace(manifest: Mapping[str, Any]) -> str:
    """The namespace the object lands in when applied without one: `default`."""
    return namespace_of(manifest) or "default"


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """String view of a labels map (`metadata.labels`, `spec.labels`, selectors)."""
    return {as_str(k): as_str(v) for k, v in as_map(obj.get("labels")).items()}
