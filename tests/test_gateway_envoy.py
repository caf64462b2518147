"""The egress gateway's Envoy configuration (envoy/gateway.json) and sidecars routed to it.

Each fact names the istiod code it follows (istio/istio at 86c9f01f, pilot/pkg/networking/core/
unless said otherwise); docs/envoy.md "The egress gateway" lists what differs and why.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from meshc import api
from meshc.check.common import CheckOptions
from meshc.check.envoy.validate import validate_bootstrap
from meshc.check.layers import run_checks
from meshc.emit.bundle import read_bundle
from meshc.files.tree import MemoryTree
from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_GATEWAY, ENVOY_LISTENERS
from meshc.model.ids import ObjectId
from meshc.model.settings import ProxySettings
from meshc.pipeline import compile_estate
from meshc.proxy.envoy.bootstrap import build_bootstrap
from meshc.proxy.envoy.gateway import _Builder, _Policy, build_gateway, rbac_filters
from meshc.proxy.envoy.istio import find_rule, load_destination_rules, load_services

from .conftest import REPO
from .test_workloads import _assert_every_proxy_exact, _files, _whole

Json = dict[str, Any]
GSVC = "istio-egressgateway.istio-system.svc.cluster.local"
DOWNSTREAM = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
ENV = """name: dev
namespace: egress
egress: {gateway: {name: istio-egressgateway, namespace: istio-system, selector: {istio: egressgateway}}}
"""
# an HTTP port whose TLS the gateway originates (the service's DR moves to istio-system), a TLS
# port and a TCP port through the gateway, and a service that leaves directly
WEATHER = """
  - name: weather
    owner: team-a
    hosts: [api.weather.example.com]
    resolution: dns
    egress: gateway
    ports:
      - {number: 80, protocol: HTTP, name: http, targetPort: 443}
    tls: {mode: simple}
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: 50}
"""
STRIPE = """
  - name: stripe
    owner: team-b
    hosts: [api.stripe.com]
    resolution: dns
    egress: gateway
    ports:
      - {number: 443, protocol: TLS, name: tls}
"""
PG = """
  - name: pg
    owner: team-c
    hosts: [pg.partner.example.com]
    resolution: dns
    egress: gateway
    ports:
      - {number: 5432, protocol: TCP, name: pg}
"""
DIRECT = """
  - name: direct
    owner: team-d
    hosts: [api.direct.example.com]
    resolution: dns
    ports:
      - {number: 443, protocol: HTTPS, name: https}
