"""Per-workload proxy configuration (meshc.proxy.workloads, meshc.proxy.envoy.proxies).

Istio facts and where they come from (istio/istio at 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c):
* a DestinationRule with a workloadSelector applies, for outbound traffic, only to proxies of its
  own namespace whose labels include the selector, and wins over the catch-all DR of the host
  (pilot/pkg/model/sidecar.go:713-738 `SidecarScope.DestinationRule`; selector DRs sort first,
  pilot/pkg/model/push_context.go:2040-2050);
* a sidecar gets no TLS context at all for SIMPLE/MUTUAL with a credentialName from a DR without a
  workloadSelector, except configmap:// names (pilot/pkg/networking/core/cluster_tls.go:117-128);
  with one, the secrets are `kubernetes://<name>` and `<name>-cacert` over ADS with no
  initial_fetch_timeout (pilot/pkg/security/model/authentication.go:55-63, 233-265;
  pilot/pkg/model/credentials/resource.go:79-94 `ToResourceName`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from meshc import api
from meshc.check.envoy.validate import validate_bootstrap
from meshc.files.tree import MemoryTree
from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_LISTENERS
from meshc.model.results import whole_bootstrap
from meshc.model.settings import ProxySettings
from meshc.pipeline import compile_estate
from meshc.proxy.envoy.bootstrap import build_bootstrap

from .conftest import REPO

Json = dict[str, Any]
ENV = "name: dev\nnamespace: egress\nnetworks: [net-a, net-b]\nproxy:\n  locality: r1/z1\n"


def _vm(name: str, app: str, zone: str, network: str = "net-a", address: str = "10.1.0.1") -> str:
    return f"""
  - name: {name}
    hosts: [{name}.internal.example.com]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    ports:
      - {{number: 8080, protocol: HTTP, name: http}}
    endpoints:
      - {{address: {address}, name: a, labels: {{app: {app}}}, locality: {{region: r1, zone: {zone}}},
         network: {network}, serviceAccount: {name}, ports: {{http: 8080}}}}
"""


VENDOR = """
  - name: vendor
    hosts: [api.vendor.example.com]
    resolution: dns
    ports:
      - {number: 80, protocol: HTTP, name: http, targetPort: 443}
    clientSelector: {app: billing}
    tls: {mode: mutual, credentialName: vendor-client, sni: api.vendor.example.com}
"""
DB = """
  - name: db
    hosts: [db.internal.example.com]
    location: internal
    resolution: static
    ports:
      - {number: 5432, protocol: TCP, name: pg}
    endpoints:
      - {address: 10.2.0.1, name: z1, locality: {region: r1, zone: z1}}
      - {address: 10.2.0.2, name: z2, locality: {region: r1, zone: z2}}
    trafficPolicy:
      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
