"""Tests for the Envoy pass (`meshc.proxy.envoy`): Istio objects -> static Envoy bootstrap.

Golden files: every folder ``tests/fixtures/envoy/<case>/`` holds ``input.yaml`` (Istio manifests)
and ``bootstrap/`` (the expected bootstrap, keys sorted, 2-space indent, stored as one file per
cluster and listener and reassembled byte for byte: tests/conftest.py). After an intended
change of output, regenerate them and review the diff like code:

    MESHC_UPDATE_GOLDENS=1 .venv/bin/python -m pytest -q tests/test_envoy.py   (one case: =tls_modes)

Every bootstrap built here must pass `validate_bootstrap` (Envoy's protos, strict) with no
findings. Oracles: Envoy's own proto definitions and PGV rules (xds-protos), and the
hand-derived translation in istio-facts.md (the team's Istio reference notes) section 10.
"""

from __future__ import annotations

import copy
import random
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from meshc.check.envoy import pgv as envoy_pgv
from meshc.check.envoy.validate import envoy_validate_binary, validate_bootstrap
from meshc.files.tree import MemoryTree
from meshc.model.ids import ObjectId
from meshc.pipeline import compile_estate
from meshc.proxy.envoy.bootstrap import ProxySettings, build_bootstrap
from meshc.proxy.envoy.values import envoy_duration, whole_seconds

from .conftest import check_golden

FIXTURES = Path(__file__).parent / "fixtures" / "envoy"
CASES = {
    "worked_example": ProxySettings(locality="us-east1/a"),
    "dns_resolution": ProxySettings(dns_refresh_rate="30s"),
    "passthrough_none": ProxySettings(),
    "tls_modes": ProxySettings(trust_domain="cluster.local"),
    "lb_and_pool": ProxySettings(connect_timeout="2s"),
    "localities": ProxySettings(locality="us-east1/a", outbound_policy="REGISTRY_ONLY"),
}
Json = dict[str, Any]
SE = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry"}
DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule"}


