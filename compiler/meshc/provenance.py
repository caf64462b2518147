"""Provenance: from a data path in a merged service (or an emitted object) back to the line a human wrote.

Computed on demand from the layers' YAML nodes, so builds pay nothing until a diagnostic needs a
position. A list index inside a keyed list (ports, endpoints, subsets, portLevel) is translated
into the item's key, then looked up in every layer; the layer that holds the deepest part of the
path wins, later (overlay) layers winning ties.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .diagnostics import DataPath, Position
from .merge import LIST_KEYS
from .model import Artifact, Layer, ServiceDecl
from .source import node_position, child

_Keyed = tuple[str, Any]


def _key_path(data: Any, path: DataPath) -> list[str | int | _Keyed]:
    out: list[str | int | _Keyed] = []
    parent_key: str | int | None = None
    for elem in path:
        if isinstance(elem, int) and isinstance(data, list) and parent_key in LIST_KEYS:
            item = data[elem] if 0 <= elem < len(data) else None
            key = LIST_KEYS[str(parent_key)]
            out.append((key, item.get(key)) if isinstance(item, Mapping) else elem)
        else:
            out.append(elem)
        try:
            data = data[elem]
        except (KeyError, IndexError, TypeError):
            data = None
        parent_key = elem
    return out


def _in_layer(layer: Layer, kpath: Sequence[str | int | _Keyed]) -> tuple[Position, int]:
    node, data = layer.node, layer.data
    best, depth = layer.position, 0
    for n, elem in enumerate(kpath, start=1):
        if isinstance(elem, tuple):
            key, value = elem
            idx = next((i for i, it in enumerate(data or []) if isinstance(it, Mapping)
                        and it.get(key) == value), None)
            if idx is None:
                break
            elem = idx
        _, vnode = child(node, elem)
        if vnode is None:
            break
        node = vnode
        data = data[elem] if data is not None else None
        best, depth = node_position(layer.file, node), n
    return best, depth


def locate_decl(decl: ServiceDecl, path: DataPath) -> Position:
    kpath = _key_path(decl.data, path)
    best, best_depth = decl.position, -1
    for layer in decl.layers:
        pos, depth = _in_layer(layer, kpath)
        if depth >= best_depth:
            best, best_depth = pos, depth
    return best


_SE_DIRECT = {"hosts", "addresses", "ports", "endpoints", "location", "resolution", "exportTo"}


def decl_path_for(kind: str, part: int, path: DataPath) -> DataPath:
    """The declaration path behind `path` in an emitted object of `kind` (best effort, a prefix)."""
    if len(path) >= 2 and path[0] == "metadata":
        return ("endpoints", part, "name") if kind == "WorkloadEntry" else ("name",)
    if not path or path[0] != "spec":
        return ()
    rest = path[1:]
    if kind == "ServiceEntry":
        if rest and rest[0] in _SE_DIRECT:
            return rest
        return ("selector",) if rest and rest[0] == "workloadSelector" else ()
    if kind == "WorkloadEntry":
        return ("endpoints", part) + rest
    if kind == "DestinationRule":
        return _dr_path(part, rest)
    return ()


def _dr_path(part: int, rest: DataPath) -> DataPath:
    if not rest:
        return ()
    head = rest[0]
    if head == "host":
        return ("hosts", part)
    if head == "workloadSelector":
        return ("clientSelector",)
    if head == "exportTo":
        return ("exportTo",)
    if head == "trafficPolicy":
        return _policy_path(("trafficPolicy",), rest[1:], top=True)
    if head == "subsets" and len(rest) >= 2:
        tail = rest[2:]
        if tail and tail[0] == "trafficPolicy":
            return _policy_path(("subsets", rest[1], "trafficPolicy"), tail[1:], top=False)
        return ("subsets", rest[1]) + tail
    return ()


def _policy_path(base: DataPath, rest: DataPath, top: bool) -> DataPath:
    if not rest:
        return base
    if rest[0] == "tls" and top:
        return ("tls",) + rest[1:]
    if rest[0] == "portLevelSettings":
        tail = rest[1:]
        if len(tail) >= 2 and tail[1] == "port":
            return base + ("portLevel",) + (tail[0], "port")
        return base + ("portLevel",) + tail
    return base + rest


def locate_finding(art: Artifact, decl: ServiceDecl, path: DataPath) -> Position:
    return locate_decl(decl, decl_path_for(art.identity.kind, art.part, path))