"""


# with consumers: each gets a DENY policy for the callers outside namespace shop
SHOP = "    consumers: [{namespace: shop}]\n"
POLICED = (WEATHER + SHOP, STRIPE, PG + SHOP, DIRECT)


def _compile(*services: str, env: str = ENV) -> Any:
    files = {"environments/dev/env.yaml": env, "environments/base/s.yaml": "services:\n" + "".join(services)}
    result = compile_estate(MemoryTree(files))
    assert result.ok, [str(d) for d in result.diagnostics]
    return result


def _gateway(result: Any) -> Json:
    data: Json = orjson.loads(result.envs["dev"].envoy.files[ENVOY_GATEWAY])
    return data


def _by_name(items: list[Json]) -> dict[str, Json]:
    return {str(i["name"]): i for i in items}


def _typed(filter_: Json) -> Json:
    body: Json = filter_["typed_config"]
    return body


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    out = tmp_path_factory.mktemp("out")
    outcome = api.build(REPO, out=out, checks=False, use_cache=False)
    assert outcome.ok
    return {env.name: read_bundle(env).files for env in sorted(out.iterdir()) if env.is_dir()}


@pytest.fixture(scope="module")
def lab() -> Any:
    """A small estate: weather (HTTP, TLS originated at the gateway), stripe (TLS), pg (TCP) through
    the gateway, one direct service."""
    return _compile(WEATHER, STRIPE, PG, DIRECT)


# --- the example estate --------------------------------------------------------------------------

def test_only_environments_with_gateway_services_have_gateway_json(estate: dict[str, dict[str, bytes]]) -> None:
    """prod sends maps-google through the gateway; dev, staging (gateway in env.yaml or not, no
    gateway service) and the ambient edge environment have no gateway.json."""
    assert {env for env, files in estate.items() if ENVOY_GATEWAY in files} == {"prod"}
    assert set(estate) >= {"dev", "prod", "staging", "edge"}


def test_example_gateway_listener_chain_and_cluster(estate: dict[str, dict[str, bytes]]) -> None:
    """prod's maps-google (HTTPS 443, a TLS server with ISTIO_MUTUAL): one listener `0.0.0.0_443`
    (`getListenerName`, gateway.go:338), one chain on the server's hosts as SNI
    (`GetSNIHostsForServer`, pilot/pkg/model/gateway.go:564) terminating the mutual TLS, then a
    tcp_proxy to the host's cluster from the bound `tcp` route (gateway.go:858-920)."""
    gateway = orjson.loads(estate["prod"][ENVOY_GATEWAY])
    assert validate_bootstrap(gateway) == []
    listeners = gateway["static_resources"]["listeners"]
    assert [listener["name"] for listener in listeners] == ["0.0.0.0_443"]
    listener = listeners[0]
    assert listener["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 443}}
    assert "bind_to_port" not in listener  # a gateway binds its ports (opts.bindToPort: true)
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    [chain] = listener["filter_chains"]
    assert chain["filter_chain_match"] == {"server_names": ["maps.googleapis.com"]}
    assert chain["transport_socket_connect_timeout"] == "15s"  # PILOT_GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT
    _assert_istio_mutual_termination(chain)
    rbac, proxy = chain["filters"]
    assert rbac["name"] == "envoy.filters.network.rbac"  # the AuthorizationPolicy (test_rbac_* below)
    assert proxy["name"] == "envoy.filters.network.tcp_proxy"
    assert _typed(proxy)["cluster"] == _typed(proxy)["stat_prefix"] == "outbound|443||maps.googleapis.com"
    clusters = _by_name(gateway["static_resources"]["clusters"])
    assert set(clusters) == {"outbound|443||maps.googleapis.com", "sds-grpc", "BlackHoleCluster"}
    assert clusters["outbound|443||maps.googleapis.com"]["type"] == "STRICT_DNS"
    assert "transport_socket" not in clusters["outbound|443||maps.googleapis.com"]  # the app's own TLS


def _assert_istio_mutual_termination(chain: Json) -> None:
    """`BuildListenerTLSContext` (listener.go:141) for ISTIO_MUTUAL: `default` and `ROOTCA` from the
    agent's SDS (`ApplyToCommonTLSContext`, pilot/pkg/security/model/authentication.go:160), client
    certificate required, ALPN `h2, http/1.1` (util.ALPNHttp / ALPNDownstream)."""
    socket = chain["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typed_config"]
    assert context["@type"] == DOWNSTREAM
    assert context["require_client_certificate"] is True
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert validation["validation_context_sds_secret_config"]["sds_config"]["initial_fetch_timeout"] == "0s"
    grpc = common["tls_certificate_sds_secret_configs"][0]["sds_config"]["api_config_source"]["grpc_services"]
    assert grpc == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]


def test_prod_sidecars_outside_the_consumers_go_straight_out(estate: dict[str, dict[str, bytes]]) -> None:
    """prod's VirtualService is exported to `.`, checkout and logistics only: the egress Envoy and
    the VM groups (namespace egress) do not see it and keep the host's own cluster, as istiod gives
    them (and as G004 warns); no gateway subset cluster appears in their files."""
    files = estate["prod"]
    for rel in (ENVOY_CLUSTERS, ENVOY_LISTENERS, ENVOY_BOOTSTRAP):
        assert GSVC not in files[rel].decode()
    assert b'"cluster":"outbound|443||maps.googleapis.com"' in files[ENVOY_LISTENERS].replace(b" ", b"")


# --- a small estate: HTTP, TLS and TCP ports through the gateway ----------------------------------