def load_case(case: str) -> list[Json]:
    text = (FIXTURES / case / "input.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def dump(bootstrap: Json) -> bytes:
    return orjson.dumps(bootstrap, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def clusters(bootstrap: Json) -> dict[str, Json]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def listeners(bootstrap: Json) -> dict[str, Json]:
    return {item["name"]: item for item in bootstrap["static_resources"]["listeners"]}


def build(manifests: list[Json], **settings: Any) -> Json:
    bootstrap, _ = build_bootstrap(manifests, ProxySettings(**settings))
    assert validate_bootstrap(bootstrap) == []
    return bootstrap


def se(name: str, **spec: Any) -> Json:
    return {**SE, "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def dr(name: str, **spec: Any) -> Json:
    return {**DR, "metadata": {"name": name, "namespace": "default"}, "spec": spec}


# --- goldens -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    bootstrap, _ = build_bootstrap(load_case(case), CASES[case])
    check_golden(FIXTURES / case / "bootstrap.json", dump(bootstrap))  # stored split, compared byte for byte
    assert validate_bootstrap(bootstrap) == []


def test_every_fixture_folder_is_a_case() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(CASES)


def test_build_is_deterministic_and_pure() -> None:
    manifests = load_case("lb_and_pool") + load_case("localities")
    before = copy.deepcopy(manifests)
    first, sources = build_bootstrap(manifests, ProxySettings(locality="us-east1/a"))
    shuffled = list(manifests)
    random.Random(7).shuffle(shuffled)
    second, sources2 = build_bootstrap(shuffled, ProxySettings(locality="us-east1/a"))
    assert dump(first) == dump(second)
    assert sources == sources2
    assert manifests == before
    rendered = orjson.dumps(first)
    assert validate_bootstrap(first) == []
    assert orjson.dumps(first) == rendered  # validation leaves the bootstrap (and key order) alone


# --- section 10 worked translation ---------------------------------------------------------

def test_worked_example_default_cluster() -> None:
    bootstrap = build(load_case("worked_example"), locality="us-east1/a")
    c = clusters(bootstrap)["outbound|80||details.bookinfo.com"]
    assert c["alt_stat_name"] == "outbound|80||details.bookinfo.com;"
    assert c["type"] == "STATIC"  # istiod: EDS; a static bootstrap carries the endpoints inline
    assert (c["connect_timeout"], c["lb_policy"]) == ("5s", "ROUND_ROBIN")
    assert c["circuit_breakers"] == {"thresholds": [{
        "max_connections": 100, "max_pending_requests": 4294967295, "max_requests": 1000,
        "max_retries": 4294967295, "track_remaining": True}]}
    assert c["outlier_detection"] == {
        "consecutive_5xx": 5, "enforcing_consecutive_5xx": 100, "interval": "10s",
        "base_ejection_time": "30s", "enforcing_success_rate": 0}
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}
    assert c["metadata"]["filter_metadata"]["istio"] == {
        "services": [{"host": "details.bookinfo.com", "name": "details.bookinfo.com",
                      "namespace": "default"}],
        "config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/details"}


def test_worked_example_auto_mtls() -> None:
    c = clusters(build(load_case("worked_example"), locality="us-east1/a"))[
        "outbound|80||details.bookinfo.com"]
    istio, disabled = c["transport_socket_matches"]
    assert (istio["name"], istio["match"]) == ("tlsMode-istio", {"tlsMode": "istio"})
    assert (disabled["name"], disabled["match"]) == ("tlsMode-disabled", {})
    assert disabled["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
    context = istio["transport_socket"]["typed_config"]
    assert context["sni"] == "outbound_.80_._.details.bookinfo.com"
    common = context["common_tls_context"]
    assert common["tls_params"] == {"tls_minimum_protocol_version": "TLSv1_2",
                                    "tls_maximum_protocol_version": "TLSv1_3"}
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert combined["default_validation_context"]["match_subject_alt_names"] == [
        {"exact": "spiffe://cluster.local/ns/default/sa/details"}]
    assert "sds-grpc" in clusters(build(load_case("worked_example")))


def test_worked_example_load_assignment() -> None:
    c = clusters(build(load_case("worked_example"), locality="us-east1/a"))[
        "outbound|80||details.bookinfo.com"]
    groups = c["load_assignment"]["endpoints"]
    summary = [(g["locality"], g["priority"], g["load_balancing_weight"],
                [(e["endpoint"]["address"]["socket_address"]["address"],
                  e["endpoint"]["address"]["socket_address"]["port_value"],
                  e["load_balancing_weight"], e["health_status"]) for e in g["lb_endpoints"]])
               for g in groups]
    assert summary == [
        ({"region": "us-east1", "zone": "a"}, 0, 1, [("2.2.2.2", 8080, 1, "HEALTHY")]),
        ({"region": "us-east1", "zone": "b"}, 1, 3, [("3.3.3.3", 8080, 3, "HEALTHY")]),
    ]
    meta = groups[0]["lb_endpoints"][0]["metadata"]["filter_metadata"]
    assert meta == {"envoy.transport_socket_match": {"tlsMode": "istio"}}


def test_worked_example_subset_and_listener() -> None:
    bootstrap = build(load_case("worked_example"), locality="us-east1/a")
    subset = clusters(bootstrap)["outbound|80|v1|details.bookinfo.com"]
    sni = subset["transport_socket_matches"][0]["transport_socket"]["typed_config"]["sni"]
    assert sni == "outbound_.80_.v1_.details.bookinfo.com"
    assert subset["metadata"]["filter_metadata"]["istio"]["subset"] == "v1"
    addresses = [e["endpoint"]["address"]["socket_address"]["address"]
                 for g in subset["load_assignment"]["endpoints"] for e in g["lb_endpoints"]]
    assert addresses == ["2.2.2.2"]
    listener = listeners(bootstrap)["0.0.0.0_80"]
    assert listener["bind_to_port"] is False
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]
    assert route["name"] == "80" and route["validate_clusters"] is False
    vhost = route["virtual_hosts"][0]
    assert (vhost["name"], vhost["domains"]) == ("details.bookinfo.com:80", ["details.bookinfo.com"])
    action = vhost["routes"][0]["route"]
    assert action["cluster"] == "outbound|80||details.bookinfo.com"
    assert action["retry_policy"]["num_retries"] == 2
    assert route["virtual_hosts"][-1]["name"] == "allow_any"


def test_no_priorities_without_outlier_detection_or_client_locality() -> None:
    manifests = [m for m in load_case("worked_example") if m["kind"] != "DestinationRule"]
    c = clusters(build(manifests, locality="us-east1/a"))["outbound|80||details.bookinfo.com"]
    assert all("priority" not in g for g in c["load_assignment"]["endpoints"])
    c = clusters(build(load_case("worked_example")))["outbound|80||details.bookinfo.com"]
    assert all("priority" not in g for g in c["load_assignment"]["endpoints"])


# --- resolutions, ports, policies ----------------------------------------------------------

@pytest.mark.parametrize("resolution, endpoints, expected", [
    ("STATIC", [{"address": "10.0.0.1"}], "STATIC"),
    ("DNS", [], "STRICT_DNS"),
    ("DNS_ROUND_ROBIN", [], "LOGICAL_DNS"),
    ("NONE", [], "ORIGINAL_DST"),
])
def test_resolution_to_cluster_type(resolution: str, endpoints: list[Json], expected: str) -> None:
    manifest = se("x", hosts=["x.example.com"], resolution=resolution, endpoints=endpoints,
                  ports=[{"number": 81, "name": "tcp", "protocol": "TCP"}])
    c = clusters(build([manifest]))["outbound|81||x.example.com"]
    assert c["type"] == expected
    if expected == "ORIGINAL_DST":
        assert c["lb_policy"] == "CLUSTER_PROVIDED" and "load_assignment" not in c
    if expected.endswith("DNS"):
        assert (c["dns_lookup_family"], c["respect_dns_ttl"]) == ("V4_ONLY", True)


def test_dns_cluster_without_endpoints_is_not_emitted() -> None:
    bootstrap = build(load_case("dns_resolution"))
    assert "outbound|7000||orphan.example.com" not in clusters(bootstrap)
    chain = listeners(bootstrap)["10.9.9.9_7000"]["filter_chains"][0]
    assert chain["filters"][0]["typed_config"]["cluster"] == "outbound|7000||orphan.example.com"


def test_udp_ports_are_skipped() -> None:
    bootstrap = build(load_case("dns_resolution"))
    assert not [name for name in clusters(bootstrap) if name.startswith("outbound|53|")]
    assert "0.0.0.0_53" not in listeners(bootstrap)


def test_endpoint_port_precedence() -> None:
    manifest = se("p", hosts=["p.example.com"], resolution="STATIC", ports=[
        {"number": 80, "name": "a", "protocol": "HTTP", "targetPort": 8080},
        {"number": 81, "name": "b", "protocol": "HTTP"}],
        endpoints=[{"address": "10.0.0.1", "ports": {"a": 9000}}, {"address": "10.0.0.2"}])
    found = clusters(build([manifest]))

    def ports(name: str) -> list[int]:
        return [e["endpoint"]["address"]["socket_address"]["port_value"]
                for g in found[name]["load_assignment"]["endpoints"] for e in g["lb_endpoints"]]

    assert ports("outbound|80||p.example.com") == [9000, 8080]
    assert ports("outbound|81||p.example.com") == [81, 81]


@pytest.mark.parametrize("lb, expected", [
    ({}, "LEAST_REQUEST"), ({"simple": "UNSPECIFIED"}, "LEAST_REQUEST"),
    ({"simple": "LEAST_CONN"}, "LEAST_REQUEST"), ({"simple": "ROUND_ROBIN"}, "ROUND_ROBIN"),
    ({"simple": "RANDOM"}, "RANDOM"), ({"consistentHash": {"httpHeaderName": "x"}}, "RING_HASH"),
    ({"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 1009}}}, "MAGLEV"),
])
def test_load_balancer_mapping(lb: Json, expected: str) -> None:
    manifests = [se("s", hosts=["s.example.com"], resolution="STATIC",
                    endpoints=[{"address": "10.0.0.1"}],
                    ports=[{"number": 80, "name": "http", "protocol": "HTTP"}]),
                 dr("s", host="s.example.com", trafficPolicy={"loadBalancer": lb})]
    assert clusters(build(manifests))["outbound|80||s.example.com"]["lb_policy"] == expected


def test_port_level_settings_replace_top_level_policy() -> None:
    found = clusters(build(load_case("lb_and_pool")))
    top, port = found["outbound|8080||shop.internal.example"], found["outbound|7000||shop.internal.example"]
    assert "outlier_detection" in top and "retry_budget" in top["circuit_breakers"]["thresholds"][0]
    assert "outlier_detection" not in port
    assert port["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 4294967295, "max_pending_requests": 4294967295,
        "max_requests": 4294967295, "max_retries": 4294967295, "track_remaining": True}
    assert (port["lb_policy"], port["maglev_lb_config"]) == ("MAGLEV", {"table_size": 65537})
    assert found["outbound|7000|v2|shop.internal.example"]["lb_policy"] == "RANDOM"


def test_connection_pool_and_outlier_mapping() -> None:
    c = clusters(build(load_case("lb_and_pool")))["outbound|9090||shop.internal.example"]
    assert c["connect_timeout"] == "0.250s"
    assert c["upstream_connection_options"] == {"tcp_keepalive": {
        "keepalive_probes": 3, "keepalive_time": 90, "keepalive_interval": 1}}
    options = c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["common_http_protocol_options"] == {
        "idle_timeout": "30s", "max_requests_per_connection": 1, "max_connection_duration": "3600s"}
    assert options["explicit_http_config"]["http2_protocol_options"] == {
        "max_concurrent_streams": 100, "connection_keepalive": {"interval": "10s", "timeout": "2s"}}
    rules = options["outlier_detection"]["error_matcher"]["or_match"]["rules"]
    assert [r["http_response_headers_match"]["headers"][0]["string_match"]["exact"]
            for r in rules] == ["503", "504"]
    assert c["common_lb_config"]["healthy_panic_threshold"] == {"value": 25.0}
    assert c["outlier_detection"]["enforcing_consecutive_5xx"] == 0


def test_tls_origination_modes() -> None:
    found = clusters(build(load_case("tls_modes")))
    mutual = found["outbound|27018||mongo.db.internal"]["transport_socket"]["typed_config"]
    common = mutual["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [
        "file-cert:/etc/certs/myclientcert.pem~/etc/certs/client_private_key.pem"]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == (
        "file-root:/etc/certs/rootcacerts.pem")
    assert mutual["sni"] == "mongo.db.internal"
    assert "transport_socket" not in found["outbound|443||secret.example.com"]  # credentialName
    assert "transport_socket" not in found["outbound|9000||plain.apps.internal"]  # DISABLE
    assert "transport_socket_matches" not in found["outbound|9000||plain.apps.internal"]
    insecure = found["outbound|443||insecure.example.com"]["transport_socket"]
    assert insecure["name"] == "envoy.transport_sockets.upstream_proxy_protocol"
    inner = insecure["typed_config"]["transport_socket"]["typed_config"]["common_tls_context"]
    assert inner["validation_context"] == {}


def test_simple_without_sni_uses_auto_sni_and_san() -> None:
    c = clusters(build(load_case("dns_resolution")))["outbound|80||edition.cnn.com"]
    options = c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["upstream_http_protocol_options"] == {"auto_sni": True, "auto_san_validation": True}
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "edition.cnn.com", "port_value": 443}}


def test_registry_only_blackholes_unknown_traffic() -> None:
    bootstrap = build(load_case("localities"), locality="us-east1/a", outbound_policy="REGISTRY_ONLY")
    catch_all = listeners(bootstrap)["virtualOutbound"]["filter_chains"][1]
    assert catch_all["filters"][0]["typed_config"]["cluster"] == "BlackHoleCluster"
    route = listeners(bootstrap)["0.0.0.0_5000"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert route["route_config"]["virtual_hosts"][-1]["routes"][0]["direct_response"] == {"status": 502}


def test_locality_failover_priorities() -> None:
    found = clusters(build(load_case("localities"), locality="us-east1/a"))
    groups = found["outbound|5001||failover.hw.internal"]["load_assignment"]["endpoints"]
    by_region = {(g["locality"]["region"], g["locality"].get("zone")): g["priority"] for g in groups}
    assert by_region[("eu-west1", "c")] == 3 and by_region[("ap-south1", "a")] == 4
    distribute = found["outbound|5003||distribute.hw.internal"]
    weights = {"/".join(g["locality"].values()): g["load_balancing_weight"]
               for g in distribute["load_assignment"]["endpoints"]}
    assert weights == {"eu-west1/c": 10, "us-east1/a": 35, "us-east1/a/s1": 35, "us-east1/b": 20}


def test_sources_point_back_to_declarations() -> None:
    bootstrap, sources = build_bootstrap(load_case("worked_example"), ProxySettings())
    names = [c["name"] for c in bootstrap["static_resources"]["clusters"]]
    index = names.index("outbound|80||details.bookinfo.com")
    assert sources[("static_resources", "clusters", index)] == ("DestinationRule", "default", "details")
    endpoint = ("static_resources", "clusters", index, "load_assignment", "endpoints", 1,
                "lb_endpoints", 0)
    assert sources[endpoint] == ("WorkloadEntry", "default", "details-vm-2")
    vhost_paths = [p for p in sources if "virtual_hosts" in p]
    assert [sources[p] for p in vhost_paths] == [("ServiceEntry", "default", "details-svc")]


# --- validation ----------------------------------------------------------------------------

def _broken(mutate: Any) -> list[tuple[Any, ...]]:
    bootstrap, _ = build_bootstrap(load_case("worked_example"), ProxySettings())
    mutate(bootstrap)
    return [(path, finding.code, finding.path) for path, finding in validate_bootstrap(bootstrap)]


def _cluster(bootstrap: Json, name: str = "outbound|80||details.bookinfo.com") -> Json:
    return next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == name)


def _index(name: str = "outbound|80||details.bookinfo.com") -> int:
    bootstrap, _ = build_bootstrap(load_case("worked_example"), ProxySettings())
    return [c["name"] for c in bootstrap["static_resources"]["clusters"]].index(name)


def test_wrong_enum_value_is_e001_at_field() -> None:
    found = _broken(lambda b: _cluster(b).update(lb_policy="ROUND_ROBINN"))
    path = ("static_resources", "clusters", _index(), "lb_policy")
    assert found == [(path, "E001", path)]


def test_unknown_key_is_e001_at_key() -> None:
    def mutate(b: Json) -> None:
        _cluster(b)["transport_socket_matches"][0]["transport_socket"]["typed_config"][
            "common_tls_context"]["tls_paramz"] = {}
    path = ("static_resources", "clusters", _index(), "transport_socket_matches", 0,
            "transport_socket", "typed_config", "common_tls_context", "tls_paramz")
    assert _broken(mutate) == [(path, "E001", path)]


def test_unresolvable_any_type_is_e001() -> None:
    def mutate(b: Json) -> None:
        _cluster(b)["transport_socket_matches"][1]["transport_socket"]["typed_config"]["@type"] = (
            "type.googleapis.com/no.such.Type")
    path = ("static_resources", "clusters", _index(), "transport_socket_matches", 1,
            "transport_socket", "typed_config", "@type")
    assert _broken(mutate) == [(path, "E001", path)]


def test_non_object_bootstrap_is_e001() -> None:
    assert [f.code for _, f in validate_bootstrap([])] == ["E001"]  # type: ignore[arg-type]


@pytest.mark.skipif(not envoy_pgv.available(), reason="protoc-gen-validate is not installed")
def test_pgv_rule_violations_are_e002() -> None:
    def mutate(b: Json) -> None:
        _cluster(b).update(name="", connect_timeout="-1s")
        lb = _cluster(b, "outbound|80|v1|details.bookinfo.com")["load_assignment"]["endpoints"][0]
        lb["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = 70000
    base = ("static_resources", "clusters", _index())
    subset = ("static_resources", "clusters", _index("outbound|80|v1|details.bookinfo.com"))
    port = subset + ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address",
                     "socket_address", "port_value")
    found = _broken(mutate)
    assert sorted(found) == sorted([
        (base + ("name",), "E002", base + ("name",)),
        (base + ("connect_timeout",), "E002", base + ("connect_timeout",)),
        (port, "E002", port),
    ])


@pytest.mark.skipif(not envoy_pgv.available(), reason="protoc-gen-validate is not installed")
def test_pgv_rules_inside_typed_config_are_checked() -> None:
    def mutate(b: Json) -> None:
        hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["stat_prefix"] = ""
    path = ("static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config",
            "stat_prefix")
    assert _broken(mutate) == [(path, "E002", path)]


def _fake_envoy(directory: Path, exit_code: int) -> None:
    script = directory / "envoy"
    script.write_text(f'#!/bin/sh\necho "bad config: $*" >&2\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_envoy_binary_check_is_skipped_without_binary(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert envoy_validate_binary(str(tmp_path / "bootstrap.json")) == []


def test_envoy_binary_failure_is_e003(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_envoy(tmp_path, 1)
    monkeypatch.setenv("PATH", str(tmp_path))
    findings = envoy_validate_binary(str(tmp_path / "bootstrap.json"))
    assert [f.code for f in findings] == ["E003"]
    assert "--mode validate -c" in findings[0].message
    _fake_envoy(tmp_path, 0)
    assert envoy_validate_binary(str(tmp_path / "bootstrap.json")) == []


@pytest.mark.parametrize("text, expected", [
    ("5s", "5s"), ("250ms", "0.250s"), ("1m30s", "90s"), ("1h", "3600s"), ("1.5ms", "0.001500s"),
    ("0s", "0s"), ("-1s", "-1s"), ("10", "10"), ("bogus", "bogus"),
])
def test_duration_conversion(text: str, expected: str) -> None:
    assert envoy_duration(text) == expected


def test_keepalive_seconds_truncate() -> None:
    assert (whole_seconds("1500ms"), whole_seconds("1m")) == (1, 60)


@pytest.mark.skipif(not envoy_pgv.available(), reason="protoc-gen-validate is not installed")
def test_pgv_is_left_as_it_was_after_a_validation() -> None:
    """meshc swaps parts of protoc-gen-validate only while it validates: another user of the
    package in the same process sees it unchanged."""
    from protoc_gen_validate import validator

    names = ("_validate_all_inner", "_validate_inner", "Template")
    before = {name: getattr(validator, name) for name in names} | {"init": validator.ValidatingMessage.__init__}
    assert _broken(lambda b: _cluster(b).update(name=""))  # a validation that finds something
    after = {name: getattr(validator, name) for name in names} | {"init": validator.ValidatingMessage.__init__}
    assert after == before


# --- fidelity to istiod (docs/envoy.md "Fidelity") ---------------------------------

HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _sds_configs(node: Any) -> list[Json]:
    """Every `sds_config` ConfigSource anywhere below `node`."""
    if isinstance(node, dict):
        found = [node["sds_config"]] if "sds_config" in node else []
        return found + [c for value in node.values() for c in _sds_configs(value)]
    if isinstance(node, list):
        return [c for item in node for c in _sds_configs(item)]
    return []


def _tls_context(cluster: Json) -> Json:
    socket = cluster["transport_socket"]
    if socket["name"] == "envoy.transport_sockets.upstream_proxy_protocol":
        socket = socket["typed_config"]["transport_socket"]
    context: Json = socket["typed_config"]
    return context


def _simple_case(**tls: Any) -> Json:
    return clusters(build([
        se("ext", hosts=["ext.example.com"], resolution="DNS", location="MESH_EXTERNAL",
           ports=[{"number": 443, "name": "https", "protocol": "HTTP"}]),
        dr("ext", host="ext.example.com", trafficPolicy={"tls": tls}),
    ]))


def test_file_certificates_are_sds_secrets_named_as_the_agent_serves_them() -> None:
    """istiod never inlines DR certificate files: `buildUpstreamClusterTLSContext`
    (pilot/pkg/networking/core/cluster_tls.go) puts `SdsCertificateConfig{CertificatePath,
    PrivateKeyPath}.GetResourceName()` = ``file-cert:<cert>~<key>`` in
    tls_certificate_sds_secret_configs (MUTUAL) and `GetRootResourceName()` = ``file-root:<ca>`` as
    the combined validation context's SDS secret (pkg/security/security.go, ResourceSeparator "~"),
    "rather than reading directly in Envoy, which does not support rotation"; the agent serves
    those names from the files and watches them (security/pkg/nodeagent/cache/secretcache.go,
    generateFileSecret). `caCrl` stays a `crl.filename` in the default validation context."""
    context = _simple_case(mode="MUTUAL", clientCertificate="/c/cert.pem", privateKey="/c/key.pem",
                           caCertificates="/c/ca.pem", caCrl="/c/crl.pem",
                           subjectAltNames=["ext.example.com"])["outbound|443||ext.example.com"]
    common = _tls_context(context)["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [
        "file-cert:/c/cert.pem~/c/key.pem"]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "file-root:/c/ca.pem"
    assert combined["default_validation_context"] == {
        "match_subject_alt_names": [{"exact": "ext.example.com"}], "crl": {"filename": "/c/crl.pem"}}
    assert "validation_context" not in common and "tls_certificates" not in common


def test_no_ca_certificates_is_the_system_root_over_sds() -> None:
    """An empty `caCertificates` (VERIFY_CERTIFICATE_AT_CLIENT, default on) is the SDS secret
    ``file-root:system`` (security.FileRootSystemCACert, pkg/security/security.go), which the agent
    answers with the OS trust bundle it finds (security/pkg/nodeagent/cafile); no CA path is
    written into the bootstrap, so it runs on any distribution."""
    found = _simple_case(mode="SIMPLE")
    common = _tls_context(found["outbound|443||ext.example.com"])["common_tls_context"]
    secret = common["combined_validation_context"]["validation_context_sds_secret_config"]
    assert secret["name"] == "file-root:system"
    assert "sds-grpc" in found


def test_insecure_skip_verify_has_no_validation_and_no_sds() -> None:
    """`insecureSkipVerify` → an empty `validation_context {}` and no SDS secret at all
    (cluster_tls.go: "don't set up SdsSecretConfig"), so no sds-grpc cluster is needed."""
    found = _simple_case(mode="SIMPLE", insecureSkipVerify=True)
    assert _tls_context(found["outbound|443||ext.example.com"])["common_tls_context"][
        "validation_context"] == {}
    assert "sds-grpc" not in found


def test_only_the_workload_secrets_are_waited_for() -> None:
    """Istio's preset SDS configs for ``default`` and ``ROOTCA`` (`defaultSDSConfig`,
    `rootSDSConfig`, pkg/model/authentication.go:57,78) set `InitialFetchTimeout: 0s`: Envoy waits
    for the workload certificate. Every other secret (``file-cert:``, ``file-root:``) goes through
    `constructSdsSecretConfig` (:93-127), which sets none: Envoy's default applies."""
    manifests = load_case("tls_modes") + load_case("worked_example")
    found: list[tuple[str, Json]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "sds_config" in node and "name" in node:
                found.append((node["name"], node["sds_config"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(build(manifests)["static_resources"]["clusters"])
    names = {name for name, _ in found}
    assert {"default", "ROOTCA"} <= names and any(n.startswith(("file-root:", "file-cert:")) for n in names)
    for name, config in found:
        assert ("initial_fetch_timeout" in config) == (name in ("default", "ROOTCA")), name
        assert config.get("initial_fetch_timeout", "0s") == "0s"
        assert config["api_config_source"]["grpc_services"] == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]


def test_auto_san_validation_is_decided_before_service_entry_sans() -> None:
    """`setAutoSniAndAutoSanValidation` (cluster_tls.go) runs on the DR's own `tls` before the
    ServiceEntry's `subjectAltNames` are copied in: with no DR `sni` and no DR SANs, both
    auto_sni and auto_san_validation are set even when the SE's SANs are then verified."""
    found = clusters(build([
        se("ext", hosts=["ext.example.com"], resolution="DNS", subjectAltNames=["ext.example.com"],
           ports=[{"number": 443, "name": "https", "protocol": "HTTP"}]),
        dr("ext", host="ext.example.com", trafficPolicy={"tls": {"mode": "SIMPLE"}}),
    ]))["outbound|443||ext.example.com"]
    options = found["typed_extension_protocol_options"][HPO]["upstream_http_protocol_options"]
    assert options == {"auto_sni": True, "auto_san_validation": True}
    validation = _tls_context(found)["common_tls_context"]["combined_validation_context"]
    assert validation["default_validation_context"]["match_subject_alt_names"] == [
        {"exact": "ext.example.com"}]
    dr_sans = _simple_case(mode="SIMPLE", subjectAltNames=["x.example.com"])["outbound|443||ext.example.com"]
    assert dr_sans["typed_extension_protocol_options"][HPO]["upstream_http_protocol_options"] == {
        "auto_sni": True}


def test_passthrough_cluster_keeps_the_downstream_protocol() -> None:
    """`buildDefaultPassthroughCluster` (pilot/pkg/networking/core/cluster_builder.go) attaches
    `passthroughHttpProtocolOptions`: use_downstream_protocol_config (HTTP/1.1 and HTTP/2), so
    h2c or plaintext gRPC to an unregistered host is forwarded as HTTP/2, and a 5 minute idle
    timeout."""
    passthrough = clusters(build(load_case("passthrough_none")))["PassthroughCluster"]
    assert passthrough["typed_extension_protocol_options"][HPO] == {
        "@type": f"type.googleapis.com/{HPO}",
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}}


def test_external_metadata_only_on_the_default_cluster() -> None:
    """`applyDestinationRule` (cluster_builder.go) marks the default cluster of a MESH_EXTERNAL
    service `istio.external: true`; `buildSubsetCluster` adds only `config` and `subset`."""
    found = clusters(build([
        se("ext", hosts=["ext.example.com"], resolution="DNS",
           ports=[{"number": 80, "name": "http", "protocol": "HTTP"}]),
        dr("ext", host="ext.example.com", subsets=[{"name": "a"}]),
    ]))
    default = found["outbound|80||ext.example.com"]["metadata"]["filter_metadata"]["istio"]
    subset = found["outbound|80|a|ext.example.com"]["metadata"]["filter_metadata"]["istio"]
    assert default["external"] is True
    assert "external" not in subset and subset["subset"] == "a"
    assert subset["config"] == default["config"]


def _we(name: str, address: str, **labels: str) -> Json:
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"address": address, "labels": {"app": "db", **labels}}}


def test_failover_priority_orders_endpoints_by_matching_client_labels() -> None:
    """`applyFailoverPriorityPerLocality` (pilot/pkg/networking/core/loadbalancer/loadbalancer.go:605-637,
    Istio 1.31): each endpoint's priority is the number of `failoverPriority` labels from the first
    one that differs from the client proxy's value (all match → 0), for any label, not only
    region/zone/subzone; when the first label is the network and differs, the other labels still
    rank the endpoint, after the client's network (+ the number of labels: :626-635, istio#60829).
    The proxy's labels are its own plus its locality's topology labels (`AugmentLabels`,
    pilot/pkg/serviceregistry/util/label/label.go), here env.yaml `proxy.labels`. Priorities are
    then made consecutive from 0."""
    manifests = [
        se("db", hosts=["db.example.com"], resolution="STATIC", location="MESH_INTERNAL",
           workloadSelector={"labels": {"app": "db"}},
           ports=[{"number": 5432, "name": "tcp", "protocol": "TCP"}]),
        _we("a", "10.0.0.1", **{"topology.istio.io/network": "n1", "rack": "r1"}),
        _we("b", "10.0.0.2", **{"topology.istio.io/network": "n1", "rack": "r2"}),
        _we("c", "10.0.0.3", **{"topology.istio.io/network": "n2", "rack": "r1"}),
        _we("d", "10.0.0.4", **{"topology.istio.io/network": "n2", "rack": "r2"}),
        dr("db", host="db.example.com", trafficPolicy={
            "outlierDetection": {"consecutive5xxErrors": 3},
            "loadBalancer": {"localityLbSetting": {
                "failoverPriority": ["topology.istio.io/network", "rack"]}}}),
    ]
    labels = (("rack", "r1"), ("topology.istio.io/network", "n1"))
    found = clusters(build(manifests, labels=labels))["outbound|5432||db.example.com"]
    priorities = {e["endpoint"]["address"]["socket_address"]["address"]: g["priority"]
                  for g in found["load_assignment"]["endpoints"] for e in g["lb_endpoints"]}
    assert priorities == {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 2, "10.0.0.4": 3}
    assert found["common_lb_config"]["locality_weighted_lb_config"] == {}
    unknown = clusters(build(manifests))["outbound|5432||db.example.com"]  # no client: no priorities
    assert all("priority" not in g for g in unknown["load_assignment"]["endpoints"])


def test_failover_priority_label_neither_side_has_matches() -> None:
    """loadbalancer.go:620-625 compares `proxyLabels[label]` with `endpoint.Labels[label]`, both ""
    when absent: a label neither the client nor the endpoint has is a match, not a mismatch."""
    from meshc.proxy.envoy.endpoints import _label_priority
    from meshc.proxy.envoy.istio import Endpoint as IstioEndpoint

    endpoint = IstioEndpoint(address="10.0.0.1", ports={}, labels={"rack": "r1"}, locality="", weight=1,
                             tls_mode="", origin=ObjectId("WorkloadEntry", "ns", "a"))
    assert _label_priority(endpoint, {"rack": "r1"}, ["tier", "rack"]) == 0
    assert _label_priority(endpoint, {"rack": "r1", "tier": "gold"}, ["tier", "rack"]) == 2


def test_an_endpoint_network_label_is_not_overridden_by_its_network_field() -> None:
    """`AugmentLabels` (label.go:62) sets topology.istio.io/network only when the label is not
    already set; region/zone/subzone always come from the locality."""
    from meshc.proxy.envoy.istio import _endpoint

    spec = {"address": "10.0.0.1", "network": "n2", "locality": "r/z",
            "labels": {"topology.istio.io/network": "n1", "topology.kubernetes.io/region": "old"}}
    made = _endpoint(spec, spec["labels"], ObjectId("WorkloadEntry", "ns", "a"))
    assert made.labels["topology.istio.io/network"] == "n1"
    assert made.labels["topology.kubernetes.io/region"] == "r"


def test_proxy_labels_are_read_from_env_yaml() -> None:
    env = "name: dev\nnamespace: egress\nproxy: {labels: {topology.istio.io/network: n1, rack: r1}}\n"
    service = "services:\n  - name: api\n    owner: team\n    hosts: [api.example.com]\n    resolution: dns\n" \
              "    ports:\n      - number: 443\n        protocol: HTTPS\n"
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": env, "environments/base/a.yaml": service}))
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.envs["dev"].settings.proxy.labels == (("rack", "r1"), ("topology.istio.io/network", "n1"))


def test_alpn_as_istiod_advertises_it() -> None:
    """`buildUpstreamClusterTLSContext` (cluster_tls.go): SIMPLE/MUTUAL advertise `h2` only on
    HTTP/2 clusters (util.ALPNH2Only) and nothing otherwise, and mark the cluster
    `alpn_override: "false"` (util.AddALPNOverrideToMetadata); ISTIO_MUTUAL advertises
    util.ALPNInMesh / ALPNInMeshH2 (`istio`, `h2`). The `istio-peer-exchange` variant needs the
    istio.metadata_exchange filter, which upstream Envoy lacks (deliberate, docs/envoy.md)."""
    def alpn(protocol: str, tls: Json) -> tuple[Any, Any]:
        found = clusters(build([
            se("a", hosts=["a.example.com"], resolution="DNS", location="MESH_INTERNAL",
               ports=[{"number": 443, "name": "p", "protocol": protocol}]),
            dr("a", host="a.example.com", trafficPolicy={"tls": tls}),
        ]))["outbound|443||a.example.com"]
        meta = found["metadata"]["filter_metadata"]["istio"].get("alpn_override")
        return _tls_context(found)["common_tls_context"].get("alpn_protocols"), meta

    assert alpn("HTTP2", {"mode": "SIMPLE"}) == (["h2"], "false")
    assert alpn("HTTP", {"mode": "SIMPLE"}) == (None, "false")
    assert alpn("GRPC", {"mode": "ISTIO_MUTUAL"}) == (["istio", "h2"], None)
    assert alpn("TCP", {"mode": "ISTIO_MUTUAL"}) == (["istio"], None)
