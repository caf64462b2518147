"""CRD structural-schema defaulting, as the API server applies it before it validates and stores.

Input: CRD schemas (a CRD file, or one openAPIV3Schema). Output: a copy of an object with nulls the
schema neither allows nor defaults pruned, then every missing property that has a `default:` filled
in, recursively, defaulted values included (KEP-575; k8s.io/apiextensions-apiserver
pkg/apiserver/schema/defaulting/algorithm.go `Default`, and `PruneNonNullableNullsWithoutDefaults`).
Used by the schema layer (CEL rules see the defaulted object, as the API server's do: an HTTPRoute
rule without `matches` has the default match when a rule counts them) and by `meshc drift` /
`meshc import` (a field present live with its default is no change).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from meshc.files.confine import CRD_LIMIT, read_regular
from meshc.model.release import DEFAULT_ISTIO, shipped_crds

Body = Mapping[str, Any]


# --- CRD defaults --------------------------------------------------------------------------------

_NO_DEFAULT = object()


@dataclass(frozen=True)
class _Node:
    """The part of a structural schema that defaulting reads."""

    default: Any = _NO_DEFAULT
    nullable: bool = False
    properties: Mapping[str, _Node] = field(default_factory=dict)
    items: _Node | None = None
    additional: _Node | None = None
    defaulting: bool = False    # a default anywhere at or below this node

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


def schema_node(schema: Any) -> _Node:
    if not isinstance(schema, Mapping):
        return _Node()
    props = schema.get("properties")
    add = schema.get("additionalProperties")
    properties = {str(k): schema_node(v) for k, v in props.items()} if isinstance(props, Mapping) else {}
    items = schema_node(schema["items"]) if isinstance(schema.get("items"), Mapping) else None
    additional = schema_node(add) if isinstance(add, Mapping) else None
    below = [*properties.values(), *(n for n in (items, additional) if n is not None)]
    return _Node(schema["default"] if "default" in schema else _NO_DEFAULT, bool(schema.get("nullable")),
                 properties, items, additional, "default" in schema or any(n.defaulting for n in below))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _prune_nulls(value: Any, node: _Node | None) -> None:
    """k8s PruneNonNullableNullsWithoutDefaults: a null neither nullable nor defaulted is dropped."""
    if node is None:
        return
    if isinstance(value, dict):
        for key in list(value):
            sub = node.properties.get(key, node.additional)
            if sub is None:
                continue
            if value[key] is None and not sub.nullable and not sub.has_default:
                del value[key]
            else:
                _prune_nulls(value[key], sub)
    elif isinstance(value, list):
        for item in value:
            _prune_nulls(item, node.items)


def _default(value: Any, node: _Node | None) -> None:
    """k8s structural defaulting (`Default`): defaults of missing or non-nullable null
    properties, then the same below every property, defaulted ones included."""
    if node is None or not node.defaulting:
        return
    if isinstance(value, dict):
        for key, prop in node.properties.items():
            if prop.has_default and (key not in value or (value[key] is None and not prop.nullable)):
                value[key] = _copy(prop.default)
        for key in list(value):
            prop_or_add = node.properties.get(key)
            if prop_or_add is None and node.additional is not None:
                prop_or_add = node.additional
                if value[key] is None and not prop_or_add.nullable and prop_or_add.has_default:
                    value[key] = _copy(prop_or_add.default)
            _default(value[key], prop_or_add)
    elif isinstance(value, list) and node.items is not None:
        for i, item in enumerate(value):
            if item is None and not node.items.nullable and node.items.has_default:
                value[i] = _copy(node.items.default)
            _default(value[i], node.items)


class Defaults:
    """The structural-schema defaults of a set of CRDs, per (group, kind) and served version.

    `Defaults.load(path)` reads a CRD file (JSON or YAML, a `kind: List` unwrapped, as
    `kubectl get crd -o yaml` prints it, or meshc's shipped schemas); `apply(body)` returns a copy
    of `body` as the API server would store it: nulls pruned, then defaults applied, for the
    schema of its apiVersion (another served version of the same group and kind when that one is
    not served; unchanged when the kind is unknown)."""

    def __init__(self, schemas: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> None:
        # (group, kind) -> version -> openAPIV3Schema
        self._schemas = {k: dict(v) for k, v in (schemas or {}).items()}
        self._nodes: dict[tuple[str, str, str], _Node | None] = {}

    @classmethod
    def none(cls) -> Defaults:
        return cls()

    @classmethod
    def shipped(cls, release: str = DEFAULT_ISTIO) -> Defaults:
        return _shipped(release)

    @classmethod
    def load(cls, path: Path) -> Defaults:
        """Raises OSError or ValueError for a file that is not a CRD file."""
        data = read_regular(path, CRD_LIMIT)
        if path.suffix == ".json":
            docs: list[Any] = [orjson.loads(data)]
        else:
            docs = list(yaml.load_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        schemas: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        for doc in _unwrap(docs):
            if not isinstance(doc, Mapping) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc.get("spec") or {}
            group, kind = str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))
            for version in spec.get("versions") or []:
                if not isinstance(version, Mapping) or version.get("served") is False:
                    continue
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if isinstance(schema, Mapping):
                    schemas.setdefault((group, kind), {})[str(version.get("name", ""))] = schema
        if not schemas:
            raise ValueError(f"{path}: no served CustomResourceDefinition version found")
        return cls(schemas)

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._schemas)

    def schema_node(self, api_version: str, kind: str) -> _Node | None:
        group, _, version = api_version.rpartition("/")
        key = (group, kind, version)
        if key not in self._nodes:
            versions = self._schemas.get((group, kind)) or {}
            schema = versions.get(version) or next((versions[v] for v in sorted(versions)), None)
            self._nodes[key] = schema_node(schema) if schema is not None else None
        return self._nodes[key]

    def apply(self, body: Body) -> dict[str, Any]:
        return self.apply_in_place(_copy(body))

    def apply_in_place(self, body: dict[str, Any]) -> dict[str, Any]:
        """`apply` on `body` itself (a body nothing else holds); returns it."""
        node = self.schema_node(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        if node is not None:
            had_status = "status" in body
            _prune_nulls(body, node)
            _default(body, node)
            if not had_status:  # the controllers' part: a schema default there is no configuration
                body.pop("status", None)
        return body


def _unwrap(docs: Iterable[Any]) -> Iterable[Any]:
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from _unwrap(doc["items"])
        else:
            yield doc


@functools.lru_cache(maxsize=4)
def _shipped(release: str) -> Defaults:
    return Defaults.load(shipped_crds(release))




def apply_node(body: Body, node: _Node) -> dict[str, Any]:
    """A copy of `body` defaulted by one schema node (what `Defaults.apply_in_place` does per kind)."""
    out: dict[str, Any] = _copy(body)
    had_status = "status" in out
    _prune_nulls(out, node)
    _default(out, node)
    if not had_status:
        out.pop("status", None)
    return out
