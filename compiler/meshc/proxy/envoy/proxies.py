"""The Envoy files of one environment: one configuration per proxy, what they share written once.

Input: the environment's Istio objects, the egress proxy (`Proxy`: the standalone egress Envoy,
with env.yaml's `proxy:` settings) and one `Proxy` per VM workload group (its namespace, labels,
locality and network: `meshc.proxy.workloads`). Output (`ProxyFiles`), files under ``envoy/``:

* ``clusters.json`` / ``listeners.json``: Envoy DiscoveryResponses (CDS / LDS from the file
  system) with every cluster and listener that is the same for every proxy: the bulk of the
  configuration, written once whatever the number of groups;
* ``bootstrap.json``: the egress proxy's Bootstrap: its node, the two shared files (named under
  `ProxySettings.config_dir`) and, as static resources, its own version of every cluster or
  listener that differs between proxies, and the agent clusters (sds-grpc, xds-grpc) it needs;
* ``views/<locality>-<hash>.json``: the same for each distinct *view*: what a group's clusters
  depend on (its locality, the workloadSelector DRs that select it, its labels a failoverPriority
  names). Hundreds of groups in a few localities share a few views;
* ``workloads/<group>.json``: the group's ``node`` only (Istio's node id of its first host, its
  locality, and metadata naming its view and hosts), merged into the view at start:
  ``envoy -c views/<view>.json --config-yaml "$(cat workloads/<group>.json)"``.

A cluster or listener that differs between proxies is written to the shared file in the version
most proxy files have; the files whose version differs hold theirs as a static resource, which
shadows the shared one: Envoy never lets CDS or LDS replace a static cluster or listener (it
skips the update: `ClusterData::blockUpdate`, source/common/upstream/cluster_manager_impl.h;
"duplicate/locked listener ... no add/update", source/common/listener_manager/
listener_manager_impl.cc). A name some proxy lacks is never shared (a static resource cannot
remove a CDS one).

A service's clusters are rebuilt for a view only when they can differ: its DR differs for the
view, or the DR enables locality load balancing (outlier detection or localityLbSetting: the
priorities depend on the client). The egress proxy's full configuration (`bootstrap`, one static
Bootstrap, with `sources`) is what the envoy check layer validates; each view's own static part
is validated as well (`workload_sources`).

Invariants: deterministic; the shared files plus a proxy's own part hold exactly the clusters and
listeners `build_bootstrap` gives that proxy (tests/test_workloads.py); no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_GATEWAY, ENVOY_LISTENERS, ENVOY_WORKLOADS
from meshc.model.core import EnvSettings
from meshc.model.ids import ObjectId
from meshc.model.settings import ProxySettings
from meshc.proxy.envoy.bootstrap import (
    BuiltProxy,
    Memo,
    Path,
    build_proxy,
    cluster_sources,
    clusters_of,
    listener_sources,
    rule_picker,
    with_specials,
)
from meshc.proxy.envoy.cluster import (
    ADS_CONFIG,
    BuiltCluster,
    Relocations,
    relocated,
    special_clusters,
)
from meshc.proxy.envoy.endpoints import client_labels
from meshc.proxy.envoy.gateway import build_gateway
from meshc.proxy.envoy.istio import (
    DestRule,
    load_destination_rules,
    load_selector_rules,
    load_services,
    rules_selecting,
    visible,
    with_mesh_routes,
)
from meshc.proxy.envoy.listener import BuiltListener, build_listeners

Json = dict[str, Any]
CLUSTERS_FILE = ENVOY_CLUSTERS
LISTENERS_FILE = ENVOY_LISTENERS
BOOTSTRAP_FILE = ENVOY_BOOTSTRAP
GATEWAY_FILE = ENVOY_GATEWAY
WORKLOADS_DIR = ENVOY_WORKLOADS
VIEWS_DIR = "envoy/views"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


@dataclass(frozen=True)
class Proxy:
    """A proxy the bundle configures: its settings and its Bootstrap `node`."""

    name: str  # "" for the egress proxy, else the workload group (envoy/workloads/<name>.json)
    settings: ProxySettings
    node: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ProxyFiles:
    bootstrap: Json  # the egress proxy's configuration as one static Bootstrap (checked)
    sources: dict[Path, ObjectId]
    files: dict[str, Json]  # bundle path -> document
    workload_sources: dict[str, dict[Path, ObjectId]]  # view file -> its static paths' origins
    shadowed: Json = field(default_factory=dict)  # shared resources the egress proxy shadows (checked apart)


def _client_dependent(rule: DestRule | None, seen: dict[int, bool]) -> bool:
    """Whether a DR's clusters depend on the client's locality or labels: locality load balancing
    applies only with outlier detection or a localityLbSetting (`applyLocalityLoadBalancer`)."""
    if rule is None:
        return False
    if id(rule) not in seen:
        text = orjson.dumps([rule.traffic_policy, rule.subsets])
        seen[id(rule)] = b'"outlierDetection"' in text or b'"localityLbSetting"' in text
    return seen[id(rule)]


@dataclass
class _Variant:
    """What a proxy has that differs from the egress proxy."""

    clusters: dict[str, BuiltCluster]  # its own version of these names
    removed: set[str]  # names the egress proxy has and it does not
    listeners: dict[str, BuiltListener]
    listeners_removed: set[str]


def _variant(services: Sequence[Any], egress: BuiltProxy, egress_pick: Any, pick: Any, settings: ProxySettings,
             owned: Mapping[int, Sequence[str]], relocations: Relocations) -> _Variant:
    """What a proxy with `settings` (and DR choice `pick`) has that differs from the egress proxy;
    `owned`: service index -> the names of the egress clusters it produced and kept; `relocations`:
    what `relocated` made for the views so far."""
    produced: dict[int, list[BuiltCluster]] = {}
    rules_differ = False
    seen: dict[int, bool] = {}
    for index, service in enumerate(services):
        rule = pick(service)
        same_rule = rule is egress_pick(service)
        if same_rule and not _client_dependent(rule, seen):
            continue
        rules_differ = rules_differ or not same_rule
        if same_rule:  # only the load assignments differ: rebuild those, keep the rest
            produced[index] = [relocated(egress.clusters[name], service, rule, settings, relocations)
                               for name in owned.get(index, ())]
        else:
            produced[index] = clusters_of(service, rule, settings)
    if rules_differ:  # another DR can add or drop names: first producer wins again, over every service
        mine: dict[str, BuiltCluster] = {}
        for index in range(len(services)):
            found = produced.get(index)
            if found is None:
                found = [egress.clusters[name] for name in owned.get(index, ())] + egress.losers.get(index, [])
            for built in found:
                mine.setdefault(built.name, built)
    else:  # the same names, some load assignments rebuilt
        mine = {built.name: built for found in produced.values() for built in found}
    removed = set(egress.clusters) - set(mine) if rules_differ else set()
    clusters = {name: built for name, built in mine.items()
                if name not in egress.clusters or (egress.clusters[name] is not built
                                                   and egress.clusters[name].body != built.body)}
    listeners: dict[str, BuiltListener] = {}
    listeners_removed: set[str] = set()
    if rules_differ:
        ours = {built.name: built for built in build_listeners(list(services), pick, settings)}
        theirs = {built.name: built for built in egress.listeners}
        listeners = {n: b for n, b in ours.items() if n not in theirs or theirs[n].body != b.body}
        listeners_removed = set(theirs) - set(ours)
    return _Variant(clusters, removed, listeners, listeners_removed)


def gateway_proxy(env: EnvSettings) -> Proxy | None:
    """The egress gateway's proxy (env.yaml `egress.gateway`, sidecar data plane): its namespace,
    its pods' labels (the selector), no locality; its node as istiod names a gateway
    (`router~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>`, with the Service's name for the pod
    and 0.0.0.0 for its address: start each pod with `--service-node`)."""
    gw = env.egress.gateway
    if gw is None or env.dataplane != "sidecar":
        return None
    ns = gw.namespace
    labels = tuple(sorted(gw.selector))
    node = {"id": f"router~0.0.0.0~{gw.name}.{ns}~{ns}.svc.{env.cluster_domain}", "cluster": f"{gw.name}.{ns}",
            "metadata": {"NAMESPACE": ns, "LABELS": dict(labels)}}
    return Proxy(gw.name, replace(env.proxy, namespace=ns, labels=labels, locality=""), node)


def _discovery(type_url: str, bodies: Sequence[Json]) -> Json:
    return {"resources": [{"@type": type_url, **body} for body in bodies]}


def _config_source(config_dir: str, file: str) -> Json:
    """A file config source that reloads when the folder's contents are swapped by a rename (the
    way a Kubernetes ConfigMap volume updates: `watched_directory`)."""
    folder = config_dir.rstrip("/") or "/"
    path = f"{folder.rstrip('/')}/{file.rsplit('/', 1)[-1]}"
    return {"path_config_source": {"path": path, "watched_directory": {"path": folder}},
            "resource_api_version": "V3"}


def _proxy_bootstrap(proxy: Proxy, clusters: list[BuiltCluster], listeners: list[BuiltListener],
                     with_ads: bool) -> Json:
    dynamic: Json = {"cds_config": _config_source(proxy.settings.config_dir, CLUSTERS_FILE),
                     "lds_config": _config_source(proxy.settings.config_dir, LISTENERS_FILE)}
    if with_ads:
        dynamic["ads_config"] = ADS_CONFIG
    out: Json = {}
    if proxy.node:
        out["node"] = dict(proxy.node)
    out["dynamic_resources"] = dynamic
    out["static_resources"] = {"listeners": [b.body for b in listeners], "clusters": [b.body for b in clusters]}
    return out


def _failover_keys(rules: Sequence[DestRule]) -> set[str]:
    """The label keys any failoverPriority names: the only client labels clusters depend on."""
    keys: set[str] = set()
    for rule in rules:
        for policy in [rule.traffic_policy, *((s.get("trafficPolicy") or {}) for s in rule.subsets)]:
            for level in [policy, *(policy.get("portLevelSettings") or [])]:
                setting = ((level.get("loadBalancer") or {}).get("localityLbSetting") or {})
                keys.update(str(entry).partition("=")[0] for entry in setting.get("failoverPriority") or [])
    return keys


def _view_name(key: tuple[Any, ...]) -> str:
    place = str(key[0]).replace("/", ".") or "any"
    return f"{VIEWS_DIR}/{place}-{hashlib.sha256(repr(key).encode()).hexdigest()[:10]}.json"


def build_proxy_files(manifests: Sequence[Mapping[str, Any]], egress: Proxy, groups: Sequence[Proxy],
                      memo: Mapping[str, Any] | None = None, used: Memo | None = None,
                      gateway: Proxy | None = None) -> ProxyFiles:
    """`gateway`: the environment's egress gateway (env.yaml egress.gateway); its configuration,
    when Gateways select it, is `envoy/gateway.json` (meshc.proxy.envoy.gateway)."""
    settings = egress.settings
    services = with_mesh_routes(load_services(manifests, settings.trust_domain), manifests, settings.cluster_domain)
    rules = load_destination_rules(manifests, settings.cluster_domain)
    selector_rules = load_selector_rules(manifests, settings.cluster_domain)
    egress_pick = rule_picker(settings, rules, selector_rules)
    base = build_proxy(services, egress_pick, settings, memo, used)
    failover_keys = _failover_keys([r for per_ns in rules.values() for r in per_ns] + selector_rules)
    # what the proxy's namespace can see: DRs and VirtualService routes exported to some namespaces only
    restricted = [(r.export_to, r.ident.namespace) for per_ns in rules.values() for r in per_ns
                  if r.export_to and "*" not in r.export_to]
    restricted += [(m.export_to, m.vs.namespace) for s in services for m in s.mesh_routes
                   if m.export_to and "*" not in m.export_to]
    sights: dict[str, tuple[bool, ...]] = {}

    def sight(namespace: str) -> tuple[bool, ...]:
        if namespace not in sights:
            sights[namespace] = tuple(visible(e, owner, namespace) for e, owner in restricted)
        return sights[namespace]

    def view_key(proxy: Proxy) -> tuple[Any, ...]:
        """What a group's clusters depend on: its locality, the selector DRs that select it, and
        its labels that a failoverPriority names; groups with the same key share one view file.
        A group whose namespace sees other DRs or VirtualServices than the egress proxy's (exportTo)
        has its namespace in the key as well."""
        ps = proxy.settings
        labels = client_labels(ps.locality, ps.labels)
        chosen = rules_selecting(selector_rules, ps.namespace, labels) if ps.namespace else []
        key = (ps.locality, bool(ps.locality or ps.labels), tuple(r.ident for r in chosen),
               tuple((k, v) for k, v in sorted(labels.items()) if k in failover_keys))
        return key if sight(ps.namespace) == sight(settings.namespace) else (*key, ps.namespace)

    views: dict[tuple[Any, ...], Proxy] = {}
    for group in groups:
        views.setdefault(view_key(group), group)
    # the views' clusters are built without the memo: keyed by each view's settings, they would
    # grow the build cache by views x locality-dependent services, and hashing them costs as
    # much as building them
    owned: dict[int, list[str]] = {}
    for name, index in base.winner.items():
        owned.setdefault(index, []).append(name)
    relocations = Relocations(home=settings)
    variants = {key: _variant(services, base, egress_pick, rule_picker(g.settings, rules, selector_rules),
                              g.settings, owned, relocations)
                for key, g in sorted(views.items(), key=lambda kv: repr(kv[0]))}
    full = with_specials(base.clusters, settings)
    listeners = base.listeners
    specials = {c.name for c in full} - set(base.clusters)

    # Each proxy's version of every cluster and listener that differs somewhere; the version most
    # proxy files share goes to the shared file (a static resource of the same name shadows it:
    # Envoy does not let CDS/LDS replace a static one), the others stay in their own files. A
    # name some proxy lacks cannot be shared (a static resource cannot remove a CDS one).
    proxies: list[tuple[Any, _Variant | None]] = [(None, None), *variants.items()]

    def versions(name: str, table: Mapping[str, Any], kind: str) -> list[Any]:
        out = []
        for _, variant in proxies:
            own = getattr(variant, kind) if variant is not None else {}
            gone = getattr(variant, f"{kind}_removed" if kind == "listeners" else "removed") if variant else set()
            out.append(None if name in gone else own.get(name, table.get(name)))
        return out

    def split(names: set[str], table: Mapping[str, Any], kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        shared: dict[str, Any] = {}
        own: list[dict[str, Any]] = [{} for _ in proxies]
        for name in sorted(names):
            mine = versions(name, table, kind)
            if all(v is not None for v in mine):
                bodies = [orjson.dumps(v.body, option=orjson.OPT_SORT_KEYS) for v in mine]
                top = max(range(len(mine)), key=lambda i: (bodies.count(bodies[i]), -i))
                shared[name] = mine[top]
                for i, v in enumerate(mine):
                    if bodies[i] != bodies[top]:
                        own[i][name] = v
            else:
                for i, v in enumerate(mine):
                    if v is not None:
                        own[i][name] = v
        return shared, own

    varying = set().union(*(set(v.clusters) | v.removed for v in variants.values()))
    varying_listeners = set().union(*(set(v.listeners) | v.listeners_removed for v in variants.values()))
    shared_varying, own_clusters = split(varying, base.clusters, "clusters")
    shared_varying_listeners, own_listener_sets = split(varying_listeners, {b.name: b for b in listeners},
                                                        "listeners")
    shared = sorted([*(c for c in full if c.name not in varying and c.name not in specials),
                     *shared_varying.values()], key=lambda c: c.name)
    shared_listeners = sorted([*(b for b in listeners if b.name not in varying_listeners),
                               *shared_varying_listeners.values()], key=lambda b: b.name)
    files: dict[str, Json] = {
        CLUSTERS_FILE: _discovery(CLUSTER_TYPE, [c.body for c in shared]),
        LISTENERS_FILE: _discovery(LISTENER_TYPE, [b.body for b in shared_listeners]),
    }
    shared_sds = {c.name for c in shared if c.uses_sds}
    shared_ads = {c.name for c in shared if c.uses_ads}

    def own_part(proxy: Proxy, index: int) -> tuple[list[BuiltCluster], list[BuiltListener], bool]:
        """The proxy's static part; the agent clusters it needs for what it loads: the shared
        clusters it does not shadow, and its own."""
        mine = own_clusters[index]
        with_sds = bool(shared_sds - mine.keys()) or any(c.uses_sds for c in mine.values())
        with_ads = bool(shared_ads - mine.keys()) or any(c.uses_ads for c in mine.values())
        own = sorted([*mine.values(), *special_clusters(proxy.settings, with_sds, with_ads)], key=lambda c: c.name)
        return own, sorted(own_listener_sets[index].values(), key=lambda b: b.name), with_ads

    clusters, own_listeners, with_ads = own_part(egress, 0)
    files[BOOTSTRAP_FILE] = _proxy_bootstrap(egress, clusters, own_listeners, with_ads)
    view_sources: dict[str, dict[Path, ObjectId]] = {}
    # the shared versions the egress proxy shadows are in no whole configuration the check layer
    # sees: they are checked apart, like a view's own part
    hidden = [c for c in shared if c.name in own_clusters[0]]
    hidden_listeners = [b for b in shared_listeners if b.name in own_listener_sets[0]]
    shadowed: Json = {}
    if hidden or hidden_listeners:
        shadowed = {"static_resources": {"listeners": [b.body for b in hidden_listeners],
                                         "clusters": [c.body for c in hidden]}}
        view_sources[CLUSTERS_FILE] = {**cluster_sources(hidden), **listener_sources(hidden_listeners)}
    for index, key in enumerate(variants, start=1):
        rel = _view_name(key)
        clusters, own_listeners, with_ads = own_part(views[key], index)
        files[rel] = _proxy_bootstrap(replace(views[key], node={}), clusters, own_listeners, with_ads)
        view_sources[rel] = {**cluster_sources(clusters), **listener_sources(own_listeners)}
    for group in groups:
        node = {**group.node, "metadata": {**(group.node.get("metadata") or {}),
                                           "MESHC_VIEW": _view_name(view_key(group)).removeprefix("envoy/")}}
        files[f"{WORKLOADS_DIR}/{group.name}.json"] = {"node": node}
    if gateway is not None:
        built_gateway = build_gateway(manifests, gateway.settings, gateway.node)
        if built_gateway is not None:
            files[GATEWAY_FILE], view_sources[GATEWAY_FILE] = built_gateway
    bootstrap: Json = {"static_resources": {"listeners": [b.body for b in listeners],
                                            "clusters": [c.body for c in full]}}
    if any(c.uses_ads for c in full):
        bootstrap["dynamic_resources"] = {"ads_config": ADS_CONFIG}
    sources = {**cluster_sources(full), **listener_sources(listeners)}
    return ProxyFiles(bootstrap, sources, files, view_sources, shadowed)
