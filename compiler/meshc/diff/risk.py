"""Risk flags of `meshc diff`, computed from the change model (never from rendered text).

Input: a `ChangeSet` after the ignore filter and before masking (bodies are normalised, see
`meshc.diff_objects`). Output: `RiskFlag`s sorted by severity rank, environment, object.
Each flag names the object and the declaration (file:line) behind it: the head side's for added,
modified and renamed objects, the base side's for removed ones.

Codes (most severe first):
  tls-weakened          DestinationRule TLS mode goes from ISTIO_MUTUAL/MUTUAL/SIMPLE to a weaker
                        one (MUTUAL/ISTIO_MUTUAL -> SIMPLE, anything -> DISABLE or unset), or a
                        DestinationRule with TLS origination is removed
  insecure-skip-verify  tls.insecureSkipVerify turned on (anywhere in a DestinationRule)
  new-external-host     a MESH_EXTERNAL ServiceEntry is added, or gains a host
  export-widened        exportTo gains "*" or namespaces (unset exportTo means "*")
  host-removed          a ServiceEntry, or one of its hosts, is removed
  endpoint-removed      a ServiceEntry endpoint or a WorkloadEntry is removed, or its address changes
  resolution-changed    ServiceEntry spec.resolution changed
  location-changed      ServiceEntry spec.location changed
  iptables-changed      an iptables chain (capture or exclusions) added, removed or changed
  production-touched    anything changed in an environment with `production: true`
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshc.diff.model import ChangeSet, EnvChanges, ObjectDiff, RiskFlag, format_path
from meshc.diff.rename import leaves

ORDER = ("tls-weakened", "insecure-skip-verify", "new-external-host", "export-widened",
         "host-removed", "endpoint-removed", "resolution-changed", "location-changed",
         "iptables-changed", "production-touched")
_TLS_RANK = {"ISTIO_MUTUAL": 3, "MUTUAL": 3, "SIMPLE": 2}
Body = Mapping[str, Any]


def find_risks(cs: ChangeSet) -> tuple[RiskFlag, ...]:
    flags: list[RiskFlag] = []
    for env in cs.envs.values():
        flags.extend(_env_flags(env))
    return tuple(sorted(set(flags), key=lambda f: (ORDER.index(f.code), f.env, f.object, f.message)))


def _env_flags(env: EnvChanges) -> Iterator[RiskFlag]:
    for snap in env.added:
        yield from _flags(env.env, str(snap.id), snap.id.kind, {}, snap.norm, snap.source, added=True)
    for snap in env.removed:
        yield from _flags(env.env, str(snap.id), snap.id.kind, snap.norm, {}, snap.source, removed=True)
    for diff in env.modified + env.renamed:
        yield from _flags(env.env, _name(diff), diff.id.kind, diff.before, diff.after, diff.source)
    if env.production and not env.empty:
        count = sum(1 for _ in env.objects())
        yield RiskFlag("production-touched", env.env, f"environment {env.env}",
                       f"production environment {env.env} changes: {count} object(s)", env.env_source)


def _name(diff: ObjectDiff) -> str:
    return f"{diff.old} -> {diff.id}" if diff.old else str(diff.id)


def _flags(env: str, obj: str, kind: str, before: Body, after: Body, source: str,
           added: bool = False, removed: bool = False) -> Iterator[RiskFlag]:
    def flag(code: str, message: str) -> RiskFlag:
        return RiskFlag(code, env, obj, message, source)

    if kind == "ServiceEntry":
        yield from (flag(c, m) for c, m in _service_entry(before, after, added, removed))
    elif kind == "DestinationRule":
        yield from (flag(c, m) for c, m in _tls(before, after))
    elif kind == "WorkloadEntry":
        old, new = _spec(before).get("address"), _spec(after).get("address")
        if old is not None and old != new:
            yield flag("endpoint-removed", f"workload address {old} " +
                       ("removed" if removed else f"replaced by {new}"))
    elif kind == "IptablesChain":
        yield flag("iptables-changed", _iptables(obj, before, after))
    if kind in ("ServiceEntry", "DestinationRule") and not added and not removed:
        wider = _exported(after) - _exported(before)
        if wider and "*" not in _exported(before):
            yield flag("export-widened", f"exportTo widened to include {', '.join(sorted(wider))}")


def _spec(body: Body) -> Body:
    spec = body.get("spec") if isinstance(body, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _items(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def _exported(body: Body) -> set[str]:
    spec = _spec(body)
    return {str(x) for x in _items(spec["exportTo"])} if spec.get("exportTo") else {"*"}


def _service_entry(before: Body, after: Body, added: bool, removed: bool) -> Iterator[tuple[str, str]]:
    b, a = _spec(before), _spec(after)
    b_hosts, a_hosts = set(map(str, _items(b.get("hosts")))), set(map(str, _items(a.get("hosts"))))
    new_hosts = sorted(a_hosts - b_hosts)
    if new_hosts and a.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL":
        what = "new MESH_EXTERNAL ServiceEntry" if added else "host(s) added to a MESH_EXTERNAL ServiceEntry"
        yield "new-external-host", f"{what}: {', '.join(new_hosts)}"
    gone_hosts = sorted(b_hosts - a_hosts)
    if gone_hosts:
        yield "host-removed", ("ServiceEntry removed; hosts " if removed else "hosts removed: ") + ", ".join(gone_hosts)
    b_eps, a_eps = b.get("endpoints"), a.get("endpoints")
    if not removed and isinstance(b_eps, Mapping):
        gone = sorted(str(k) for k in b_eps if not isinstance(a_eps, Mapping) or k not in a_eps)
        if gone:
            yield "endpoint-removed", f"endpoints removed: {', '.join(gone)}"
    for key, code in (("resolution", "resolution-changed"), ("location", "location-changed")):
        if not added and not removed and b.get(key) != a.get(key):
            yield code, f"{key} {b.get(key, 'unset')} -> {a.get(key, 'unset')}"


def _tls(before: Body, after: Body) -> Iterator[tuple[str, str]]:
    b, a = leaves(before), leaves(after)
    for path, mode in sorted(b.items(), key=lambda kv: repr(kv[0])):
        if path[-2:] == ("tls", "mode") and _TLS_RANK.get(str(mode), 0) > 0:
            new = a.get(path)
            if _TLS_RANK.get(str(new), 0) < _TLS_RANK[str(mode)]:
                where = format_path(path[:-1])
                now = "removed" if not after else f"-> {new}" if new is not None else "-> unset"
                yield "tls-weakened", f"TLS origination weakened at {where}: {mode} {now}"
    for path, value in sorted(a.items(), key=lambda kv: repr(kv[0])):
        if path[-2:] == ("tls", "insecureSkipVerify") and value is True and b.get(path) is not True:
            yield "insecure-skip-verify", f"insecureSkipVerify turned on at {format_path(path[:-1])}"


def _iptables(obj: str, before: Body, after: Body) -> str:
    b_rules = [str(r) for r in _items(before.get("rules"))] if before else []
    a_rules = [str(r) for r in _items(after.get("rules"))] if after else []
    plus = [r for r in a_rules if r not in b_rules]
    minus = [r for r in b_rules if r not in a_rules]
    kinds = sorted({_rule_kind(r) for r in plus + minus}) or ["order or policy"]
    state = "added" if not before else "removed" if not after else "changed"
    return (f"iptables chain {state}: +{len(plus)}/-{len(minus)} rule(s) affecting "
            f"{', '.join(kinds)}")


def _rule_kind(rule: str) -> str:
    if " -j RETURN" in rule or " -j ACCEPT" in rule:
        return "exclusions"
    if any(t in rule for t in (" -j REDIRECT", " -j TPROXY", " -j ISTIO", " -j MESHC")):
        return "capture"
    return "other rules"