def test_a_listener_per_port_and_a_chain_per_server(lab: Any) -> None:
    gateway = _gateway(lab)
    assert validate_bootstrap(gateway) == []
    listeners = _by_name(gateway["static_resources"]["listeners"])
    assert sorted(listeners) == ["0.0.0.0_443", "0.0.0.0_5432", "0.0.0.0_80"]
    for listener in listeners.values():
        [chain] = listener["filter_chains"]
        _assert_istio_mutual_termination(chain)
    names = {name: listener["filter_chains"][0]["filter_chain_match"]["server_names"]
             for name, listener in listeners.items()}
    assert names == {"0.0.0.0_80": ["api.weather.example.com"], "0.0.0.0_443": ["api.stripe.com"],
                     "0.0.0.0_5432": ["pg.partner.example.com"]}
    assert _typed(listeners["0.0.0.0_443"]["filter_chains"][0]["filters"][-1])["cluster"] == \
        "outbound|443||api.stripe.com"
    assert _typed(listeners["0.0.0.0_5432"]["filter_chains"][0]["filters"][-1])["cluster"] == \
        "outbound|5432||pg.partner.example.com"
    assert "outbound|443||api.direct.example.com" not in _by_name(gateway["static_resources"]["clusters"])


def test_https_server_routes_the_virtual_service_http_routes(lab: Any) -> None:
    """An HTTPS server terminating ISTIO_MUTUAL gets a connection manager (`createGatewayHTTPFilterChainOpts`,
    gateway.go:672; `buildGatewayConnectionManager`, gateway.go:721: client certificate details
    sanitised and set, remote address used) whose route configuration `https.<port>.<port
    name>.<gateway>.<namespace>` (`gatewayRDSRouteName`, pilot/pkg/model/gateway.go:627) has a
    virtual host `<host>:<port>` per host (`buildGatewayHTTPRouteConfig`, gateway.go:397) with the
    VirtualService's gateway-bound route (`TranslateRoute`, route/route.go:467)."""
    chain = _by_name(_gateway(lab)["static_resources"]["listeners"])["0.0.0.0_80"]["filter_chains"][0]
    [hcm] = chain["filters"]
    body = _typed(hcm)
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    assert body["forward_client_cert_details"] == "SANITIZE_SET" and body["use_remote_address"] is True
    assert body["set_current_client_cert_details"] == {"subject": True, "cert": True, "dns": True, "uri": True}
    assert body["stat_prefix"] == "outbound_0.0.0.0_80;"
    config = body["route_config"]
    assert config["name"] == "https.80.https-80-weather.weather-egress.istio-system"
    [vhost] = config["virtual_hosts"]
    assert vhost["name"] == "api.weather.example.com:80" and vhost["domains"] == ["api.weather.example.com"]
    [route] = vhost["routes"]
    assert route["name"] == "gateway-80" and route["match"] == {"prefix": "/"}
    assert route["route"]["cluster"] == "outbound|80||api.weather.example.com"
    assert route["route"]["timeout"] == "0s" and route["route"]["max_grpc_timeout"] == "0s"
    assert route["metadata"]["filter_metadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1/namespaces/istio-system/virtual-service/weather-egress"
    assert route["decorator"] == {"operation": "api.weather.example.com:80/*"}


def test_the_gateway_originates_tls_with_the_moved_destination_rule(lab: Any) -> None:
    """The service's DR lives in istio-system with `exportTo: [.]`: the gateway (in that namespace)
    applies it (`PushContext.destinationRule`, pilot/pkg/model/push_context.go:1283-1293), so its
    cluster originates TLS (SIMPLE, the system CA over SDS, auto SNI) to the target port 443 with
    the DR's connection pool."""
    cluster = _by_name(_gateway(lab)["static_resources"]["clusters"])["outbound|80||api.weather.example.com"]
    context = cluster["transport_socket"]["typed_config"]
    assert context["@type"].endswith("UpstreamTlsContext")
    validation = context["common_tls_context"]["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "file-root:system"
    assert cluster["circuit_breakers"]["thresholds"][0]["max_connections"] == 50
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert endpoint == {"address": "api.weather.example.com", "port_value": 443}
    assert cluster["metadata"]["filter_metadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1/namespaces/istio-system/destination-rule/weather"


def test_sources_name_the_gateway_virtual_services_and_rules() -> None:
    lab = _compile(*POLICED)
    gateway = _gateway(lab)
    sources = lab.envs["dev"].envoy.workload_sources[ENVOY_GATEWAY]
    listeners = [listener["name"] for listener in gateway["static_resources"]["listeners"]]
    clusters = [cluster["name"] for cluster in gateway["static_resources"]["clusters"]]
    http = ("static_resources", "listeners", listeners.index("0.0.0.0_80"), "filter_chains", 0)
    assert sources[http] == ObjectId("Gateway", "istio-system", "weather-egress")
    vhost = http + ("filters", 0, "typed_config", "route_config", "virtual_hosts", 0)
    assert sources[vhost] == ObjectId("VirtualService", "istio-system", "weather-egress")
    tcp = ("static_resources", "listeners", listeners.index("0.0.0.0_5432"), "filter_chains", 0)
    assert sources[tcp + ("filters", 1)] == ObjectId("VirtualService", "istio-system", "pg-egress")
    # every AuthorizationPolicy selecting the gateway's pods is on every chain (as istiod: policies
    # are per workload); each named policy maps to its own
    rbac = http + ("filters", 0, "typed_config", "http_filters", 0, "typed_config", "rules", "policies")
    assert sources[rbac + ("ns[istio-system]-policy[weather-egress]-rule[0]",)] == \
        ObjectId("AuthorizationPolicy", "istio-system", "weather-egress")
    pg = tcp + ("filters", 0, "typed_config", "rules", "policies", "ns[istio-system]-policy[pg-egress]-rule[0]")
    assert sources[pg] == ObjectId("AuthorizationPolicy", "istio-system", "pg-egress")
    weather = ("static_resources", "clusters", clusters.index("outbound|80||api.weather.example.com"))
    assert sources[weather] == ObjectId("DestinationRule", "istio-system", "weather")
    stripe = ("static_resources", "clusters", clusters.index("outbound|443||api.stripe.com"))
    assert sources[stripe] == ObjectId("ServiceEntry", "egress", "stripe")


def test_envoy_layer_validates_gateway_json_and_places_findings(lab: Any) -> None:
    """gateway.json passes the envoy layer; a broken field in it is E001 at the declaration behind
    the DestinationRule that made the cluster (the moved DR: its `tls`)."""
    assert run_checks(lab, CheckOptions(layers=("envoy",))) == []
    env = lab.envs["dev"]
    gateway = _gateway(lab)
    names = [c["name"] for c in gateway["static_resources"]["clusters"]]
    index = names.index("outbound|80||api.weather.example.com")
    gateway["static_resources"]["clusters"][index]["transport_socket"]["typed_config"]["sni_bogus"] = 1
    broken = dataclasses.replace(env.envoy, files={**env.envoy.files, ENVOY_GATEWAY: orjson.dumps(gateway)},
                                 sha256="broken", findings=None)
    env.envoy = broken
    try:
        [diag] = run_checks(lab, CheckOptions(layers=("envoy",)))
    finally:
        env.envoy = dataclasses.replace(broken, files={**broken.files, ENVOY_GATEWAY: orjson.dumps(_gateway(lab))})
    assert diag.code == "E001"
    assert f"envoy/gateway.json: static_resources.clusters[{index}].transport_socket" in diag.path
    assert diag.object is not None and "DestinationRule/istio-system/weather" in str(diag.object)
    assert diag.position is not None and diag.position.file.endswith("environments/base/s.yaml")


def test_determinism_two_builds_same_bytes() -> None:
    first = _compile(WEATHER, STRIPE, PG, DIRECT).envs["dev"].envoy.files[ENVOY_GATEWAY]
    second = _compile(WEATHER, STRIPE, PG, DIRECT).envs["dev"].envoy.files[ENVOY_GATEWAY]
    assert first == second
    # declaration order does not matter either: objects are taken in namespace/name order
    assert _compile(PG, DIRECT, STRIPE, WEATHER).envs["dev"].envoy.files[ENVOY_GATEWAY] == first


def test_no_gateway_service_no_gateway_json() -> None:
    result = _compile(DIRECT)
    assert ENVOY_GATEWAY not in result.envs["dev"].envoy.files
    assert build_gateway([], ProxySettings(namespace="istio-system", labels=(("istio", "egressgateway"),)), {}) is None


def test_a_gateway_selects_only_the_pods_its_selector_names(lab: Any) -> None:
    manifests = [a.body for a in lab.envs["dev"].artifacts]
    other = ProxySettings(namespace="istio-system", labels=(("istio", "ingressgateway"),))
    assert build_gateway(manifests, other, {}) is None


# --- the AuthorizationPolicy on the gateway ------------------------------------------------------

def test_rbac_of_the_example_consumers(estate: dict[str, dict[str, bytes]]) -> None:
    """prod's policy denies whoever is neither in logistics nor checkout's cart, with SNI
    maps.googleapis.com (no port: the gateway pod listens on the Service's targetPort, so meshc's
    rules name hosts only):
    on the TLS chain a network RBAC filter before the tcp_proxy (`buildCompleteNetworkFilters`,
    networkfilter.go), stat prefix `tcp.`, the policy `ns[istio-system]-policy[maps-google-egress]-rule[0]`
    (`policyName`, pilot/pkg/security/authz/builder/builder.go:541); a namespace is a principal regex,
    a principal the exact SPIFFE id (pilot/pkg/security/authz/model/generator.go:173-253), ports are
    `destination_port`, `connection.sni` is `requested_server_name` (generator.go:56-79)."""
    gateway = orjson.loads(estate["prod"][ENVOY_GATEWAY])
    rbac = gateway["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert rbac["@type"] == "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
    assert rbac["stat_prefix"] == "tcp." and rbac["rules"]["action"] == "DENY"
    [(name, policy)] = rbac["rules"]["policies"].items()
    assert name == "ns[istio-system]-policy[maps-google-egress]-rule[0]"
    assert policy["permissions"] == [{"and_rules": {"rules": [
        {"or_rules": {"rules": [{"requested_server_name": {"exact": "maps.googleapis.com"}}]}}]}}]
    [ids] = [p["and_ids"]["ids"] for p in policy["principals"]]
    logistics = {"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/logistics/.*"}}}}
    cart = {"authenticated": {"principal_name": {"exact": "spiffe://prod.mesh.example.com/ns/checkout/sa/cart"}}}
    assert sorted(ids, key=str) == sorted([{"not_id": {"or_ids": {"ids": [logistics]}}},
                                           {"not_id": {"or_ids": {"ids": [cart]}}}], key=str)


def test_rbac_on_the_https_chain_matches_the_sni() -> None:
    """An HTTP port's rule (`connection.sni`, DENY for callers outside namespace shop) is an HTTP
    RBAC filter before the router matching `requested_server_name` (generator.go:56-79); the
    principal is a `not_id` of the namespace's regex."""
    listeners = _by_name(_gateway(_compile(*POLICED))["static_resources"]["listeners"])
    chain = listeners["0.0.0.0_80"]["filter_chains"][0]
    filters = _typed(chain["filters"][0])["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.rbac", "envoy.filters.http.router"]
    policy = filters[0]["typed_config"]["rules"]["policies"]["ns[istio-system]-policy[weather-egress]-rule[0]"]
    assert policy["permissions"] == [{"and_rules": {"rules": [
        {"or_rules": {"rules": [{"requested_server_name": {"exact": "api.weather.example.com"}}]}}]}}]
    assert policy["principals"] == [{"and_ids": {"ids": [{"not_id": {"or_ids": {"ids": [
        {"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/shop/.*"}}}}]}}}]}}]


