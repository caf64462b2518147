"""DestinationRule traffic policy -> Envoy cluster fields (reference 3.2-3.5, 5.8-5.10).

Input: a `DestRule` (or none), a port number and an optional subset. Output: the effective
`Policy` for that cluster (port-level entries replace the four sub-policies wholesale, subsets
override them), and the Envoy cluster fragments it implies: load-balancer policy and configs,
circuit breakers, connect timeout, TCP keepalive, outlier detection, panic threshold,
HttpProtocolOptions pieces, route/tcp_proxy hash policies.

Invariants: pure; values that cannot be converted are passed through unchanged so that the
strict Envoy parse reports them. Zero means "unset" for the connection-pool limits (as in Istio).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from meshc.proxy.envoy.istio import DestRule
from meshc.proxy.envoy.values import MAX_UINT32, envoy_duration, whole_seconds

Json = dict[str, Any]
FOUR = ("load_balancer", "connection_pool", "outlier", "tls")
_KEYS = {"load_balancer": "loadBalancer", "connection_pool": "connectionPool",
         "outlier": "outlierDetection", "tls": "tls"}


@dataclass(frozen=True)
class Policy:
    load_balancer: Mapping[str, Any] | None = None
    connection_pool: Mapping[str, Any] | None = None
    outlier: Mapping[str, Any] | None = None
    tls: Mapping[str, Any] | None = None
    proxy_protocol: Mapping[str, Any] | None = None
    retry_budget: Mapping[str, Any] | None = None
    tunnel: Mapping[str, Any] | None = None


def _port_entry(policy: Mapping[str, Any], port: int) -> Mapping[str, Any] | None:
    for entry in policy.get("portLevelSettings") or []:
        if isinstance(entry, Mapping) and int((entry.get("port") or {}).get("number") or 0) == port:
            return entry
    return None


def _from_traffic_policy(policy: Mapping[str, Any], port: int) -> Policy:
    entry = _port_entry(policy, port)
    if entry is not None:  # replaces the four; proxyProtocol/retryBudget are dropped
        return Policy(**{f: entry.get(_KEYS[f]) for f in FOUR}, tunnel=policy.get("tunnel"))
    return Policy(**{f: policy.get(_KEYS[f]) for f in FOUR},
                  proxy_protocol=policy.get("proxyProtocol"),
                  retry_budget=policy.get("retryBudget"), tunnel=policy.get("tunnel"))


def _with_subset(base: Policy, policy: Mapping[str, Any], port: int) -> Policy:
    entry = _port_entry(policy, port)
    if entry is not None:
        four = {f: entry.get(_KEYS[f]) for f in FOUR}
    else:
        four = {f: policy.get(_KEYS[f]) or getattr(base, f) for f in FOUR}
    return replace(
        base, **four,
        proxy_protocol=policy.get("proxyProtocol") or base.proxy_protocol,
        retry_budget=policy.get("retryBudget") or base.retry_budget,
        tunnel=policy.get("tunnel") or base.tunnel,
    )


def effective_policy(rule: DestRule | None, port: int,
                     subset: Mapping[str, Any] | None = None) -> Policy:
    """The policy istiod applies to cluster (port, subset) of the rule's host."""
    policy = _from_traffic_policy(rule.traffic_policy if rule else {}, port)
    subset_policy = (subset or {}).get("trafficPolicy")
    return _with_subset(policy, subset_policy, port) if subset_policy else policy


def is_passthrough(policy: Policy) -> bool:
    return (policy.load_balancer or {}).get("simple") == "PASSTHROUGH"


def _slow_start(lb: Mapping[str, Any]) -> Json | None:
    warmup = lb.get("warmup")
    if isinstance(warmup, Mapping):
        aggression = warmup.get("aggression")
        return {
            "slow_start_window": envoy_duration(warmup.get("duration")),
            "aggression": {"default_value": 1.0 if aggression is None else aggression,
                           "runtime_key": "("},
            "min_weight_percent": {"value": warmup.get("minimumPercent", 10)},
        }
    if lb.get("warmupDurationSecs") is not None:
        return {"slow_start_window": envoy_duration(lb["warmupDurationSecs"])}
    return None


def _consistent_hash(hashing: Mapping[str, Any]) -> Json:
    if isinstance(hashing.get("maglev"), Mapping):
        size = hashing["maglev"].get("tableSize")
        return {"lb_policy": "MAGLEV", **({"maglev_lb_config": {"table_size": size}} if size else {})}
    if isinstance(hashing.get("ringHash"), Mapping):
        size = hashing["ringHash"].get("minimumRingSize")
        extra = {"ring_hash_lb_config": {"minimum_ring_size": size}} if size else {}
        return {"lb_policy": "RING_HASH", **extra}
    size = hashing.get("minimumRingSize") or 1024
    return {"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": size}}


