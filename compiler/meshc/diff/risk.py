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
  verification-weakened server-name verification removed or widened in a TLS block that keeps
                        originating TLS: subjectAltNames dropped or added to, sni removed,
                        caCertificates removed (the system CAs are trusted instead)
  allow-list-opened     a VM's egress allow-list (iptables MESHC_EGRESS) removed or emptied of
                        its final refusal
  reach-opened          a caller that could not reach a host (blocked: REGISTRY_ONLY and not
                        visible; denied: an AuthorizationPolicy refused it) now reaches it
                        (allowed, or bypass: passthrough around the gateway and its policies)
  capture-lost          a VM workload loses traffic capture (REDIRECT rules or capture chains removed)
  outbound-policy-changed  the proxies' catch-all moves between PassthroughCluster (ALLOW_ANY)
                        and BlackHoleCluster (REGISTRY_ONLY)
  became-external       a ServiceEntry moves from MESH_INTERNAL to MESH_EXTERNAL
  certificate-changed   where a TLS certificate or CA comes from changes (credentialName,
                        clientCertificate, privateKey, caCertificates to another value)
  new-external-host     a MESH_EXTERNAL ServiceEntry is added, or gains a host
  export-widened        exportTo gains "*" or namespaces (unset exportTo means "*")
  reach-changed         any other change of who can reach a host, or by which path (meshc.proxy.reach:
                        verdict allowed/bypass/denied/blocked and path direct/gateway/waypoint/passthrough)
  host-removed          a ServiceEntry, or one of its hosts, is removed
  endpoint-removed      a ServiceEntry endpoint or a WorkloadEntry is removed, or its address changes
  resolution-changed    ServiceEntry spec.resolution changed
  location-changed      ServiceEntry spec.location changed
  iptables-changed      an iptables chain (capture or exclusions) added, removed or changed
  production-touched    anything changed in an environment with `production: true`
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from meshc.diff.maps import items, spec_of
from meshc.diff.model import ChangeSet, EnvChanges, ObjectDiff, ObjectSnapshot, RiskFlag, format_path
from meshc.diff.objects import entry, load_bodies, manifest_listing, read_index
from meshc.diff.rename import leaves
from meshc.proxy.reach import OTHER, WAYPOINT_LABEL, Answer, Caller, Mesh

if TYPE_CHECKING:
    from meshc.diff.sides import EnvData, Side

ORDER = ("tls-weakened", "insecure-skip-verify", "verification-weakened", "allow-list-opened", "reach-opened",
         "capture-lost", "outbound-policy-changed", "new-external-host", "became-external", "export-widened",
         "reach-changed", "certificate-changed", "host-removed", "endpoint-removed", "resolution-changed",
         "location-changed", "iptables-changed", "production-touched")
_TLS_RANK = {"ISTIO_MUTUAL": 3, "MUTUAL": 3, "SIMPLE": 2}
Body = Mapping[str, Any]


def find_risks(cs: ChangeSet, sides: tuple[Side, Side] | None = None) -> tuple[RiskFlag, ...]:
    """The flags of a change set. With the two sides it came from (`sides`: base, head), the
    reach flags compare the visibility answers over each side's objects of the touched services
    and every Sidecar; without them, over the changed objects alone (an unchanged Gateway,
    VirtualService or AuthorizationPolicy on the path is then not seen)."""
    flags: list[RiskFlag] = []
    for env in cs.envs.values():
        flags.extend(_env_flags(env))
        base = sides[0].envs.get(env.env) if sides is not None else None
        head = sides[1].envs.get(env.env) if sides is not None else None
        flags.extend(_reach_flags(env, base, head, sides is not None))
    return tuple(sorted(set(flags), key=lambda f: (ORDER.index(f.code), f.env, f.object, f.message)))


