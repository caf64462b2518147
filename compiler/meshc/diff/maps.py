"""A map of the change: the services a change touches, as Mermaid flowcharts for the review.

Input: per environment and touched service, its Istio objects on each side (normalised bodies,
before masking: hosts, addresses, localities and TLS modes are not secrets). Output:
`ServiceMap` values (`service_map`), kept in the change set, and `mermaid(...)`, the flowchart
GitHub renders in a pull-request comment: who may call the service (its exportTo, or its
DestinationRule's clientSelector), the edge with its TLS mode, the ServiceEntry with its hosts
and ports, and its endpoints (address, locality, network) or DNS names; what the change added,
removed or changed is highlighted.
Invariants: labels are escaped so that no value can add a node, an edge or a directive (every
character outside a small safe set becomes a Mermaid entity); at most `MAX_ENDPOINTS` endpoints
are drawn, the rest counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

MAX_ENDPOINTS = 8
_SAFE = re.compile(r"[A-Za-z0-9 ._:/*,()+=-]")


@dataclass(frozen=True)
class ServiceMap:
    name: str
    namespace: str
    location: str
    resolution: str
    hosts: tuple[str, ...]
    ports: tuple[str, ...]
    endpoints: tuple[tuple[str, str, str], ...]  # (address, locality, network)
    tls: tuple[tuple[str, str], ...]  # (scope, mode): ("all ports", "SIMPLE"), ("port 80", "DISABLE")
    callers: str  # who may call it


def items(value: Any) -> list[Any]:
    """The items of a list, or of a keyed list normalised to a mapping (meshc.diff.objects)."""
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def spec_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """An Istio object's spec mapping ({} when it has none)."""
    spec = body.get("spec") if isinstance(body, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _locality(entry: Mapping[str, Any]) -> str:
    return str(entry.get("locality") or "")


def service_map(name: str, namespace: str, bodies: Iterable[Mapping[str, Any]]) -> ServiceMap | None:
    """The map of one service from its ServiceEntry, WorkloadEntries and DestinationRules."""
    se: Mapping[str, Any] = {}
    endpoints: list[tuple[str, str, str]] = []
    tls: list[tuple[str, str]] = []
    callers = ""
    for body in bodies:
        kind, spec = body.get("kind"), spec_of(body)
        if kind == "ServiceEntry":
            se = spec
            endpoints += [(str(e.get("address", "")), _locality(e), str(e.get("network") or ""))
                          for e in items(spec.get("endpoints")) if isinstance(e, Mapping)]
        elif kind == "WorkloadEntry":
            endpoints.append((str(spec.get("address", "")), _locality(spec), str(spec.get("network") or "")))
        elif kind == "DestinationRule":
            found = spec.get("trafficPolicy")
            policy: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            if isinstance(policy.get("tls"), Mapping):
                tls.append(("all ports", str(policy["tls"].get("mode", "DISABLE"))))
            for level in items(policy.get("portLevelSettings")):
                if isinstance(level, Mapping) and isinstance(level.get("tls"), Mapping):
                    port = (level.get("port") or {}).get("number", "?")
                    tls.append((f"port {port}", str(level["tls"].get("mode", "DISABLE"))))
            selector = (spec.get("workloadSelector") or {}).get("matchLabels") if isinstance(
                spec.get("workloadSelector"), Mapping) else None
            if isinstance(selector, Mapping) and selector:
                callers = "workloads " + ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
    if not se:
        return None
    exported = [str(x) for x in items(se.get("exportTo"))] or ["*"]
    callers = callers or ("the whole mesh" if "*" in exported else "namespaces " + ", ".join(sorted(exported)))
    ports = tuple(f"{p.get('number')}/{p.get('protocol', '?')}" + (f"→{p['targetPort']}" if p.get("targetPort") else "")
                  for p in items(se.get("ports")) if isinstance(p, Mapping))
    return ServiceMap(name, namespace, str(se.get("location") or "MESH_EXTERNAL"), str(se.get("resolution") or "NONE"),
                      tuple(str(h) for h in items(se.get("hosts"))), ports, tuple(sorted(set(endpoints))),
                      tuple(sorted(set(tls))), callers)


def same_change(a: tuple[ServiceMap | None, ServiceMap | None],
                b: tuple[ServiceMap | None, ServiceMap | None]) -> bool:
    """Two environments' maps of a service show the same change (namespaces aside)."""
    def strip(m: ServiceMap | None) -> ServiceMap | None:
        return None if m is None else replace(m, namespace="")
    return (strip(a[0]), strip(a[1])) == (strip(b[0]), strip(b[1]))


def label(text: str, limit: int = 80) -> str:
    """Text safe inside a quoted Mermaid label: unsafe characters as entities (#NN;)."""
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return "".join(ch if _SAFE.fullmatch(ch) else f"#{ord(ch)};" for ch in text)


def _edge_label(m: ServiceMap) -> str:
    if m.tls:
        return "; ".join(f"{mode} ({scope})" if scope != "all ports" else mode for scope, mode in m.tls)
    return "mTLS (auto)" if m.location == "MESH_INTERNAL" else "as the app sends it"


def mermaid(env: str, before: ServiceMap | None, after: ServiceMap | None, also: Iterable[str] = (),
            prefix: str = "m") -> str:
    """The flowchart of one service in one environment, the change highlighted; node ids start
    with `prefix` (unique per chart on a page)."""
    return _ids(_mermaid(env, before, after, also), prefix)


_ID = re.compile(r"(?<![#\w])(callers|se|dns|more|s|e\d+)(?=[\[( ,\n]|$)")


def _ids(chart: str, prefix: str) -> str:
    """Node ids prefixed, outside quoted labels."""
    parts = chart.split('"')
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        parts[i] = _ID.sub(lambda m: f"{prefix}_{m.group(1)}", parts[i])
    return '"'.join(parts)


def _mermaid(env: str, before: ServiceMap | None, after: ServiceMap | None, also: Iterable[str]) -> str:
    now = after or before
    assert now is not None
    state = "added" if before is None else "removed" if after is None else "same"
    lines = ["```mermaid", "flowchart LR"]
    title = f"{now.name} in {env}" + (f" (same in {', '.join(also)})" if also else "")
    lines.append(f'  subgraph s["{label(title)}"]')
    lines.append(f'    callers(["{label(now.callers)}"])')
    lines.append(f'    se["{label(now.name + " · " + now.location.removeprefix("MESH_").lower())}<br/>'
                 f'{label(", ".join(now.hosts))}<br/>{label(" ".join(now.ports))}"]')
    edge = _edge_label(now)
    old_edge = _edge_label(before) if before is not None else edge
    lines.append(f'    callers -- "{label(edge if edge == old_edge else old_edge + " → " + edge)}" --> se')
    classes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    if state != "same":
        classes[state].append("se")
    elif edge != old_edge or (before and after and (before.hosts != after.hosts or before.ports != after.ports
                                                   or before.callers != after.callers)):
        classes["changed"].append("se")
    old_eps = set(before.endpoints) if before else set()
    new_eps = set(after.endpoints) if after else set()
    drawn = sorted(old_eps | new_eps, key=lambda e: (e not in new_eps - old_eps and e not in old_eps - new_eps, e))
    for i, (address, locality, network) in enumerate(drawn[:MAX_ENDPOINTS]):
        where = " · ".join(x for x in (locality, network) if x)
        lines.append(f'    e{i}["{label(address)}' + (f'<br/>{label(where)}' if where else "") + '"]')
        lines.append(f"    se --> e{i}")
        key = (address, locality, network)
        if key in new_eps - old_eps and state == "same":
            classes["added"].append(f"e{i}")
        elif key in old_eps - new_eps and state == "same":
            classes["removed"].append(f"e{i}")
    if len(drawn) > MAX_ENDPOINTS:
        lines.append(f'    more["{len(drawn) - MAX_ENDPOINTS} more endpoint(s)"]')
        lines.append("    se --> more")
    if not drawn:
        target = "DNS " + ", ".join(now.hosts) if now.resolution.startswith("DNS") else now.resolution.lower()
        lines.append(f'    dns["{label(target)}"]')
        lines.append("    se --> dns")
    lines.append("  end")
    lines += ["  classDef added fill:#dafbe1,stroke:#1a7f37", "  classDef removed fill:#ffebe9,stroke:#cf222e",
              "  classDef changed fill:#fff8c5,stroke:#9a6700"]
    lines += [f"  class {','.join(nodes)} {name}" for name, nodes in classes.items() if nodes]
    lines.append("```")
    return "\n".join(lines)