def lb_fields(policy: Policy) -> Json:
    """lb_policy plus its config block; unset/UNSPECIFIED -> LEAST_REQUEST."""
    lb = policy.load_balancer or {}
    if isinstance(lb.get("consistentHash"), Mapping):
        return _consistent_hash(lb["consistentHash"])
    simple = str(lb.get("simple") or "UNSPECIFIED")
    name = {"ROUND_ROBIN": "ROUND_ROBIN", "RANDOM": "RANDOM"}.get(simple, "LEAST_REQUEST")
    out: Json = {"lb_policy": name}
    slow = _slow_start(lb)
    if slow and name in ("ROUND_ROBIN", "LEAST_REQUEST"):
        key = "round_robin_lb_config" if name == "ROUND_ROBIN" else "least_request_lb_config"
        out[key] = {"slow_start_config": slow}
    return out


def route_hash_policy(policy: Policy) -> list[Json]:
    """consistentHash key -> RouteAction.hash_policy (HTTP routes)."""
    hashing = (policy.load_balancer or {}).get("consistentHash") or {}
    if hashing.get("httpHeaderName"):
        return [{"header": {"header_name": hashing["httpHeaderName"]}}]
    cookie = hashing.get("httpCookie")
    if isinstance(cookie, Mapping):
        body: Json = {"name": cookie.get("name")}
        if cookie.get("ttl") is not None:
            body["ttl"] = envoy_duration(cookie["ttl"])
        if cookie.get("path"):
            body["path"] = cookie["path"]
        if cookie.get("attributes"):
            body["attributes"] = [dict(a) for a in cookie["attributes"]]
        return [{"cookie": body}]
    if hashing.get("useSourceIp"):
        return [{"connection_properties": {"source_ip": True}}]
    if hashing.get("httpQueryParameterName"):
        return [{"query_parameter": {"name": hashing["httpQueryParameterName"]}}]
    return []


def tcp_hash_policy(policy: Policy) -> list[Json]:
    hashing = (policy.load_balancer or {}).get("consistentHash") or {}
    return [{"source_ip": {}}] if hashing.get("useSourceIp") else []


def circuit_breakers(policy: Policy) -> Json:
    pool = policy.connection_pool or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    threshold: Json = {
        "max_connections": tcp.get("maxConnections") or MAX_UINT32,
        "max_pending_requests": http.get("http1MaxPendingRequests") or MAX_UINT32,
        "max_requests": http.get("http2MaxRequests") or MAX_UINT32,
        "max_retries": http.get("maxRetries") or MAX_UINT32,
        "track_remaining": True,
    }
    budget = policy.retry_budget
    if isinstance(budget, Mapping):
        threshold["retry_budget"] = {
            "budget_percent": {"value": budget.get("percent", 20)},
            "min_retry_concurrency": budget.get("minRetryConcurrency", 3),
        }
        if budget.get("budgetInterval"):
            threshold["retry_budget"]["budget_interval"] = envoy_duration(budget["budgetInterval"])
    return {"thresholds": [threshold]}


def connect_timeout(policy: Policy, default: str) -> Any:
    tcp = (policy.connection_pool or {}).get("tcp") or {}
    return envoy_duration(tcp.get("connectTimeout") or default)


def tcp_keepalive(policy: Policy) -> Json | None:
    keepalive = ((policy.connection_pool or {}).get("tcp") or {}).get("tcpKeepalive")
    if not isinstance(keepalive, Mapping):
        return None
    out: Json = {}
    if keepalive.get("probes"):
        out["keepalive_probes"] = keepalive["probes"]
    if keepalive.get("time"):
        out["keepalive_time"] = whole_seconds(keepalive["time"])
    if keepalive.get("interval"):
        out["keepalive_interval"] = whole_seconds(keepalive["interval"])
    return {"tcp_keepalive": out}


def listener_tcp_settings(policy: Policy) -> Json:
    """tcp.idleTimeout / maxConnectionDuration as written on the tcp_proxy filter."""
    tcp = (policy.connection_pool or {}).get("tcp") or {}
    out: Json = {}
    if tcp.get("idleTimeout"):
        out["idle_timeout"] = envoy_duration(tcp["idleTimeout"])
    if tcp.get("maxConnectionDuration"):
        out["max_downstream_connection_duration"] = envoy_duration(tcp["maxConnectionDuration"])
    return out