def _env_flags(env: EnvChanges) -> Iterator[RiskFlag]:
    for snap in env.added:
        yield from _flags(env.env, str(snap.id), snap.id.kind, {}, snap.norm, snap.source, added=True)
    gone = _vms_gone(env)
    # a DestinationRule that moved (the same host's rule removed in one namespace and added in
    # another: a service put through the egress gateway) is compared with where it went
    moved_to = {str(spec_of(a.norm).get("host")): a.norm for a in env.added if a.id.kind == "DestinationRule"}
    for snap in env.removed:
        if snap.id.kind == "IptablesChain" and snap.id.namespace in gone:
            continue  # the VM itself is gone: its endpoint-removed flag says so, once
        after: Body = {}
        if snap.id.kind == "DestinationRule":
            after = moved_to.get(str(spec_of(snap.norm).get("host")), {})
        yield from _flags(env.env, str(snap.id), snap.id.kind, snap.norm, after, snap.source, removed=not after)
    for file, name in sorted(gone.items()):
        if name is None:  # the endpoint is still declared: the workload lost its sidecar's capture
            yield RiskFlag("capture-lost", env.env, f"workload {file.removeprefix('iptables/')}",
                           f"{file.removeprefix('iptables/').removesuffix('.rules')} is no longer captured "
                           "(its iptables rules are removed while it stays declared)", file)
    for diff in env.modified + env.renamed:
        yield from _flags(env.env, _name(diff), diff.id.kind, diff.before, diff.after, diff.source)
    if env.production and not env.empty:
        count = sum(1 for _ in env.objects())
        yield RiskFlag("production-touched", env.env, f"environment {env.env}",
                       f"production environment {env.env} changes: {count} object(s)", env.env_source)


def _vms_gone(env: EnvChanges) -> dict[str, str | None]:
    """iptables files removed whole (their nat MESHC_OUTPUT chain, which every file has, is
    removed) -> the WorkloadEntry removed with them (None: the VM is still declared)."""
    files = {s.id.namespace for s in env.removed
             if s.id.kind == "IptablesChain" and s.id.name.endswith("nat/MESHC_OUTPUT")}
    removed_workloads = {s.id.name for s in env.removed if s.id.kind == "WorkloadEntry"}
    out: dict[str, str | None] = {}
    for file in files:
        stem = file.removeprefix("iptables/").removesuffix(".rules")
        out[file] = stem if stem in removed_workloads else None
    return out


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
        old, new = spec_of(before).get("address"), spec_of(after).get("address")
        if old is not None and old != new:
            yield flag("endpoint-removed", f"workload address {old} " +
                       ("removed" if removed else f"replaced by {new}"))
    elif kind == "IptablesChain":
        yield from (flag(c, m) for c, m in _capture(obj, before, after))
        yield flag("iptables-changed", _iptables(obj, before, after))
    elif kind == "EnvoyListener":
        yield from (flag(c, m) for c, m in _outbound_policy(before, after))
    if kind in ("ServiceEntry", "DestinationRule") and not added and not removed:
        wider = _exported(after) - _exported(before)
        if wider and "*" not in _exported(before):
            yield flag("export-widened", f"exportTo widened to include {', '.join(sorted(wider))}")


def _exported(body: Body) -> set[str]:
    spec = spec_of(body)
    return {str(x) for x in items(spec["exportTo"])} if spec.get("exportTo") else {"*"}


def _service_entry(before: Body, after: Body, added: bool, removed: bool) -> Iterator[tuple[str, str]]:
    b, a = spec_of(before), spec_of(after)
    b_hosts, a_hosts = set(map(str, items(b.get("hosts")))), set(map(str, items(a.get("hosts"))))
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
    if not added and not removed and b.get("location") == "MESH_INTERNAL" and \
            a.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL":
        yield "became-external", ("hosts " + ", ".join(sorted(a_hosts)) + " move from MESH_INTERNAL to "
                                  "MESH_EXTERNAL: no mTLS, no service-account identity, external metrics")


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
    yield from _verification(before, after)


_CERT_FIELDS = ("credentialName", "clientCertificate", "privateKey", "caCertificates")


def _tls_blocks(body: Body, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Body]:
    """Every `tls` mapping of a DestinationRule body, by path."""
    out: dict[tuple[Any, ...], Body] = {}
    if isinstance(body, Mapping):
        for key, value in body.items():
            if key == "tls" and isinstance(value, Mapping):
                out[(*path, key)] = value
            else:
                out.update(_tls_blocks(value, (*path, key)))
    return out


