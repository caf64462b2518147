"""Pass `merge`: Estate -> one list of `ServiceDecl` per environment (base layer + env overlay).

Rules (docs/declarations.md): mappings merge key by key; keyed lists merge by key (ports by
number, endpoints by address, subsets by name, portLevel by port); other lists replace;
`$patch: delete` removes a keyed item or a whole service in one environment; a service declared
under an environment's services: exists in that environment only.
Invariants: inputs are not mutated; each ServiceDecl keeps every layer that contributed.
Codes: M001 duplicate service name, M002 override of an unknown service, M003 delete of an
unknown keyed item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshc.files.source import locate
from meshc.front.declschema import did_you_mean
from meshc.front.load import DeclFile, Estate
from meshc.model.core import Layer, ServiceDecl
from meshc.model.diagnostics import Diagnostic, Severity, format_path

LIST_KEYS: dict[str, str] = {"ports": "number", "endpoints": "address", "subsets": "name",
                             "portLevel": "port"}
PATCH = "$patch"


def merge_estate(estate: Estate) -> tuple[dict[str, list[ServiceDecl]], list[Diagnostic]]:
    diags: list[Diagnostic] = []
    base = _collect(estate.base, diags, env="")
    out: dict[str, list[ServiceDecl]] = {}
    for env, source in estate.envs.items():
        out[env] = _merge_env(env, base, source.files, diags)
    return out, diags


def _collect(files: Sequence[DeclFile], diags: list[Diagnostic], env: str) -> dict[str, Layer]:
    seen: dict[str, Layer] = {}
    for decl in files:
        for layer in decl.services:
            name = layer.data["name"]
            if name in seen:
                diags.append(Diagnostic(
                    "M001", Severity.ERROR, f"service {name!r} is declared twice", layer.position,
                    env=env, related=(seen[name].position,),
                    hint="rename one of them, or change the existing one under overrides:"))
                continue
            seen[name] = layer
    return seen


def _merge_env(env: str, base: Mapping[str, Layer], files: Sequence[DeclFile],
               diags: list[Diagnostic]) -> list[ServiceDecl]:
    own = _collect(files, diags, env)
    stacks: dict[str, list[Layer]] = {name: [layer] for name, layer in base.items()}
    for name, layer in own.items():
        if name in stacks:
            diags.append(Diagnostic(
                "M001", Severity.ERROR, f"service {name!r} already exists in the base layer",
                layer.position, env=env, related=(base[name].position,),
                hint="to change it in this environment, list it under overrides: instead"))
            continue
        stacks[name] = [layer]
    deleted: set[str] = set()
    for decl in files:
        for layer in decl.overrides:
            _apply_override(env, layer, stacks, deleted, diags)
    result: list[ServiceDecl] = []
    for name in sorted(stacks):
        if name in deleted:
            continue
        layers = stacks[name]
        data: Mapping[str, Any] = layers[0].data
        for layer in layers[1:]:
            data = merge_values(data, layer.data, (), layer, env, diags)
        result.append(ServiceDecl(name, data, tuple(layers)))
    return result


def _apply_override(env: str, layer: Layer, stacks: dict[str, list[Layer]], deleted: set[str],
                    diags: list[Diagnostic]) -> None:
    name = layer.data["name"]
    if name not in stacks:
        diags.append(Diagnostic(
            "M002", Severity.ERROR,
            f"override of service {name!r}, which no layer declares{did_you_mean(name, sorted(stacks))}",
            layer.position, env=env,
            hint="fix the name, or declare a new service under services:"))
        return
    if layer.data.get(PATCH) == "delete":
        deleted.add(name)
    stacks[name].append(layer)


def merge_values(base: Any, over: Any, path: tuple[str | int, ...], layer: Layer, env: str,
                 diags: list[Diagnostic]) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            if key == PATCH:
                continue
            if key in LIST_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = _merge_keyed(out[key], value, LIST_KEYS[key], path + (key,), layer, env, diags)
            elif key in out:
                out[key] = merge_values(out[key], value, path + (key,), layer, env, diags)
            else:
                out[key] = _strip(value)
        return out
    return _strip(over)


def _merge_keyed(base: list[Any], over: list[Any], key: str, path: tuple[str | int, ...],
                 layer: Layer, env: str, diags: list[Diagnostic]) -> list[Any]:
    out = list(base)
    index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, Mapping)}
    for pos, item in enumerate(over):
        k = item.get(key)
        if item.get(PATCH) == "delete":
            if k not in index:
                _unknown_item(path, pos, key, k, layer, env, diags)
                continue
            out[index[k]] = None
        elif k in index and out[index[k]] is not None:
            out[index[k]] = merge_values(out[index[k]], item, path + (pos,), layer, env, diags)
        else:
            index[k] = len(out)
            out.append(_strip(item))
    return [item for item in out if item is not None]


def _unknown_item(path: tuple[str | int, ...], pos: int, key: str, value: Any, layer: Layer,
                  env: str, diags: list[Diagnostic]) -> None:
    where = locate(layer.file, layer.node, path + (pos,))[0]
    diags.append(Diagnostic(
        "M003", Severity.ERROR,
        f"$patch: delete of {path[-1]} item with {key} {value!r}, which the service does not have",
        where, format_path(path + (pos,)), env=env,
        hint=f"use the {key} of an existing item, or remove this entry"))


def _strip(value: Any) -> Any:
    """Drop $patch markers from newly added values."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if k != PATCH}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, Mapping) and v.get(PATCH) == "delete")]
    return value
