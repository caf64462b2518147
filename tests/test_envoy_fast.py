"""The envoy layer's fast path (check/envoy/fast.py) gives exactly the reference path's findings.

The reference path is the strict ``json_format.ParseDict`` and the PGV checker on every cluster and
listener (`validate_bootstrap(..., fast=False)`). The items are meshc's own Envoy output on
generated estates (bench/generate.py, 200 services x 3 environments): the egress proxy's whole
configuration, every workload file's static part and, in one of them, the egress gateway's
configuration (routes, HTTP connection managers, RBAC). Their leaf values are then mutated at random
(fixed seeds) to valid and invalid ones (ports out of range, empty names, zero and negative
durations, bad enum names, SNI over 255 bytes, int64 strings, wrong types, values taken from
other items), and their structure too (unknown fields, removed keys, bad or other ``@type``s,
lists emptied or grown); each item's findings must be the same list, message and path included.
No timing is asserted here (bench/envoy_layer.py measures).
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from meshc import api
from meshc.check.envoy import fast
from meshc.check.envoy.validate import validate_bootstrap
from meshc.model.bundle import ENVOY_GATEWAY

from .conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402  (bench/generate.py: the benchmark's estate generator)

SERVICES, ENVS = 200, 3
SEEDS = ((1, 0), (2, 30), (3, 0))  # (seed, share of services through the egress gateway, in %)

Item = tuple[str, dict[str, Any]]  # ("clusters" | "listeners", the item)
Estate = tuple[int, list[dict[str, Any]]]  # (seed, every configuration the envoy layer validates)


def _bootstraps(root: Path) -> list[dict[str, Any]]:
    """Every configuration the envoy layer validates: each environment's egress proxy whole, each
    workload file's own static part, the egress gateway's whole."""
    _, result = api.compile_repo(root, use_cache=False)
    assert result.envs, [str(d) for d in result.diagnostics][:5]
    out = []
    for name in sorted(result.envs):
        envoy = result.envs[name].envoy
        assert envoy is not None
        out.append(envoy.bootstrap())
        out += [orjson.loads(envoy.files[rel]) if rel == ENVOY_GATEWAY else {"static_resources": envoy.static_part(rel)}
                for rel in sorted(envoy.workload_sources)]  # as the layer does (check/envoy/layer.py)
    return out


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}-gateway{g}" for s, g in SEEDS])
def estate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Estate:
    seed, gateway = request.param
    root = tmp_path_factory.mktemp(f"estate-{seed}")
    generate.write_estate(generate.estate_files(SERVICES, ENVS, seed=seed, gateway_percent=gateway), root)
    return seed, _bootstraps(root)


def _items(bootstraps: list[dict[str, Any]]) -> list[Item]:
    return [(key, item) for b in bootstraps for key in ("clusters", "listeners")
            for item in (b.get("static_resources") or {}).get(key) or []]


def _one(key: str, item: Any) -> dict[str, Any]:
    return {"static_resources": {key: [item]}}


def _copy(value: Any) -> Any:
    return copy.deepcopy(value)


# --- mutations ---------------------------------------------------------------------------------

STRINGS = ["", "x", "a" * 256, "b" * 300 + ".example.com", "sni-" + "é" * 130, "ROUND_ROBIN", "RANDOM",
           "MAGLEV", "NOT_AN_ENUM", "round_robin", "V4_ONLY", "ALL", "STRICT_DNS", "0s", "-1s", "0.5s",
           "1.000000001s", "0.000000001s", "315576000001s", "10", "10ms", "abc", "-1", "0", "65535", "65536",
           "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e2", "1.5",
           " 12", "NaN", "Infinity", "-Infinity", "true", "127.0.0.1", "::1", "256.1.1.1", "foo.example.com",
           "*.example.com", "-bad-.example.com", ":authority", "x-header", "bad header\n", "\x00", "aGVsbG8=",
           "not base64!", "outbound|80||svc.example.com", "http/1.1", "h2", "istio", "\ud800"]
INTS = [0, -1, 1, 7, 80, 443, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, -(2**63) - 1,
        2**64]
FLOATS = [0.0, -1.0, 0.5, 1.5, 3.0, 100.0, 1e40, -1e40, 1e-9]
OTHER = [True, False, None, [], {}, [1], {"a": 1}]
TYPES = ["type.googleapis.com/nope.Nope", "nope", "",
         "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
         "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
         "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
         "type.googleapis.com/google.protobuf.Duration"]


def _places(value: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every value below `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from _places(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from _places(item)


def _leaf(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _new_value(rng: random.Random, old: Any, pool: list[Any]) -> Any:
    roll = rng.random()
    if roll < 0.3 and pool:
        return rng.choice(pool)  # a value another item has somewhere (often a valid one)
    if roll < 0.45 and isinstance(old, int) and not isinstance(old, bool):
        return old + rng.choice([-1, 1, 1000, -old])
    if roll < 0.55 and isinstance(old, str):
        return old + rng.choice(["", "x", ".", "-", "a" * 200])
    group = rng.choice([STRINGS, STRINGS, INTS, FLOATS, OTHER])
    return _copy(rng.choice(group)) if group is OTHER else rng.choice(group)


def mutate(rng: random.Random, item: Any, pool: list[Any]) -> Any:
    """A copy of `item` with one to three leaf values changed, or one change of structure."""
    item = _copy(item)
    places = list(_places(item))
    leaves = [(c, k) for c, k in places if _leaf(c[k]) and k != "@type"]
    if rng.random() < 0.75 and leaves:
        for container, key in rng.sample(leaves, min(len(leaves), rng.choice([1, 1, 1, 2, 3]))):
            container[key] = _new_value(rng, container[key], pool)
        return item
    dicts = [item] + [c[k] for c, k in places if isinstance(c[k], dict)]
    lists = [c[k] for c, k in places if isinstance(c[k], list)]
    types = [c for c, k in places if k == "@type"]
    kind = rng.choice(["unknown", "remove", "type", "replace", "list"])
    if kind == "unknown":
        rng.choice(dicts)[rng.choice(["bogus_field", "bogusField", "name", "@type", "[ext.x]"])] = rng.choice(
            [1, "x", {}, None])
    elif kind == "remove":
        target = rng.choice([d for d in dicts if d] or [item])
        if target:
            del target[rng.choice(list(target))]
    elif kind == "type" and types:
        rng.choice(types)["@type"] = rng.choice(TYPES)
    elif kind == "replace" and places:
        container, key = rng.choice(places)
        container[key] = rng.choice(["x", 1, [], {}, None, True])
    elif lists:
        target = rng.choice(lists)
        if target and rng.random() < 0.5:
            target.append(_copy(target[0]))
        else:
            target.clear()
    return item


# --- tests ---------------------------------------------------------------------------------------


def test_clean_estate_goes_mostly_the_fast_path(estate: Estate) -> None:
    """meshc's own output: no finding either way, and (by counting) the reference path is left
    for items of shapes the fast path does not model (none, in meshc's output): a shape's first
    item is checked node by node."""
    _, bootstraps = estate
    fast.forget()
    fast.COUNTS.reset()
    found = [validate_bootstrap(b) for b in bootstraps]
    counts = fast.COUNTS
    total = len(_items(bootstraps))
    assert counts.fast + counts.reference == total
    assert found == [[] for _ in bootstraps]
    assert counts.reference <= total // 100, counts
    assert counts.plans < total // 4 and counts.nodes < counts.plans, counts  # node shapes repeat even more
    assert found == [validate_bootstrap(b, fast=False) for b in bootstraps]
    fast.COUNTS.reset()
    assert [validate_bootstrap(b) for b in bootstraps] == found  # every shape known
    assert fast.COUNTS.plans == fast.COUNTS.nodes == 0 and fast.COUNTS.fast >= total - total // 100, fast.COUNTS


def test_mutated_items_have_the_reference_findings(estate: Estate) -> None:
    """Each mutated item alone: the fast path's findings are the reference path's, and both kinds
    of answer occur (leaf checks that accept a new value, findings re-run through the reference)."""
    seed, bootstraps = estate
    fast.forget()
    for b in bootstraps:
        validate_bootstrap(b)  # the plans of the clean shapes
    items = _items(bootstraps)
    pool = [v for _, item in items[::7] for c, k in _places(item) if _leaf(v := c[k]) and k != "@type"]
    rng = random.Random(seed)
    fast_clean = with_findings = 0
    codes: set[str] = set()
    for key, item in rng.sample(items, min(len(items), 700)):
        changed = mutate(rng, item, pool)
        before = fast.COUNTS.fast
        got = validate_bootstrap(_one(key, changed))
        want = validate_bootstrap(_one(key, changed), fast=False)
        assert got == want, (key, orjson.dumps(changed, option=orjson.OPT_NON_STR_KEYS)[:400])
        fast_clean += fast.COUNTS.fast > before
        with_findings += bool(want)
        codes.update(f.code for _, f in want)
    assert fast_clean >= 50 and with_findings >= 150, (fast_clean, with_findings)
    assert codes == {"E001", "E002"}


def test_mutated_bootstraps_have_the_reference_findings(estate: Estate) -> None:
    """Whole bootstraps with many mutated items, with and without a memo: the same located
    findings in the same order."""
    seed, bootstraps = estate
    fast.forget()
    rng = random.Random(1000 + seed)
    pool = [v for _, item in _items(bootstraps)[::11] for c, k in _places(item) if _leaf(v := c[k])
            and k != "@type"]
    for bootstrap in bootstraps[:4]:
        changed = _copy(bootstrap)
        for key in ("clusters", "listeners"):
            items = changed["static_resources"].get(key) or []
            for index in rng.sample(range(len(items)), (len(items) + 4) // 5):
                items[index] = mutate(rng, items[index], pool)
        want = validate_bootstrap(changed, fast=False)
        assert want
        assert validate_bootstrap(changed) == want
        memo: dict[tuple[str, ...], Any] = {}
        assert validate_bootstrap(changed, memo) == want
        assert validate_bootstrap(changed, memo) == want  # from the memo


CLUSTER = {"name": "outbound|443||api.example.com", "type": "STRICT_DNS", "connect_timeout": "10s",
           "lb_policy": "ROUND_ROBIN", "dns_lookup_family": "V4_ONLY", "per_connection_buffer_limit_bytes": 32768,
           "load_assignment": {"cluster_name": "outbound|443||api.example.com", "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {"address": "api.example.com", "port_value": 443}}},
                "load_balancing_weight": 1}]}]},
           "circuit_breakers": {"thresholds": [{"max_connections": 100, "max_retries": "4294967295"}]},
           "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
               "sni": "api.example.com", "common_tls_context": {"alpn_protocols": ["h2", "http/1.1"]}}},
           "metadata": {"filter_metadata": {"istio": {"config": "/apis/x", "port": 443, "services": [
               {"host": "api.example.com"}]}}},
           "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
           "common_lb_config": {"healthy_panic_threshold": {"value": 50.0}}}


def _set(item: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    item = _copy(item)
    target: Any = item
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return item


TLS = ("transport_socket", "typed_config")
ADDRESS = ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
CASES = [  # (path in the cluster, value, finding code or None)
    (("name",), "other.example.com", None), (("name",), "", "E002"),
    (("connect_timeout",), "0.5s", None), (("connect_timeout",), "0s", "E002"),
    (("connect_timeout",), "-1s", "E002"), (("connect_timeout",), "10", "E001"),
    (("connect_timeout",), 10, "E001"), (("connect_timeout",), "315576000001s", "E001"),
    (("lb_policy",), "LEAST_REQUEST", None), (("lb_policy",), "BOGUS", "E001"), (("lb_policy",), 1, None),
    (("lb_policy",), 4, "E002"), (("lb_policy",), "4", "E002"),
    (("per_connection_buffer_limit_bytes",), "12", None), (("per_connection_buffer_limit_bytes",), -1, "E001"),
    (("per_connection_buffer_limit_bytes",), 1.5, "E001"), (("per_connection_buffer_limit_bytes",), 2.0, None),
    ((*ADDRESS, "port_value"), 8443, None), ((*ADDRESS, "port_value"), 65536, "E002"),
    ((*ADDRESS, "port_value"), "443", None), ((*ADDRESS, "port_value"), "x", "E001"),
    ((*ADDRESS, "address"), "", "E002"), ((*ADDRESS, "address"), "10.0.0.1", None),
    (("circuit_breakers", "thresholds", 0, "max_retries"), "18446744073709551616", "E001"),
    (("circuit_breakers", "thresholds", 0, "max_retries"), "7", None),
    (("common_lb_config", "healthy_panic_threshold", "value"), 101.0, "E002"),
    (("common_lb_config", "healthy_panic_threshold", "value"), 12.5, None),
    ((*TLS, "sni"), "s" * 255, None), ((*TLS, "sni"), "s" * 256, "E002"), ((*TLS, "sni"), "é" * 128, "E002"),
    ((*TLS, "sni"), 7, "E001"), ((*TLS, "common_tls_context", "alpn_protocols", 1), "istio", None),
    ((*TLS, "common_tls_context", "alpn_protocols", 1), 5, "E001"),
    ((*TLS, "@type"), "type.googleapis.com/nope.Nope", "E001"),
    ((*TLS, "bogus"), 1, "E001"), (("metadata", "filter_metadata", "istio", "port"), "any value", None),
    (("upstream_connection_options", "tcp_keepalive", "keepalive_time"), 0, None),
    (("upstream_connection_options", "tcp_keepalive", "keepalive_time"), {"value": 1}, "E001"),
    (("dns_lookup_family",), "V6_ONLY", None), (("dns_lookup_family",), "v4_only", "E001"),
]


@pytest.mark.parametrize(("path", "value", "code"), CASES, ids=[f"{'.'.join(map(str, p[-2:]))}={v!r}"[:60]
                                                                 for p, v, _ in CASES])
def test_a_changed_leaf(path: tuple[Any, ...], value: Any, code: str | None) -> None:
    """One leaf of a known shape changed: a valid value is answered by the leaf check alone, an
    invalid one has exactly the reference's finding."""
    fast.forget()
    assert validate_bootstrap(_one("clusters", CLUSTER)) == []  # the shape's plan
    changed = _set(CLUSTER, path, value)
    want = validate_bootstrap(_one("clusters", changed), fast=False)
    fast.COUNTS.reset()
    got = validate_bootstrap(_one("clusters", changed))
    assert got == want
    assert [f.code for _, f in want][:1] == ([code] if code else [])
    if code is None and type(value) is type(_get(CLUSTER, path)):  # the same shape
        assert fast.COUNTS.fast == 1, fast.COUNTS


def _get(item: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        if isinstance(item, dict) and part not in item:
            return None
        item = item[part]
    return item


def test_a_new_shape_of_known_nodes_needs_no_reference_path() -> None:
    """A cluster with one endpoint more is a new shape made of known node shapes: answered by its
    leaf checks; one whose node breaks a rule of its own takes the reference path, and so does a
    shape of a node that did not hold before."""
    fast.forget()
    assert validate_bootstrap(_one("clusters", CLUSTER)) == []
    endpoints = CLUSTER["load_assignment"]["endpoints"][0]["lb_endpoints"]
    grown = _set(CLUSTER, ("load_assignment", "endpoints", 0, "lb_endpoints"), endpoints + [_copy(endpoints[0])])
    fast.COUNTS.reset()
    assert validate_bootstrap(_one("clusters", grown)) == []
    assert (fast.COUNTS.fast, fast.COUNTS.reference, fast.COUNTS.plans, fast.COUNTS.nodes) == (1, 0, 1, 1)
    emptied = _set(CLUSTER, ADDRESS, {"port_value": 443})  # no address: its rule (min_len 1) broken
    fast.COUNTS.reset()
    want = validate_bootstrap(_one("clusters", emptied), fast=False)
    assert validate_bootstrap(_one("clusters", emptied)) == want
    assert fast.COUNTS.reference == 1 and fast.COUNTS.fast == 0
    fast.forget()
    bad = _set(CLUSTER, ("connect_timeout",), "0s")  # the first of its shape breaks a rule
    want = validate_bootstrap(_one("clusters", bad), fast=False)
    assert want and validate_bootstrap(_one("clusters", bad)) == want
    fast.COUNTS.reset()
    assert validate_bootstrap(_one("clusters", CLUSTER)) == []
    assert (fast.COUNTS.fast, fast.COUNTS.reference) == (1, 0), fast.COUNTS


# Items richer than meshc writes (health checks, protocol options, TLS certificates, Struct
# metadata, HTTP routes, RBAC): more kinds of rules (header names, bytes, int64 strings, enums with
# defined_only, ranges, durations, required messages and oneofs, map keys).
_T = "type.googleapis.com/"
_TLS = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ZOO_CLUSTER = {
    "name": "zoo", "type": "STRICT_DNS", "connect_timeout": "1s", "lb_policy": "RING_HASH",
    "ring_hash_lb_config": {"minimum_ring_size": "1024", "maximum_ring_size": 8388608, "hash_function": "XX_HASH"},
    "health_checks": [{
        "timeout": "1s", "interval": "5s", "unhealthy_threshold": 3, "healthy_threshold": 2,
        "http_health_check": {
            "host": "h.example.com", "path": "/healthz", "expected_statuses": [{"start": "200", "end": "300"}],
            "request_headers_to_add": [{"header": {"key": "x-check", "value": "1"},
                                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "request_headers_to_remove": ["x-drop"], "codec_client_type": "HTTP2"}}],
    "typed_extension_protocol_options": {_HTTP_OPTIONS: {
        "@type": _T + _HTTP_OPTIONS,
        "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 100}},
        "common_http_protocol_options": {"idle_timeout": "60s", "max_headers_count": 100}}},
    "outlier_detection": {"consecutive_5xx": 5, "interval": "10s", "base_ejection_time": "30s",
                          "max_ejection_percent": 50, "success_rate_stdev_factor": 1900},
    "upstream_bind_config": {"source_address": {"address": "10.0.0.1", "port_value": 0}},
    "metadata": {"filter_metadata": {"x": {"a": [1, "b", {"c": 1.5}], "d": None, "e": True}}},
    "dns_failure_refresh_rate": {"base_interval": "1s", "max_interval": "10s"},
    "lb_subset_config": {"fallback_policy": "ANY_ENDPOINT", "subset_selectors": [{"keys": ["version", "zone"]}]},
    "transport_socket": {"name": "tls", "typed_config": {
        "@type": _T + _TLS, "sni": "x.example.com",
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "cipher_suites": ["ECDHE-RSA-AES128-GCM-SHA256"]},
            "validation_context": {
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "x.example.com"}}],
                "trusted_ca": {"filename": "/etc/ca.pem"}},
            "tls_certificates": [{"certificate_chain": {"inline_bytes": "aGVsbG8="},
                                  "private_key": {"inline_string": "k"}}]}}},
    "load_assignment": {
        "cluster_name": "zoo",
        "endpoints": [{"locality": {"region": "r", "zone": "z"}, "priority": 0, "lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "1.2.3.4", "port_value": 80, "protocol": "TCP"}},
                         "hostname": "h"},
            "health_status": "HEALTHY", "load_balancing_weight": 3}]}],
        "policy": {"overprovisioning_factor": 140}}}