def _verification(before: Body, after: Body) -> Iterator[tuple[str, str]]:
    """Server-name verification removed or widened, and certificate sources changed, in TLS
    blocks that originate TLS on both sides (a weaker mode is tls-weakened)."""
    b_blocks, a_blocks = _tls_blocks(before), _tls_blocks(after)
    for path, old in sorted(b_blocks.items(), key=lambda kv: repr(kv[0])):
        new = a_blocks.get(path)
        if new is None or _TLS_RANK.get(str(new.get("mode")), 0) < 2 or _TLS_RANK.get(str(old.get("mode")), 0) < 2:
            continue
        where = format_path(path)
        old_sans = set(map(str, items(old.get("subjectAltNames"))))
        new_sans = set(map(str, items(new.get("subjectAltNames"))))
        if old_sans and not new_sans:
            yield "verification-weakened", (f"subjectAltNames removed at {where}: the server's name is no "
                                            "longer checked against a list")
        elif old_sans and new_sans - old_sans:
            yield "verification-weakened", (f"subjectAltNames widened at {where}: now also accepts "
                                            f"{', '.join(sorted(new_sans - old_sans))}")
        if old.get("sni") and not new.get("sni"):
            yield "verification-weakened", f"sni removed at {where}"
        if old.get("caCertificates") and not new.get("caCertificates") and not new.get("credentialName"):
            yield "verification-weakened", (f"caCertificates removed at {where}: every CA of the system "
                                            "bundle is trusted")
        changed = [f for f in _CERT_FIELDS if old.get(f) and new.get(f) and old.get(f) != new.get(f)]
        if changed:
            yield "certificate-changed", f"certificate source changed at {where}: {', '.join(changed)}"


def _capture(obj: str, before: Body, after: Body) -> Iterator[tuple[str, str]]:
    """allow-list-opened and capture-lost, from one iptables chain's change."""
    chain = str((after or before).get("chain", ""))
    b_rules = [str(r) for r in items(before.get("rules"))] if before else []
    a_rules = [str(r) for r in items(after.get("rules"))] if after else []
    a_set = set(a_rules)
    workload = obj.split("/", 2)[-1].rsplit(".rules", 1)[0] if "/" in obj else obj
    if chain == "MESHC_EGRESS":
        refused = [r for r in b_rules if r.endswith(("-j DROP", "-j REJECT")) or " -j REJECT " in r]
        if before and (not after or (refused and not any(r in a_set for r in refused))):
            yield "allow-list-opened", f"{workload}: the egress allow-list no longer refuses undeclared destinations"
    gone = [r for r in b_rules if " -j REDIRECT" in r and r not in a_set]
    if before and (not after and chain.startswith("MESHC_") and chain.endswith(("REDIRECT", "INBOUND", "OUTPUT"))
                   or gone):
        more = f", {len(gone)} redirect rule(s)" if gone else ""
        yield "capture-lost", f"{workload}: traffic capture removed ({chain}{more})"


_FALLBACKS = ("PassthroughCluster", "BlackHoleCluster")


def _outbound_policy(before: Body, after: Body) -> Iterator[tuple[str, str]]:
    """The catch-all of an outbound listener moves between PassthroughCluster and BlackHoleCluster."""
    def fallbacks(body: Body) -> set[str]:
        return {str(v) for v in leaves(body).values() if str(v) in _FALLBACKS}
    old, new = fallbacks(before), fallbacks(after)
    if before and after and old != new and (old | new) == set(_FALLBACKS):
        to = "ALLOW_ANY (unknown destinations pass)" if "PassthroughCluster" in new else \
            "REGISTRY_ONLY (unknown destinations are refused)"
        yield "outbound-policy-changed", f"outbound traffic policy becomes {to}"


def _iptables(obj: str, before: Body, after: Body) -> str:
    b_rules = [str(r) for r in items(before.get("rules"))] if before else []
    a_rules = [str(r) for r in items(after.get("rules"))] if after else []
    b_set, a_set = set(b_rules), set(a_rules)
    plus = [r for r in a_rules if r not in b_set]
    minus = [r for r in b_rules if r not in a_set]
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