def test_rbac_http_only_fields_leave_an_allow_rule_out_of_tcp_chains() -> None:
    """`checkError` (model/model.go:355): on a TCP chain an ALLOW rule naming hosts is skipped,
    leaving an ALLOW filter without policies (nothing allowed); a DENY rule is kept without it."""
    allow = _Policy(ObjectId("AuthorizationPolicy", "istio-system", "a"), "ALLOW",
                    ({"to": [{"operation": {"hosts": ["x.example.com"], "ports": ["443"]}}]},))
    [(tcp, origin, _)] = rbac_filters([allow], for_tcp=True)
    assert tcp["typed_config"]["rules"] == {"policies": {}} and origin == allow.ident
    [(http, _, _)] = rbac_filters([allow], for_tcp=False)
    assert list(http["typed_config"]["rules"]["policies"]) == ["ns[istio-system]-policy[a]-rule[0]"]
    deny = _Policy(ObjectId("AuthorizationPolicy", "istio-system", "d"), "DENY", ({"from": [{"source": {
        "namespaces": ["bad*"]}}]},))
    filters = rbac_filters([allow, deny], for_tcp=False)
    assert [f["typed_config"]["rules"].get("action") for f, _, _ in filters] == ["DENY", None]
    regex = filters[0][0]["typed_config"]["rules"]["policies"]["ns[istio-system]-policy[d]-rule[0]"]
    assert regex["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"][0]["authenticated"]["principal_name"] \
        == {"safe_regex": {"regex": ".*/ns/bad.*/.*"}}