"""


def _estate(*services: str, env: str = ENV) -> Any:
    files = {"environments/dev/env.yaml": env, "environments/base/s.yaml": "services:\n" + "".join(services)}
    result = compile_estate(MemoryTree(files))
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.envs["dev"]


def _files(env: Any) -> dict[str, Json]:
    assert env.envoy is not None
    out = {rel: orjson.loads(data) for rel, data in env.envoy.files.items()}
    out[ENVOY_CLUSTERS] = orjson.loads(env.envoy.data())
    return out


def _own(files: dict[str, Json], rel: str) -> Json:
    """A proxy's own bootstrap: bootstrap.json, or the view file a workload's node names."""
    if rel.startswith("envoy/workloads/"):
        return files["envoy/" + files[rel]["node"]["metadata"]["MESHC_VIEW"]]
    return files[rel]


def _whole(files: dict[str, Json], rel: str) -> Json:
    return whole_bootstrap(files[ENVOY_CLUSTERS], files[ENVOY_LISTENERS], _own(files, rel))


def _clusters(doc: Json) -> dict[str, Json]:
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def test_each_proxy_gets_exactly_its_own_static_configuration() -> None:
    """The shared files plus a proxy's bootstrap are exactly the static bootstrap built for that
    proxy alone (its namespace, labels, locality): nothing is lost or borrowed by the sharing."""
    env = _estate(_vm("billing", "billing", "z2"), _vm("batch", "batch", "z1", "net-b", "10.1.0.2"), VENDOR, DB)
    files = _files(env)
    manifests = [a.body for a in env.artifacts]
    settings = env.settings
    groups = {"billing-a": ProxySettings(namespace="egress", locality="r1/z2",
                                         labels=(("app", "billing"), ("topology.istio.io/network", "net-a"))),
              "batch-a": ProxySettings(namespace="egress", locality="r1/z1",
                                       labels=(("app", "batch"), ("topology.istio.io/network", "net-b")))}
    assert sorted(f for f in files if not f.startswith("envoy/views/")) == sorted([
        ENVOY_CLUSTERS, ENVOY_LISTENERS, ENVOY_BOOTSTRAP,
        "envoy/workloads/billing-a.json", "envoy/workloads/batch-a.json"])
    assert len([f for f in files if f.startswith("envoy/views/")]) == 2  # two localities
    for name, proxy in groups.items():
        own = ProxySettings(**{**proxy.__dict__, "trust_domain": settings.trust_domain})
        alone, _ = build_bootstrap(manifests, own)
        assert _whole(files, f"envoy/workloads/{name}.json") == alone, name
    egress, _ = build_bootstrap(manifests, ProxySettings(namespace="egress", locality="r1/z1"))
    assert _whole(files, ENVOY_BOOTSTRAP) == egress
    assert env.envoy.bootstrap() == egress  # what the envoy check layer validates


def test_only_what_differs_is_repeated_per_proxy() -> None:
    """Locality failover (outlier detection) differs per locality: db's cluster differs for the
    VM in z2; the credentialName cluster differs for the selected group. Each name is shared in
    the version most proxy files have (here, a tie: the egress proxy's) and repeated only by the
    files whose version differs (a static cluster shadows the shared one of its name)."""
    env = _estate(_vm("billing", "billing", "z2"), VENDOR, DB)
    files = _files(env)
    shared = {r["name"] for r in files[ENVOY_CLUSTERS]["resources"]}
    assert {"outbound|8080||billing.internal.example.com", "outbound|5432||db.internal.example.com",
            "outbound|80||api.vendor.example.com"} <= shared
    assert "outbound|5432||db.internal.example.com" not in _clusters(files[ENVOY_BOOTSTRAP])
    view = _clusters(_own(files, "envoy/workloads/billing-a.json"))
    assert {"outbound|5432||db.internal.example.com", "outbound|80||api.vendor.example.com"} <= set(view)
    assert "outbound|8080||billing.internal.example.com" not in view
    egress_db = _clusters(_whole(files, ENVOY_BOOTSTRAP))["outbound|5432||db.internal.example.com"]
    vm_db = _clusters(_whole(files, "envoy/workloads/billing-a.json"))["outbound|5432||db.internal.example.com"]
    first = {e["locality"]["zone"]: e["priority"] for e in egress_db["load_assignment"]["endpoints"]}
    second = {e["locality"]["zone"]: e["priority"] for e in vm_db["load_assignment"]["endpoints"]}
    assert first == {"z1": 0, "z2": 1} and second == {"z1": 1, "z2": 0}  # each prefers its own zone


def test_the_version_most_proxies_have_is_the_shared_one() -> None:
    """VM groups in two subzones of z2 (two views, one db version), the egress proxy in z1: z2's
    db cluster is shared, the egress bootstrap carries its own."""
    vms = "".join(_vm(f"vm{g}", f"app{g}", f"z2, subzone: s{g}", address=f"10.1.0.{g + 1}") for g in range(2))
    env = _estate(vms, DB)
    files = _files(env)
    shared = {r["name"]: r for r in files[ENVOY_CLUSTERS]["resources"]}
    zones = {e["locality"]["zone"]: e["priority"]
             for e in shared["outbound|5432||db.internal.example.com"]["load_assignment"]["endpoints"]}
    assert zones == {"z1": 1, "z2": 0}
    assert "outbound|5432||db.internal.example.com" in _clusters(files[ENVOY_BOOTSTRAP])


def test_credential_name_is_served_to_the_selected_workloads_over_ads() -> None:
    env = _estate(_vm("billing", "billing", "z2"), _vm("other", "other", "z1", address="10.1.0.3"), VENDOR)
    files = _files(env)
    selected = _own(files, "envoy/workloads/billing-a.json")
    cluster = _clusters(_whole(files, "envoy/workloads/billing-a.json"))["outbound|80||api.vendor.example.com"]
    common = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    ads = {"ads": {}, "resource_api_version": "V3"}
    assert common["tls_certificate_sds_secret_configs"] == [{"name": "kubernetes://vendor-client", "sds_config": ads}]
    validation = common["combined_validation_context"]["validation_context_sds_secret_config"]
    assert validation == {"name": "kubernetes://vendor-client-cacert", "sds_config": ads}
    grpc = selected["dynamic_resources"]["ads_config"]["grpc_services"]
    assert grpc == [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]
    assert _clusters(selected)["xds-grpc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"] == {
        "address": {"pipe": {"path": "./etc/istio/proxy/XDS"}}}
    for rel in (ENVOY_BOOTSTRAP, "envoy/workloads/other-a.json"):  # not selected: the DR does not apply
        plain = _clusters(_whole(files, rel))["outbound|80||api.vendor.example.com"]
        assert "transport_socket" not in plain and "ads_config" not in _own(files, rel)["dynamic_resources"]
        assert "xds-grpc" not in _clusters(_own(files, rel))
    assert validate_bootstrap(_whole(files, "envoy/workloads/billing-a.json")) == []


def test_selector_rules_apply_only_in_their_namespace() -> None:
    """A VM in another namespace with the selector's labels is not selected (sidecar.go:725)."""
    other_ns = _vm("billing", "billing", "z2").replace("    location: internal", "    namespace: billing\n"
                                                                                  "    location: internal")
    env = _estate(other_ns, VENDOR)
    cluster = _clusters(_own(_files(env), "envoy/workloads/billing-a.json"))
    assert "outbound|80||api.vendor.example.com" not in cluster  # shared: the catch-all view
    assert "E004" in [d.code for d in compile_estate(MemoryTree({
        "environments/dev/env.yaml": ENV, "environments/base/s.yaml": "services:\n" + other_ns + VENDOR})).diagnostics]


def test_credential_name_without_selector_is_plaintext_but_configmap_ca_is_kept() -> None:
    from meshc.proxy.envoy.istio import Service
    from meshc.proxy.envoy.policy import Policy
    from meshc.proxy.envoy.tls import upstream_tls

    service = Service("api.example.com", "egress", (), (), "DNS", True, (), (), None)  # type: ignore[arg-type]
    secret = upstream_tls(service, 443, "", Policy(tls={"mode": "SIMPLE", "credentialName": "ca"}), False, False)
    assert secret.transport_socket is None
    kept = upstream_tls(service, 443, "", Policy(tls={"mode": "SIMPLE", "credentialName": "configmap://ns/ca"}),
                        False, False)
    context = kept.transport_socket["typed_config"]["common_tls_context"]  # type: ignore[index]
    assert context["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == \
        "configmap://ns/ca-cacert"


def test_vms_that_share_everything_share_one_group() -> None:
    two = _vm("batch", "batch", "z1").replace(
        "ports: {http: 8080}}\n",
        "ports: {http: 8080}}\n      - {address: 10.1.0.9, name: b, labels: {app: batch}, locality: {region: r1, "
        "zone: z1},\n         network: net-a, serviceAccount: batch, ports: {http: 8080}}\n")
    env = _estate(two)
    workloads = sorted(rel for rel in env.envoy.files if rel.startswith("envoy/workloads/"))
    assert workloads == ["envoy/workloads/batch-a.json"]
    workload = orjson.loads(env.envoy.files["envoy/workloads/batch-a.json"])
    assert list(workload) == ["node"]  # merged into its view with --config-yaml
    node = workload["node"]
    assert node["metadata"]["MESHC_HOSTS"] == ["batch-a 10.1.0.1", "batch-b 10.1.0.9"]
    assert node["id"] == "sidecar~10.1.0.1~batch-a.egress~egress.svc.cluster.local"
    assert node["locality"] == {"region": "r1", "zone": "z1"}


def test_workload_bootstraps_parse_as_envoy_bootstraps() -> None:
    """node, dynamic_resources (CDS/LDS from files, ADS) and the static part: Envoy's own proto."""
    env = _estate(_vm("billing", "billing", "z2"), VENDOR, DB)
    for rel, data in env.envoy.files.items():
        if rel != ENVOY_LISTENERS:
            json_format.ParseDict(orjson.loads(data), bootstrap_pb2.Bootstrap())
    files = _files(env)
    merged = bootstrap_pb2.Bootstrap()  # envoy -c views/<view>.json --config-yaml "$(cat workloads/<group>.json)"
    json_format.ParseDict(_own(files, "envoy/workloads/billing-a.json"), merged)
    merged.MergeFrom(json_format.ParseDict(files["envoy/workloads/billing-a.json"], bootstrap_pb2.Bootstrap()))
    assert merged.node.locality.zone == "z2" and merged.dynamic_resources.cds_config.path_config_source.path
    cds = files[ENVOY_BOOTSTRAP]["dynamic_resources"]["cds_config"]["path_config_source"]["path"]
    assert cds == "/etc/meshc/envoy/clusters.json"


def test_config_dir_names_where_the_shared_files_are() -> None:
    env = _estate(DB, env=ENV + "  configDir: /opt/envoy/prod\n")
    lds = _files(env)[ENVOY_BOOTSTRAP]["dynamic_resources"]["lds_config"]["path_config_source"]["path"]
    assert lds == "/opt/envoy/prod/listeners.json"


def test_dns_servers_by_network_apply_to_the_vms_of_that_network() -> None:
    env_yaml = ENV + "vm:\n  dnsServers: [10.0.0.2]\n  dnsServersByNetwork:\n    net-b: [10.9.0.53]\n"
    env = _estate(_vm("billing", "billing", "z2"), _vm("batch", "batch", "z1", "net-b", "10.1.0.2"), env=env_yaml)
    assert env.bundle is not None
    on_b = env.bundle.files["iptables/batch-a.rules"].decode()  # type: ignore[union-attr]
    on_a = env.bundle.files["iptables/billing-a.rules"].decode()  # type: ignore[union-attr]
    assert "-d 10.9.0.53/32" in on_b and "10.0.0.2" not in on_b
    assert "-d 10.0.0.2/32" in on_a and "10.9.0.53" not in on_a


def test_the_example_estate_gives_checkout_vms_the_fraud_scoring_certificate() -> None:
    _, result = api.compile_repo(REPO, ["prod"], False)
    assert result.ok
    env = result.envs["prod"]
    files = _files(env)
    batch = _clusters(_whole(files, "envoy/workloads/checkout-batch-batch-1.json"))[
        "outbound|80||api.fraudscore.example.net"]
    names = orjson.dumps(batch).decode()
    assert "kubernetes://fraud-scoring-client" in names
    egress = _clusters(_whole(files, ENVOY_BOOTSTRAP))
    assert "transport_socket" not in egress["outbound|80||api.fraudscore.example.net"]


@pytest.mark.parametrize("groups", [1, 8])
def test_bundle_size_grows_by_what_differs_not_by_the_estate(groups: int) -> None:
    """Many services, `groups` VM groups: the shared clusters file is written once; a view adds
    only its varying clusters (here: none but the agent and fallback clusters), a group its node."""
    services = "".join(f"""
  - name: s{i}
    hosts: [s{i}.example.com]
    resolution: dns
    ports:
      - {{number: 443, protocol: HTTPS}}
""" for i in range(60))
    vms = "".join(_vm(f"vm{g}", f"app{g}", f"z{g}", address=f"10.1.0.{g + 1}") for g in range(groups))
    env = _estate(services, vms)
    shared = len(env.envoy.data())
    for rel, data in env.envoy.files.items():
        if rel.startswith(("envoy/workloads/", "envoy/views/")):
            assert len(data) < shared / 10, rel


def test_groups_in_one_locality_share_one_view() -> None:
    """Hundreds of VM groups, few localities: one view file per locality (the clusters depend on
    the locality, not on which group), one node-only file per group."""
    vms = "".join(_vm(f"vm{g}", f"app{g}", f"z{g % 3}", address=f"10.1.{g // 200}.{g % 200 + 1}") for g in range(40))
    env = _estate(vms, DB)
    views = [rel for rel in env.envoy.files if rel.startswith("envoy/views/")]
    workloads = [rel for rel in env.envoy.files if rel.startswith("envoy/workloads/")]
    assert len(views) == 3 and len(workloads) == 40


DB_POLICIES = [
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n",
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n"
    "      loadBalancer: {localityLbSetting: {failoverPriority: [topology.istio.io/network, app]}}\n",
    "      loadBalancer: {localityLbSetting: {distribute: [{from: r1/z2/*, to: {r1/z1/*: 20, r1/z2/*: 80}}]}}\n",
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n"
    "      loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}]}}\n",
]


@pytest.mark.parametrize("policy", DB_POLICIES)
def test_views_equal_a_full_build_for_every_locality_setting(policy: str) -> None:
    """A view's clusters are the egress ones with only the load assignment rebuilt; that must be
    exactly what a full build for the view's client gives, whatever the locality settings."""
    db = DB.replace("      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n", policy)
    db = db.replace("      - {address: 10.2.0.2, name: z2, locality: {region: r1, zone: z2}}\n",
                    "      - {address: 10.2.0.2, name: z2, locality: {region: r1, zone: z2}, network: net-b}\n"
                    "      - {address: 10.2.0.3, name: r2, locality: {region: r2, zone: a}}\n")
    vms = _vm("billing", "billing", "z2") + _vm("batch", "batch", "z1", "net-b", "10.1.0.2")
    env = _estate(vms, db)
    files = _files(env)
    manifests = [a.body for a in env.artifacts]
    net = "topology.istio.io/network"
    clients = {"envoy/workloads/billing-a.json": ("r1/z2", (("app", "billing"), (net, "net-a"))),
               "envoy/workloads/batch-a.json": ("r1/z1", (("app", "batch"), (net, "net-b")))}
    for rel, (locality, labels) in clients.items():
        alone, _ = build_bootstrap(manifests, ProxySettings(namespace="egress", locality=locality, labels=labels,
                                                            trust_domain=env.settings.trust_domain))
        assert _whole(files, rel) == alone, rel


def _node_settings(node: Json, trust_domain: str) -> ProxySettings:
    """The settings of the proxy a workload file's node describes (its locality, labels, namespace)."""
    loc = node.get("locality") or {}
    locality = "/".join(v for v in (loc.get("region", ""), loc.get("zone", ""), loc.get("sub_zone", "")) if v)
    meta = node["metadata"]
    return ProxySettings(trust_domain=trust_domain, namespace=meta["NAMESPACE"], locality=locality,
                         labels=tuple(sorted(meta["LABELS"].items())))


def _assert_every_proxy_exact(env: Any) -> None:
    files = _files(env)
    manifests = [a.body for a in env.artifacts]
    egress, _ = build_bootstrap(manifests, replace(env.settings.proxy, namespace=env.settings.namespace))
    assert _whole(files, ENVOY_BOOTSTRAP) == egress
    for rel in (r for r in files if r.startswith("envoy/workloads/")):
        alone, _ = build_bootstrap(manifests, _node_settings(files[rel]["node"], env.settings.trust_domain))
        assert _whole(files, rel) == alone, rel


def test_proxies_without_locality_or_labels_get_their_own_view() -> None:
    """A proxy with no locality and no labels gets no locality priorities at all, one with labels
    does: they cannot share a view (endpoints._shape)."""
    def vm(name: str, labels: str) -> str:
        return (f"  - name: {name}\n    hosts: [{name}.internal.example.com]\n    location: internal\n"
                "    resolution: static\n    endpointsAs: workloadEntries\n"
                "    ports:\n      - {number: 8080, protocol: HTTP, name: http}\n"
                f"    endpoints:\n      - {{address: 10.1.0.{len(labels) + 1}, name: a, {labels}"
                f"serviceAccount: {name}}}\n")
    db = DB.replace("{region: r1, zone: z2}", "{region: r2, zone: z2}")
    env = _estate(vm("vma", "labels: {app: vma}, "), vm("vmb", ""), db, env="name: dev\nnamespace: egress\n")
    _assert_every_proxy_exact(env)


def test_a_credential_cluster_shared_by_views_does_not_give_the_egress_proxy_ads() -> None:
    """When most proxy files agree on the credentialName version of a cluster it is the shared
    one; the egress Envoy shadows it with its own (plain) version and needs no ADS connection."""
    vms = "".join(_vm(f"b{i}", "billing", f"z{2 + i % 2}", address=f"10.1.0.{i + 1}") for i in range(4))
    env = _estate(vms, VENDOR)
    _assert_every_proxy_exact(env)
    egress = _files(env)[ENVOY_BOOTSTRAP]
    assert "ads_config" not in egress["dynamic_resources"] and "xds-grpc" not in _clusters(egress)
    # the shared (credential) version is in no whole configuration of the egress proxy: it is
    # checked apart, as the shadowed part of clusters.json
    hidden = env.envoy.static_part(ENVOY_CLUSTERS)["clusters"]
    assert [c["name"] for c in hidden] == ["outbound|80||api.vendor.example.com"]
    assert "kubernetes://vendor-client" in orjson.dumps(hidden).decode()
    assert ENVOY_CLUSTERS in env.envoy.workload_sources


UNIFORM_POLICIES = [
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n",
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n"
    "      loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}]}}\n",
    "      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n"
    "      loadBalancer: {localityLbSetting: {enabled: false}}\n",
]


@pytest.mark.parametrize("egress_locality", ["r1/z1", ""])
@pytest.mark.parametrize("endpoints", ["{region: r2, zone: a}", ""])
@pytest.mark.parametrize("policy", UNIFORM_POLICIES)
def test_views_of_clusters_with_one_locality_group(policy: str, endpoints: str, egress_locality: str) -> None:
    """A cluster whose endpoints are one locality group (or have none) ranks them alike for every
    client with a locality or labels (endpoints.Assigner, `uniform`); the views reuse the egress
    proxy's cluster when its client gets the same: every proxy's configuration is still exactly
    what a build for it alone gives, with and without a locality of the egress proxy, for clients
    in the endpoints' region, in others, with labels only and with neither."""
    where = f", locality: {endpoints}" if endpoints else ""
    db = DB.replace("      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n", policy)
    db = db.replace("      - {address: 10.2.0.1, name: z1, locality: {region: r1, zone: z1}}\n"
                    "      - {address: 10.2.0.2, name: z2, locality: {region: r1, zone: z2}}\n",
                    f"      - {{address: 10.2.0.1, name: a{where}}}\n      - {{address: 10.2.0.2, name: b{where}}}\n")

    def vm(name: str, extra: str, address: str) -> str:
        return (f"  - name: {name}\n    hosts: [{name}.internal.example.com]\n    location: internal\n"
                "    resolution: static\n    endpointsAs: workloadEntries\n"
                "    ports:\n      - {number: 8080, protocol: HTTP, name: http}\n"
                f"    endpoints:\n      - {{address: {address}, name: a, {extra}serviceAccount: {name}}}\n")
    vms = (vm("near", "labels: {app: near}, locality: {region: r1, zone: z2}, ", "10.1.0.1")
           + vm("far", "labels: {app: far}, locality: {region: r2, zone: b}, ", "10.1.0.2")
           + vm("other", "locality: {region: r3, zone: c}, ", "10.1.0.3")
           + vm("labelled", "labels: {app: labelled}, ", "10.1.0.4")
           + vm("bare", "", "10.1.0.5"))
    env_yaml = "name: dev\nnamespace: egress\n" + (f"proxy:\n  locality: {egress_locality}\n" if egress_locality else "")
    env = _estate(vms, db, env=env_yaml)
    _assert_every_proxy_exact(env)