# --- who can reach what (meshc.proxy.reach) ----------------------------------------------------

REACH_KINDS = ("ServiceEntry", "VirtualService", "Gateway", "AuthorizationPolicy", "Sidecar")
_CLOSED = ("blocked", "denied")
_SHOWN = 4  # caller changes named per flag; the rest are counted


def _reach_flags(env: EnvChanges, base: EnvData | None, head: EnvData | None,
                 have_sides: bool) -> Iterator[RiskFlag]:
    """reach-opened / reach-changed: the answers of meshc.proxy.reach for the hosts the change
    touches, before and after, per caller the objects mention. Cheap by construction: only the
    touched services' objects and the Sidecars are read from each side, only hosts known on both
    sides are compared (a new or removed host is new-external-host / host-removed), and the mesh's
    outbound policy, which the bundle does not record, is tried both ways (each Sidecar's own
    outboundTrafficPolicy still wins)."""
    changed = [(_bodies(kind, item), item) for kind, item in env.objects() if item.id.kind in REACH_KINDS]
    if not changed:
        return
    services = {item.service for _, item in changed if item.service}
    if have_sides:
        b_objs, h_objs = _side_objects(base, services), _side_objects(head, services)
    else:
        b_objs = [before for (before, _), _ in changed if before]
        h_objs = [after for (_, after), _ in changed if after]
    # host -> the changed object (its name and declaration) the flag is raised on
    owner: dict[str, tuple[str, str]] = {}
    # a service's own objects first: a consumer Sidecar changes because a declaration did
    for (before, after), item in sorted(changed, key=lambda c: not c[1].service):
        for host in sorted(_named_hosts(before) | _named_hosts(after)):
            owner.setdefault(host, (_name(item) if isinstance(item, ObjectDiff) else str(item.id), item.source))
    first = changed[0][1]
    fallback = (_name(first) if isinstance(first, ObjectDiff) else str(first.id), first.source)
    every = list(b_objs) + list(h_objs)
    for body in every:  # the touched services' hosts (a changed policy need not name its host)
        if str(body.get("kind")) == "ServiceEntry":
            for host in map(str, items(spec_of(body).get("hosts"))):
                owner.setdefault(host, fallback)
    trust = _trust_domain(every)
    ambient = any(str(_labels(b).get(WAYPOINT_LABEL) or "") not in ("", "none") for b in every
                  if str(b.get("kind")) == "ServiceEntry")
    dataplane = "ambient" if ambient else "sidecar"
    pairs = {p: (Mesh(b_objs, p, trust, dataplane), Mesh(h_objs, p, trust, dataplane))
             for p in ("REGISTRY_ONLY", "ALLOW_ANY")}
    old_any, new_any = pairs["ALLOW_ANY"]
    callers = sorted({c for m in (old_any, new_any) for c in m.callers()},
                     key=lambda c: (c.namespace == OTHER, c.namespace, c.service_account or ""))
    for host in sorted(owner):
        if not (old_any.knows(host) and new_any.knows(host)):
            continue
        opened, other = _caller_changes(pairs, host, callers)
        if opened or other:
            lines = opened + other
            more = f"; and {len(lines) - _SHOWN} more caller change(s)" if len(lines) > _SHOWN else ""
            obj, source = owner[host]
            yield RiskFlag("reach-opened" if opened else "reach-changed", env.env, obj,
                           f"who can reach {host} changes: " + "; ".join(lines[:_SHOWN]) + more, source)