# --- sidecars routed to the gateway ---------------------------------------------------------------

def test_sidecars_route_gateway_hosts_to_the_gateway_subset(lab: Any) -> None:
    """A host whose VirtualService binds `mesh` (visible to every namespace: no consumers) routes to
    the gateway's subset cluster `outbound|<port>|<service>|<gateway host>`, ISTIO_MUTUAL with the
    subset's SNI (the gateway DR's portLevelSettings), STRICT_DNS to the gateway's Service name;
    HTTP through the VirtualService route, TLS on its SNI hosts, TCP on the port."""
    env = lab.envs["dev"]
    clusters = _by_name(orjson.loads(env.envoy.data())["resources"])
    listeners = _by_name(orjson.loads(env.envoy.files[ENVOY_LISTENERS])["resources"])
    for port, subset, sni in ((80, "weather", "api.weather.example.com"), (443, "stripe", "api.stripe.com"),
                              (5432, "pg", "pg.partner.example.com")):
        cluster = clusters[f"outbound|{port}|{subset}|{GSVC}"]
        assert cluster["type"] == "STRICT_DNS"
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert address["socket_address"] == {"address": GSVC, "port_value": port}
        context = cluster["transport_socket"]["typed_config"]
        assert context["sni"] == sni
        assert context["common_tls_context"]["alpn_protocols"] == ["istio"]
        assert [s["name"] for s in context["common_tls_context"]["tls_certificate_sds_secret_configs"]] == ["default"]
        assert f"outbound|{port}||{GSVC}" not in clusters  # the Service's default cluster: not modelled
    vhost = _by_name(_typed(listeners["0.0.0.0_80"]["filter_chains"][0]["filters"][0])["route_config"]
                     ["virtual_hosts"])["api.weather.example.com:80"]
    assert [r["route"]["cluster"] for r in vhost["routes"]] == [f"outbound|80|weather|{GSVC}"]
    assert vhost["routes"][0]["name"] == "mesh-80"
    tls = next(c for c in listeners["0.0.0.0_443"]["filter_chains"]
               if c.get("filter_chain_match", {}).get("server_names") == ["api.stripe.com"])
    assert _typed(tls["filters"][-1])["cluster"] == f"outbound|443|stripe|{GSVC}"
    direct = next(c for c in listeners["0.0.0.0_443"]["filter_chains"]
                  if c.get("filter_chain_match", {}).get("server_names") == ["api.direct.example.com"])
    assert _typed(direct["filters"][0])["cluster"] == "outbound|443||api.direct.example.com"
    tcp = listeners["0.0.0.0_5432"]["filter_chains"][0]
    assert _typed(tcp["filters"][0])["cluster"] == f"outbound|5432|pg|{GSVC}"