ZOO_LISTENER = {
    "name": "zoo-l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
    "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
        "@type": _T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
    "filter_chains": [{
        "filter_chain_match": {"server_names": ["a.example.com"], "destination_port": 8080,
                               "prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}]},
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": _T + _HCM, "stat_prefix": "s", "codec_type": "AUTO",
            "route_config": {"name": "r", "virtual_hosts": [{
                "name": "vh", "domains": ["a.example.com", "*"],
                "routes": [{
                    "match": {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                    "route": {"cluster": "zoo", "timeout": "15s",
                              "retry_policy": {"retry_on": "5xx", "num_retries": 2, "per_try_timeout": "1s"},
                              "hash_policy": [{"header": {"header_name": "x-user"}}]},
                    "request_headers_to_add": [{"header": {"key": "x-a", "value": "b"}}]}]}]},
            "http_filters": [
                {"name": "envoy.filters.http.rbac", "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {"action": "ALLOW", "policies": {"p": {
                        "permissions": [{"any": True}],
                        "principals": [{"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}]}}}}},
                {"name": "envoy.filters.http.router", "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.router.v3.Router"}}],
            "common_http_protocol_options": {"idle_timeout": "3600s"}, "stream_idle_timeout": "0s",
            "server_name": "istio-envoy", "use_remote_address": True, "xff_num_trusted_hops": 1}}]}],
    "traffic_direction": "OUTBOUND", "per_connection_buffer_limit_bytes": 1024}


@pytest.mark.parametrize(("key", "item"), [("clusters", ZOO_CLUSTER), ("listeners", ZOO_LISTENER)],
                         ids=["cluster", "listener"])
@pytest.mark.parametrize("learned", [True, False], ids=["learned", "cold"])
def test_rich_items_mutated(key: str, item: dict[str, Any], learned: bool) -> None:
    """Each of 400 mutations of a rich item (its shape learned first, or learned from mutated
    items only) has exactly the reference's findings."""
    assert validate_bootstrap(_one(key, item), fast=False) == []
    fast.forget()
    if learned:
        assert validate_bootstrap(_one(key, item)) == []
    rng = random.Random(7 if learned else 8)
    pool = [v for c, k in _places(item) if _leaf(v := c[k]) and k != "@type"]
    answered = 0
    for _ in range(400):
        changed = mutate(rng, item, pool)
        before = fast.COUNTS.fast
        assert validate_bootstrap(_one(key, changed)) == validate_bootstrap(_one(key, changed), fast=False), changed
        answered += fast.COUNTS.fast > before
    assert answered >= 20, answered


def test_data_that_is_not_plain_json_goes_the_reference_path() -> None:
    """Tuples, non-string keys, NaN: no shape, so the reference path answers."""
    assert fast.shape({"a": (1, 2)}) is None
    assert fast.shape({1: "x"}) is None
    assert fast.shape({"a": math.nan}) is None
    assert (fast.shape({"a": {"@type": "t/x.Y"}}) or ((), []))[0][3:5] == ("@type", "t/x.Y")  # structural
    assert fast.shape({"a": [1, "x", 1.5, True, None, {"b": []}]}) is not None
    for value in ((80, 81), math.nan, math.inf):
        item = _set(CLUSTER, ("per_connection_buffer_limit_bytes",), value)
        assert validate_bootstrap(_one("clusters", item)) == validate_bootstrap(_one("clusters", item), fast=False)


def test_shapes_differ_in_structure_not_in_leaf_values() -> None:
    a, leaves_a = fast.shape(CLUSTER) or ((), [])
    b, leaves_b = fast.shape(_set(CLUSTER, ("name",), "other")) or ((), [])
    assert a == b and leaves_a != leaves_b
    for path, value in [(("lb_policy",), 1), (("type",), True), (("bogus",), 1),
                        ((*TLS, "@type"), "type.googleapis.com/nope.Nope"),
                        (("load_assignment", "endpoints", 0, "lb_endpoints"), [])]:
        assert (fast.shape(_set(CLUSTER, path, value)) or ((), []))[0] != a, path


def test_the_reference_path_alone_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """MESHC_ENVOY_REFERENCE=1 (or fast=False) leaves the fast path out; the findings are the same."""
    bad = _set(CLUSTER, ("connect_timeout",), "-1s")
    want = validate_bootstrap(_one("clusters", bad), fast=False)
    fast.forget()
    fast.COUNTS.reset()
    monkeypatch.setenv("MESHC_ENVOY_REFERENCE", "1")
    assert validate_bootstrap(_one("clusters", CLUSTER)) == []
    assert validate_bootstrap(_one("clusters", bad)) == want
    assert fast.COUNTS == fast.Counts()
    monkeypatch.setenv("MESHC_ENVOY_REFERENCE", "0")
    assert validate_bootstrap(_one("clusters", CLUSTER)) == []
    assert validate_bootstrap(_one("clusters", bad)) == want
    assert (fast.COUNTS.fast, fast.COUNTS.reference) == (1, 1)


@pytest.mark.parametrize(("path", "value"), [
    (("per_connection_buffer_limit_bytes",), -1),  # a wrapper out of range, found while narrowing the error down
    (("metadata", "typed_filter_metadata"), {"k": {"@type": _T + "google.protobuf.Duration"}}),  # no "value"
    (("lb_policy",), "\ud800"),  # not UTF-8: upb raises SystemError over the UnicodeEncodeError
    (("circuit_breakers", "thresholds", 0, "max_connections"), 2**64),  # no memo key (orjson: 64 bits)
], ids=["wrapper-range", "any-without-value", "surrogate", "int-beyond-64-bits"])
def test_the_reference_path_reports_what_it_used_to_crash_on(path: tuple[Any, ...], value: Any) -> None:
    """An E001 finding, not an exception, with or without a memo, and the same from the fast path."""
    item = _one("clusters", _set(CLUSTER, path, value))
    want = validate_bootstrap(item, fast=False)
    assert [f.code for _, f in want] == ["E001"], want
    assert validate_bootstrap(item) == want
    assert validate_bootstrap(item, {}) == want