def _caller_changes(pairs: Mapping[str, tuple[Mesh, Mesh]], host: str,
                    callers: Sequence[Caller]) -> tuple[list[str], list[str]]:
    """Per caller whose answer changes: 'caller: old verdict (path) -> new verdict (path)', with
    the policy it holds under when only one, and the head side's deciding object; opened first."""
    opened: list[str] = []
    other: list[str] = []
    for caller in callers:
        seen: dict[tuple[str, str, str, str], list[tuple[str, Answer]]] = {}
        for policy, (old_mesh, new_mesh) in pairs.items():
            old, new = old_mesh.reach(host, caller), new_mesh.reach(host, caller)
            if (old.verdict, old.path) != (new.verdict, new.path):
                seen.setdefault((old.verdict, old.path, new.verdict, new.path), []).append((policy, new))
        for (ov, op, nv, np_), found in seen.items():
            when = "" if len(found) == len(pairs) else f" (mesh outbound policy {found[0][0]})"
            line = f"{caller}: {ov} ({op}) -> {nv} ({np_}){when}{_why(found[0][1])}"
            (opened if ov in _CLOSED and nv not in _CLOSED else other).append(line)
    return opened, other


def _why(answer: Answer) -> str:
    """The deciding reason of an answer: the last one naming an object."""
    named = [r for r in answer.reasons if r.object != "mesh"]
    return f" [{named[-1]}]" if named else ""


def _bodies(kind: str, item: ObjectSnapshot | ObjectDiff) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(before, after) of a changed object ({} on the side it is absent from)."""
    if isinstance(item, ObjectDiff):
        return item.before, item.after
    return ({}, item.norm) if kind == "added" else (item.norm, {})


def _labels(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _named_hosts(body: Mapping[str, Any]) -> set[str]:
    """The hosts an object names: ServiceEntry and VirtualService hosts, Gateway server hosts,
    AuthorizationPolicy operation hosts and connection.sni values, Sidecar egress hosts without
    a wildcard."""
    if not body:
        return set()
    spec, kind = spec_of(body), str(body.get("kind"))
    out: set[str] = set()
    if kind in ("ServiceEntry", "VirtualService"):
        out.update(map(str, items(spec.get("hosts"))))
    elif kind == "Gateway":
        for server in items(spec.get("servers")):
            if isinstance(server, Mapping):
                out.update(str(h).rpartition("/")[2] for h in items(server.get("hosts")))
    elif kind == "AuthorizationPolicy":
        for rule in items(spec.get("rules")):
            rule = rule if isinstance(rule, Mapping) else {}
            for op in items(rule.get("to")):
                operation = op.get("operation") if isinstance(op, Mapping) else None
                if isinstance(operation, Mapping):
                    out.update(map(str, items(operation.get("hosts"))))
            for cond in items(rule.get("when")):
                if isinstance(cond, Mapping) and cond.get("key") == "connection.sni":
                    out.update(map(str, items(cond.get("values"))))
    elif kind == "Sidecar":
        for listener in items(spec.get("egress")):
            if isinstance(listener, Mapping):
                out.update(str(h).partition("/")[2] for h in items(listener.get("hosts")))
    return {h for h in out if h and "*" not in h}


def _trust_domain(bodies: Iterable[Mapping[str, Any]]) -> str:
    """The trust domain the policies' principals name ("td/ns/N/sa/SA"), else cluster.local: the
    bundle does not record env.yaml's, and callers are matched against the policies' own."""
    for body in bodies:
        if str(body.get("kind")) != "AuthorizationPolicy":
            continue
        for rule in items(spec_of(body).get("rules")):
            for src in items(rule.get("from") if isinstance(rule, Mapping) else None):
                source = src.get("source") if isinstance(src, Mapping) else None
                for p in items(source.get("principals") if isinstance(source, Mapping) else None):
                    parts = str(p).split("/")
                    if len(parts) == 5 and parts[1] == "ns" and "*" not in parts[0]:
                        return parts[0]
    return "cluster.local"


def _side_objects(data: EnvData | None, services: set[str]) -> list[Mapping[str, Any]]:
    """The objects of one side that decide the touched services' reach: every object of a
    REACH_KINDS kind that belongs to a touched service, and every Sidecar."""
    if data is None:
        return []
    listing = manifest_listing(data.index if data.index is not None else read_index(data.view))
    wanted = [entry(k, raw) for k, raw in sorted(listing.items())
              if k[0] in REACH_KINDS and (k[0] == "Sidecar" or str(raw.get("service") or "") in services)]
    bodies = load_bodies(data.view, wanted)
    return [bodies[e.id] for e in wanted if e.id in bodies]
