"""Provenance: from a data path in a merged service (or an emitted object) back to the line a human wrote.

Computed on demand from the layers' YAML nodes, so builds pay nothing until a diagnostic needs a
position. A list index inside a keyed list (ports, endpoints, subsets, portLevel) is translated
into the item's key, then looked up in every layer; the layer that holds the deepest part of the
path wins, later (overlay) layers winning ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.files.source import child, node_position
from meshc.front.merge import LIST_KEYS
from meshc.model.core import Artifact, Layer, ServiceDecl
from meshc.model.diagnostics import DataPath, Position

_Keyed = tuple[str, Any, int]  # (key, value, n): the n-th item (from 0) whose key has that value


def key_path(data: Any, path: DataPath) -> list[str | int | _Keyed]:
    """`path` in the merged data, with each index into a keyed list as its item's key."""
    out: list[str | int | _Keyed] = []
    parent_key: str | int | None = None
    for elem in path:
        if isinstance(elem, int) and isinstance(data, list) and parent_key in LIST_KEYS:
            item = data[elem] if 0 <= elem < len(data) else None
            key = LIST_KEYS[str(parent_key)]
            if isinstance(item, Mapping):
                value = item.get(key)
                nth = sum(1 for it in data[:elem] if isinstance(it, Mapping) and it.get(key) == value)
                out.append((key, value, nth))  # a duplicate key is found as itself, not as the first
            else:
                out.append(elem)
        else:
            out.append(elem)
        data = descend(data, elem)
        parent_key = elem
    return out


def descend(data: Any, elem: str | int) -> Any:
    """One step down a path: a mapping's key or a list's index (None where there is none)."""
    if isinstance(data, Mapping) and isinstance(elem, str):
        return data.get(elem)
    if isinstance(data, list) and isinstance(elem, int) and 0 <= elem < len(data):
        return data[elem]
    return None


def in_layer(layer: Layer, kpath: Sequence[str | int | _Keyed]) -> tuple[int, Position, Any]:
    """(how much of `kpath` the layer wrote, the position of the deepest part, its value there)."""
    node = layer.node
    data: Any = layer.data  # descends through mappings and lists, like `node`
    best, depth = layer.position, 0
    for n, elem in enumerate(kpath, start=1):
        if isinstance(elem, tuple):
            key, value, nth = elem
            hits = [i for i, it in enumerate(data if isinstance(data, list) else [])
                    if isinstance(it, Mapping) and it.get(key) == value]
            if not hits:
                break
            elem = hits[min(nth, len(hits) - 1)]
        _, vnode = child(node, elem)
        if vnode is None:
            break
        node, data = vnode, descend(data, elem)
        best, depth = node_position(layer.file, node), n
    return depth, best, data


@dataclass(frozen=True)
class Writer:
    """A layer that wrote a value of a merged declaration."""

    index: int  # of the layer in the declaration's layers (0 = where the service is declared)
    layer: Layer
    position: Position
    value: Any


def writers(decl: ServiceDecl, path: DataPath) -> list[Writer]:
    """Every layer that wrote `path` (a path in the merged declaration), base first; the last wins."""
    kpath = key_path(decl.data, path)
    out = []
    for i, layer in enumerate(decl.layers):
        depth, pos, value = in_layer(layer, kpath)
        if depth == len(kpath):
            out.append(Writer(i, layer, pos, value))
    return out


def locate_in_layer(layer: Layer, path: DataPath) -> Position:
    """The deepest position of `path` written in one layer (env.yaml, a declaration file entry)."""
    return in_layer(layer, list(path))[1]


def locate_decl(decl: ServiceDecl, path: DataPath) -> Position:
    return _best(decl, path)[0]


def _best(decl: ServiceDecl, path: DataPath) -> tuple[Position, int, list[Position]]:
    """(position, layer index, positions of earlier layers that wrote the same full path)."""
    kpath = key_path(decl.data, path)
    best, best_depth, best_layer = decl.position, -1, -1
    full: list[Position] = []
    for i, layer in enumerate(decl.layers):
        depth, pos, _ = in_layer(layer, kpath)
        # a later layer wins a tie only when it wrote part of the path: a value no layer wrote
        # (a missing key) belongs where the service is declared, not to an overlay that left it alone
        if depth > best_depth or (depth == best_depth and depth > 0):
            best, best_depth, best_layer = pos, depth, i
        if kpath and depth == len(kpath):
            full.append(pos)
    return best, best_layer, [p for p in full if p != best]


def place_decl(decl: ServiceDecl, path: DataPath,
               involves: Sequence[DataPath] = ()) -> tuple[Position, tuple[Position, ...]]:
    """Where a finding about `path` (and the values it `involves`) belongs: at the most specific
    layer (an overlay over base) that wrote any of them, with the other writers as related
    positions; so a finding an overlay caused cites the overlay line, and the base line beside it."""
    main = _best(decl, path)
    candidates = [main] + [_best(decl, p) for p in involves]
    chosen = max(candidates, key=lambda c: c[1])  # the first (main) wins ties
    if chosen[1] == main[1]:
        chosen = main
    related = [c[0] for c in candidates if c is not chosen] + main[2]
    return chosen[0], tuple(dict.fromkeys(p for p in related if p != chosen[0]))


def decl_path_of(art: Artifact, path: DataPath) -> DataPath:
    """The declaration path behind `path` in an emitted object, from the origin table expand built
    with it: the longest matching body prefix; () (the service) when none matches."""
    best: tuple[int, DataPath] = (-1, ())
    for prefix, decl_path, continues in art.origin:
        n = len(prefix)
        if n > best[0] and tuple(path[:n]) == prefix:
            best = (n, decl_path + tuple(path[n:]) if continues else decl_path)
    return best[1]


def locate_finding(art: Artifact, decl: ServiceDecl, path: DataPath) -> Position:
    return locate_decl(decl, decl_path_of(art, path))
