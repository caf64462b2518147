"""Changes to generated services: environment overrides (overlays) and head-side mutations.

Overrides are partial declarations in meshc's overlay format (keyed lists merge by key, `$patch:
delete` removes); they only reference ports, endpoints and subsets the base service has, and keep
the merged service valid (a removed endpoint takes the subsets that only it matched along; a removed
port is never one a portLevel policy or an endpoint port map names). Mutations only add or modify,
so every override written against the base still applies to the mutated service.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from typing import Any, Callable

from gen_service import DURATIONS, Decl, _outlier

Edit = Callable[[Decl, random.Random, str], Decl | None]
MUTATION_TAG = "head"


def _new_address(svc: Decl, offset: int) -> str:
    """An address the service does not have: the first one + offset (4-7) for IPs."""
    first = svc["endpoints"][0]["address"]
    try:
        return str(ipaddress.ip_address(first) + offset)
    except ValueError:
        return f"x{offset}-{first}"


def _pool_edit(svc: Decl, rng: random.Random, env: str) -> Decl:
    tcp = {"maxConnections": rng.choice((64, 128, 256, 2048)),
           "connectTimeout": rng.choice(DURATIONS[:5])}
    return {"trafficPolicy": {"connectionPool": {"tcp": tcp}}}


def _outlier_edit(svc: Decl, rng: random.Random, env: str) -> Decl:
    return {"trafficPolicy": {"outlierDetection": _outlier(rng)}}


def _describe_edit(svc: Decl, rng: random.Random, env: str) -> Decl:
    return {"description": f"{svc.get('description', svc['name'])} ({env} variant)"}


def _can_add_endpoint(svc: Decl) -> bool:
    return bool(svc.get("endpoints")) and svc.get("resolution") in ("static", "dns")


def _add_endpoint_edit(svc: Decl, rng: random.Random, env: str) -> Decl | None:
    if not _can_add_endpoint(svc):
        return None
    ep = copy.deepcopy(svc["endpoints"][0])
    ep.pop("ports", None)
    ep["address"] = _new_address(svc, 7 if env == MUTATION_TAG else 4 + sum(map(ord, env)) % 3)
    if "name" in ep:
        ep["name"] = f"{env}-extra"
    ep["weight"] = rng.randint(1, 100)
    return {"endpoints": [ep]}


def _drop_endpoint_edit(svc: Decl, rng: random.Random, env: str) -> Decl | None:
    eps = svc.get("endpoints") or []
    if len(eps) < 2:
        return None
    dropped, kept = eps[-1], eps[:-1]
    out: Decl = {"endpoints": [{"address": dropped["address"], "$patch": "delete"}]}
    orphans = [s["name"] for s in svc.get("subsets", [])
               if not any(_matches(s.get("labels", {}), ep.get("labels", {})) for ep in kept)]
    if orphans:
        out["subsets"] = [{"name": name, "$patch": "delete"} for name in orphans]
    return out


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _weight_edit(svc: Decl, rng: random.Random, env: str) -> Decl | None:
    eps = svc.get("endpoints") or []
    if not eps:
        return None
    return {"endpoints": [{"address": rng.choice(eps)["address"], "weight": rng.randint(1, 100)}]}


def _drop_port_edit(svc: Decl, rng: random.Random, env: str) -> Decl | None:
    ports = svc["ports"]
    if len(ports) < 2:
        return None
    last = ports[-1]
    policy_ports = {e["port"] for e in (svc.get("trafficPolicy") or {}).get("portLevel", [])}
    mapped = {k for ep in svc.get("endpoints", []) for k in ep.get("ports", {})}
    if last["number"] in policy_ports or last["name"] in mapped:
        return None
    return {"ports": [{"number": last["number"], "$patch": "delete"}]}


OVERRIDE_EDITS: tuple[tuple[Edit, int], ...] = (
    (_pool_edit, 30), (_outlier_edit, 15), (_describe_edit, 15), (_add_endpoint_edit, 12),
    (_drop_endpoint_edit, 8), (_weight_edit, 10), (_drop_port_edit, 5))
MUTATIONS: tuple[tuple[Edit, int], ...] = (
    (_pool_edit, 35), (_outlier_edit, 20), (_describe_edit, 20), (_weight_edit, 15),
    (_add_endpoint_edit, 10))


def _pick(rng: random.Random, table: tuple[tuple[Edit, int], ...]) -> Edit:
    return rng.choices([e for e, _ in table], [w for _, w in table])[0]


def _deep_merge(into: Decl, change: Decl) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def make_override(svc: Decl, rng: random.Random, env: str) -> Decl:
    """An override of `svc` for `env`: one to two edits, or (rarely) deleting the service."""
    if rng.random() < 0.05:
        return {"name": svc["name"], "$patch": "delete"}
    out: Decl = {"name": svc["name"]}
    for _ in range(rng.randint(1, 2)):
        change = _pick(rng, OVERRIDE_EDITS)(svc, rng, env)
        if change and not set(change) & (set(out) - {"trafficPolicy"}):
            _deep_merge(out, change)
    if len(out) == 1:
        _deep_merge(out, _pool_edit(svc, rng, env))
    return out


def mutate(svc: Decl, rng: random.Random) -> Decl:
    """A changed copy of a base service (head side of a diff benchmark): adds or modifies only."""
    out = copy.deepcopy(svc)
    change = _pick(rng, MUTATIONS)(svc, rng, MUTATION_TAG) or _pool_edit(svc, rng, MUTATION_TAG)
    if "endpoints" in change:
        _merge_endpoints(out, change["endpoints"])
    else:
        _deep_merge(out, change)
    return out


def _merge_endpoints(svc: Decl, changes: list[Decl]) -> None:
    by_address = {ep["address"]: ep for ep in svc["endpoints"]}
    for change in changes:
        if change["address"] in by_address:
            by_address[change["address"]].update(change)
        else:
            svc["endpoints"].append(change)