def test_the_moved_rule_is_not_applied_by_sidecars(lab: Any) -> None:
    """The DR in istio-system with `exportTo: [.]` is the gateway's only: a sidecar's cluster for
    the host (still built, as istiod builds every visible service's) has no TLS."""
    clusters = _by_name(orjson.loads(lab.envs["dev"].envoy.data())["resources"])
    assert "transport_socket" not in clusters["outbound|80||api.weather.example.com"]


def test_virtual_service_visibility_follows_export_to() -> None:
    """With consumers the gateway objects are exported to their namespaces only: a proxy of a
    consumer namespace routes to the gateway, one of another namespace goes straight out
    (istiod: VirtualServices and DRs not exported to a namespace do not apply to its proxies)."""
    service = WEATHER + "    consumers:\n      - namespace: checkout\n"
    manifests = [a.body for a in _compile(service).envs["dev"].artifacts]

    def routed(namespace: str) -> bool:
        bootstrap, _ = build_bootstrap(manifests, ProxySettings(namespace=namespace))
        return GSVC in orjson.dumps(bootstrap).decode()

    assert routed("checkout") and not routed("egress") and not routed("billing")
    bootstrap, _ = build_bootstrap(manifests, ProxySettings(namespace="checkout"))
    clusters = _by_name(bootstrap["static_resources"]["clusters"])
    assert f"outbound|80|weather|{GSVC}" in clusters