def _enforced(out: Json, key: str, enforcing: str, value: Any) -> None:
    if value is not None:
        out[key] = value
        out[enforcing] = 100 if value else 0


def outlier_detection(policy: Policy) -> Json | None:
    od = policy.outlier
    if not isinstance(od, Mapping):
        return None
    out: Json = {"enforcing_success_rate": 0}
    _enforced(out, "consecutive_5xx", "enforcing_consecutive_5xx", od.get("consecutive5xxErrors"))
    _enforced(out, "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure",
              od.get("consecutiveGatewayErrors"))
    if od.get("interval"):
        out["interval"] = envoy_duration(od["interval"])
    if od.get("baseEjectionTime"):
        out["base_ejection_time"] = envoy_duration(od["baseEjectionTime"])
    if od.get("maxEjectionPercent"):
        out["max_ejection_percent"] = od["maxEjectionPercent"]
    if od.get("splitExternalLocalOriginErrors"):
        out["split_external_local_origin_errors"] = True
        out["enforcing_local_origin_success_rate"] = 0
        if od.get("consecutiveLocalOriginFailures"):
            out["consecutive_local_origin_failure"] = od["consecutiveLocalOriginFailures"]
            out["enforcing_consecutive_local_origin_failure"] = 100
    return out


def common_lb_config(policy: Policy) -> Json:
    """Always present; the panic threshold is written whenever outlierDetection exists."""
    if isinstance(policy.outlier, Mapping):
        return {"healthy_panic_threshold": {"value": float(policy.outlier.get("minHealthPercent") or 0)}}
    return {}


def _error_matcher(codes: list[Any]) -> Json:
    rules = [
        {"http_response_headers_match": {"headers": [
            {"name": ":status", "string_match": {"exact": str(code)}}]}}
        for code in codes
    ]
    return rules[0] if len(rules) == 1 else {"or_match": {"rules": rules}}


def http_protocol_pieces(policy: Policy, h2: bool, downstream: bool) -> Json:
    """HttpProtocolOptions fields from the connection pool, protocol and outlier policy."""
    pool = policy.connection_pool or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    common: Json = {}
    idle = http.get("idleTimeout") or tcp.get("idleTimeout")
    if idle:
        common["idle_timeout"] = envoy_duration(idle)
    if http.get("maxRequestsPerConnection"):
        common["max_requests_per_connection"] = http["maxRequestsPerConnection"]
    if tcp.get("maxConnectionDuration"):
        common["max_connection_duration"] = envoy_duration(tcp["maxConnectionDuration"])
    out: Json = {"common_http_protocol_options": common} if common else {}
    h2_options = _h2_options(http) if h2 else {}
    if downstream:
        out["use_downstream_protocol_config"] = {"http_protocol_options": {},
                                                 "http2_protocol_options": h2_options}
    elif h2:
        out["explicit_http_config"] = {"http2_protocol_options": h2_options}
    codes = (policy.outlier or {}).get("outlierDetectionHttpErrorCodes")
    if codes:
        out["outlier_detection"] = {"error_matcher": _error_matcher(list(codes))}
    return out


def _h2_options(http: Mapping[str, Any]) -> Json:
    out: Json = {}
    if http.get("maxConcurrentStreams"):
        out["max_concurrent_streams"] = http["maxConcurrentStreams"]
    keepalive = http.get("http2KeepAlive")
    if isinstance(keepalive, Mapping):
        out["connection_keepalive"] = {"interval": envoy_duration(keepalive.get("interval")),
                                       "timeout": envoy_duration(keepalive.get("timeout"))}
    return out


def wants_h2(policy: Policy, protocol: str) -> bool:
    """HTTP2/GRPC/GRPC-Web ports, or an HTTP port with h2UpgradePolicy UPGRADE."""
    if protocol in ("HTTP2", "GRPC", "GRPC-WEB"):
        return True
    http = (policy.connection_pool or {}).get("http") or {}
    upgrade = http.get("h2UpgradePolicy") == "UPGRADE" and not http.get("useClientProtocol")
    return upgrade and protocol in ("HTTP", "HTTP_PROXY")


def wants_downstream_protocol(policy: Policy, protocol: str) -> bool:
    """Auto-detect ports and http.useClientProtocol mirror the downstream protocol."""
    http = (policy.connection_pool or {}).get("http") or {}
    return protocol == "" or bool(http.get("useClientProtocol"))