def test_all_files_pass_validation(lab: Any) -> None:
    env = lab.envs["dev"]
    whole = env.envoy.bootstrap()
    assert validate_bootstrap(whole) == []


@pytest.mark.skipif(shutil.which("envoy") is None, reason="no envoy binary on PATH")
def test_envoy_binary_accepts_gateway_json(tmp_path: Path, lab: Any, estate: dict[str, dict[str, bytes]]) -> None:
    files = {"lab.json": lab.envs["dev"].envoy.files[ENVOY_GATEWAY], "prod.json": estate["prod"][ENVOY_GATEWAY]}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = subprocess.run(["envoy", "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_vm_group_of_a_consumer_namespace_gets_its_own_view_routed_to_the_gateway() -> None:
    """The egress Envoy (namespace egress) does not see the VirtualService exported to checkout; a
    VM group in checkout does: it gets a view of its own whose listener routes to the gateway, and
    every proxy's files are exactly the configuration build_bootstrap gives it alone."""
    def vm(name: str, namespace: str, address: str) -> str:
        return (f"  - name: {name}\n    owner: team-v\n    namespace: {namespace}\n"
                f"    hosts: [{name}.internal.example.com]\n    location: internal\n"
                "    resolution: static\n    endpointsAs: workloadEntries\n"
                "    ports:\n      - {number: 8080, protocol: HTTP, name: http}\n"
                f"    endpoints:\n      - {{address: {address}, name: a, serviceAccount: {name}}}\n")

    weather = WEATHER + "    consumers:\n      - namespace: checkout\n"
    env_yaml = ENV + "namespaces: {checkout: {}}\n"
    env = _compile(weather, vm("cart", "checkout", "10.1.0.1"), vm("batch", "egress", "10.1.0.2"),
                   env=env_yaml).envs["dev"]
    _assert_every_proxy_exact(env)
    files = _files(env)
    workloads = {rel: files[rel]["node"]["metadata"]["NAMESPACE"] for rel in files
                 if rel.startswith("envoy/workloads/")}
    routed = {rel: GSVC in orjson.dumps(_whole(files, rel)).decode() for rel in workloads}
    assert {workloads[rel]: r for rel, r in routed.items()} == {"checkout": True, "egress": False}
    assert GSVC not in orjson.dumps(_whole(files, ENVOY_BOOTSTRAP)).decode()


def test_which_destination_rule_the_gateway_applies() -> None:
    """`PushContext.destinationRule` (pilot/pkg/model/push_context.go:1259-1325) for a gateway in the
    root namespace: its private (`exportTo: [.]`) rules first, then the service namespace's, then the
    root namespace's exported ones; a sidecar elsewhere never sees the private one."""
    def dr(name: str, ns: str, pool: int, export: list[str] | None = None) -> Json:
        spec: Json = {"host": "x.example.com", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": pool}}}}
        if export:
            spec["exportTo"] = export
        return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}

    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "metadata": {"name": "x", "namespace": "egress"},
          "spec": {"hosts": ["x.example.com"], "resolution": "DNS",
                   "ports": [{"number": 443, "name": "t", "protocol": "TLS"}]}}
    gw = ProxySettings(namespace="istio-system", labels=(("istio", "egressgateway"),))

    def chosen(*rules: Json) -> tuple[str | None, str | None]:
        manifests = [se, *rules]
        service = load_services(manifests, "cluster.local")[0]
        at_gateway = _Builder(manifests, gw).rule_for(service)
        at_sidecar = find_rule(load_destination_rules(manifests, "cluster.local"), service, proxy_namespace="egress")
        return (at_gateway.ident.name if at_gateway else None, at_sidecar.ident.name if at_sidecar else None)

    assert chosen(dr("own", "egress", 1), dr("moved", "istio-system", 2, ["."])) == ("moved", "own")
    assert chosen(dr("own", "egress", 1), dr("root", "istio-system", 3)) == ("own", "own")
    assert chosen(dr("root", "istio-system", 3)) == ("root", "root")
    assert chosen(dr("moved", "istio-system", 2, ["."])) == ("moved", None)
