"""DestinationRule `trafficPolicy` rules (`validateTrafficPolicy` and helpers, istio-facts.md 4.4).

Input: a TrafficPolicy mapping (top level or a subset's), the DR namespace, and its data path.
Output: findings for the policy, its outlier detection, connection pool, load balancer, client TLS,
port-level settings, tunnel and PROXY protocol.
Invariants: an empty policy (I302) and tunnel+proxyProtocol (I303) return at once as in Go; the
load balancer of a level is checked against the outlier detection of the same level.
Codes emitted: I302-I310, I330-I339, plus I050 durations, I040 tunnel port, I306 and I311-I329, I344
from `loadbalancer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error, webhook_warning
from meshc.check.istio.fields import as_int, as_list, as_map, as_str, enum_index, has_items, is_map, is_set, is_true
from meshc.check.istio.loadbalancer import check_enum, check_load_balancer, check_percent
from meshc.check.istio.primitives import (
    AGENT,
    MILLISECOND,
    VALIDATION,
    check_duration,
    check_port,
    fqdn_error,
    is_ip,
    parse_duration,
)
from meshc.model.diagnostics import DataPath, Finding

_TP = f"{VALIDATION} validateTrafficPolicy"
_TLS = f"{AGENT} ValidateTLS"
TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
SIMPLE, MUTUAL = 1, 2
H2_POLICIES = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")
POLICY_FIELDS = ("outlierDetection", "connectionPool", "loadBalancer", "tls", "portLevelSettings", "tunnel",
                 "proxyProtocol", "retryBudget")
PORT_POLICY_FIELDS = ("outlierDetection", "connectionPool", "loadBalancer", "tls")
_HTTP_COUNTERS = ("http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries",
                  "maxConcurrentStreams")
_CERT_FILES = ("clientCertificate", "caCertificates", "privateKey", "caCrl")
CONFIGMAP_PREFIX = "configmap://"

POLICY_EMPTY = webhook_error("I302", "trafficPolicy without any field", _TP,
                             "remove the empty trafficPolicy or set at least one policy")
TUNNEL_AND_PROXY_PROTOCOL = webhook_error("I303", "tunnel and proxyProtocol together", _TP,
                                          "use either tunnel or proxyProtocol")
CONSECUTIVE_ERRORS = webhook_warning("I304", "outlierDetection.consecutiveErrors is deprecated and ignored",
                                     f"{VALIDATION} validateOutlierDetection",
                                     "use consecutive5xxErrors or consecutiveGatewayErrors")
LOCAL_ORIGIN_WITHOUT_SPLIT = webhook_error(
    "I305", "consecutiveLocalOriginFailures without splitExternalLocalOriginErrors",
    f"{VALIDATION} validateOutlierDetection", "set splitExternalLocalOriginErrors: true or drop the field")
POOL_EMPTY = webhook_error("I307", "connectionPool without tcp or http", f"{VALIDATION} validateConnectionPool",
                           "set connectionPool.tcp and/or connectionPool.http, or remove it")
POOL_NEGATIVE = webhook_error("I308", "negative connection pool limit", f"{VALIDATION} validateConnectionPool",
                              "use 0 (unset) or a positive limit")
UPGRADE_WITH_CLIENT_PROTOCOL = webhook_error(
    "I309", "h2UpgradePolicy UPGRADE with useClientProtocol", f"{VALIDATION} validateConnectionPool",
    "drop useClientProtocol or h2UpgradePolicy: UPGRADE")
H2_KEEPALIVE = webhook_error("I310", "http2KeepAlive without interval or timeout",
                             f"{VALIDATION} validateConnectionPool", "set both http2KeepAlive.interval and timeout")
CONFIGMAP_CREDENTIAL = webhook_error("I330", "configmap:// credentialName unparseable or in another namespace",
                                     _TLS, "use configmap://<name> for a ConfigMap in the DestinationRule's namespace")
SKIP_VERIFY_SIMPLE = webhook_error(
    "I331", "insecureSkipVerify with SIMPLE and caCertificates/credentialName/subjectAltNames", _TLS,
    "drop insecureSkipVerify, or drop the verification fields")
SKIP_VERIFY_MUTUAL = webhook_error("I332", "insecureSkipVerify with MUTUAL and caCertificates/subjectAltNames",
                                   _TLS, "drop insecureSkipVerify, or drop caCertificates and subjectAltNames")
CREDENTIAL_WITH_FILES = webhook_error(
    "I333", "credentialName together with certificate/key/CA/CRL file fields", _TLS,
    "use either credentialName or the file paths")
MUTUAL_MISSING_FILES = webhook_error("I334", "MUTUAL without credentialName lacks clientCertificate or privateKey",
                                     _TLS, "set clientCertificate and privateKey, or credentialName")
PORT_POLICY_INVALID = webhook_error("I335", "portLevelSettings entry null or without port",
                                    f"{VALIDATION} validatePortTrafficPolicies", "give every entry port: {number: N}")
PORT_POLICY_EMPTY = webhook_error(
    "I336", "portLevelSettings entry without loadBalancer/connectionPool/outlierDetection/tls",
    f"{VALIDATION} validatePortTrafficPolicies", "set a policy for the port or remove the entry")
TUNNEL_PROTOCOL = webhook_error("I337", "tunnel.protocol not CONNECT or POST", f"{VALIDATION} validateTunnelSettings",
                                "use CONNECT (default) or POST")
TUNNEL_HOST = webhook_error("I338", "tunnel.targetHost is neither FQDN nor IP", f"{VALIDATION} validateTunnelSettings",
                            "set targetHost to the proxy's hostname or IP")
PROXY_PROTOCOL_VERSION = webhook_error("I339", "proxyProtocol.version not V1 or V2",
                                       f"{VALIDATION} validateProxyProtocol", "use V1 or V2")

RULES: tuple[Rule, ...] = (
    POLICY_EMPTY, TUNNEL_AND_PROXY_PROTOCOL, CONSECUTIVE_ERRORS, LOCAL_ORIGIN_WITHOUT_SPLIT, POOL_EMPTY,
    POOL_NEGATIVE, UPGRADE_WITH_CLIENT_PROTOCOL, H2_KEEPALIVE, CONFIGMAP_CREDENTIAL, SKIP_VERIFY_SIMPLE,
    SKIP_VERIFY_MUTUAL, CREDENTIAL_WITH_FILES, MUTUAL_MISSING_FILES, PORT_POLICY_INVALID, PORT_POLICY_EMPTY,
    TUNNEL_PROTOCOL, TUNNEL_HOST, PROXY_PROTOCOL_VERSION,
)


def check_traffic_policy(policy: Mapping[str, Any], namespace: str, path: DataPath) -> list[Finding]:
    if not any(has_items(policy.get(f)) if f == "portLevelSettings" else is_set(policy, f) for f in POLICY_FIELDS):
        return [POLICY_EMPTY.at(path, "traffic policy must have at least one field")]
    if is_set(policy, "tunnel") and is_set(policy, "proxyProtocol"):
        return [TUNNEL_AND_PROXY_PROTOCOL.at(path, "tunnel and proxyProtocol must not be set together")]
    out = _sub_policies(policy, namespace, path)
    for i, entry in enumerate(as_list(policy.get("portLevelSettings"))):
        out += _port_policy(entry, namespace, (*path, "portLevelSettings", i))
    if is_set(policy, "tunnel"):
        out += _tunnel(as_map(policy["tunnel"]), (*path, "tunnel"))
    if is_set(policy, "proxyProtocol"):
        version = as_map(policy["proxyProtocol"]).get("version")
        if enum_index(version, ("V1", "V2")) not in (0, 1):
            out.append(PROXY_PROTOCOL_VERSION.at((*path, "proxyProtocol", "version"),
                                                 f"proxy protocol version is invalid: {version!r}"))
    return out


def _sub_policies(policy: Mapping[str, Any], namespace: str, path: DataPath) -> list[Finding]:
    """The four policies a port-level entry can also carry."""
    out: list[Finding] = []
    if is_set(policy, "outlierDetection"):
        out += _outlier(as_map(policy["outlierDetection"]), (*path, "outlierDetection"))
    if is_set(policy, "connectionPool"):
        out += _connection_pool(as_map(policy["connectionPool"]), (*path, "connectionPool"))
    if is_set(policy, "loadBalancer"):
        out += check_load_balancer(as_map(policy["loadBalancer"]), is_set(policy, "outlierDetection"),
                                   (*path, "loadBalancer"))
    if is_set(policy, "tls"):
        out += check_tls(as_map(policy["tls"]), namespace, (*path, "tls"))
    return out


def _port_policy(entry: Any, namespace: str, path: DataPath) -> list[Finding]:
    if not is_map(entry):
        return [PORT_POLICY_INVALID.at(path, "traffic policy may not be null")]
    out: list[Finding] = []
    if not is_set(entry, "port"):
        out.append(PORT_POLICY_INVALID.at(path, "portTrafficPolicy must have valid port"))
    if not any(is_set(entry, f) for f in PORT_POLICY_FIELDS):
        return [*out, PORT_POLICY_EMPTY.at(path, "port traffic policy must have at least one field")]
    return out + _sub_policies(entry, namespace, path)


def _outlier(outlier: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out: list[Finding] = []
    if is_set(outlier, "baseEjectionTime"):
        out += check_duration(outlier["baseEjectionTime"], (*path, "baseEjectionTime"))
    if as_int(outlier.get("consecutiveErrors")):
        out.append(CONSECUTIVE_ERRORS.at((*path, "consecutiveErrors"), "outlier detection consecutive errors is "
                                         "deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead"))
    if (as_int(outlier.get("consecutiveLocalOriginFailures")) or 0) > 0 and \
            not is_true(outlier.get("splitExternalLocalOriginErrors")):
        out.append(LOCAL_ORIGIN_WITHOUT_SPLIT.at((*path, "consecutiveLocalOriginFailures"), "outlier detection "
                                                 "consecutive local origin failures is specified, but split "
                                                 "external local origin errors is set to false"))
    if is_set(outlier, "interval"):
        out += check_duration(outlier["interval"], (*path, "interval"))
    for key in ("maxEjectionPercent", "minHealthPercent"):
        out += check_percent(outlier.get(key), (*path, key))
    return out


def _connection_pool(pool: Mapping[str, Any], path: DataPath) -> list[Finding]:
    if not is_set(pool, "http") and not is_set(pool, "tcp"):
        return [POOL_EMPTY.at(path, "connection pool must have at least one field")]
    out: list[Finding] = []
    if is_set(pool, "http"):
        out += _http_pool(as_map(pool["http"]), (*path, "http"))
    if is_set(pool, "tcp"):
        out += _tcp_pool(as_map(pool["tcp"]), (*path, "tcp"))
    return out


def _negative(settings: Mapping[str, Any], key: str, path: DataPath) -> list[Finding]:
    if (as_int(settings.get(key)) or 0) >= 0:
        return []
    return [POOL_NEGATIVE.at((*path, key), f"{key} must be non-negative")]


def _http_pool(http: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out = [f for key in _HTTP_COUNTERS for f in _negative(http, key, path)]
    if is_set(http, "idleTimeout"):
        out += check_duration(http["idleTimeout"], (*path, "idleTimeout"))
    if is_set(http, "h2UpgradePolicy"):
        out += check_enum(http["h2UpgradePolicy"], H2_POLICIES, (*path, "h2UpgradePolicy"))
    if enum_index(http.get("h2UpgradePolicy"), H2_POLICIES) == 2 and is_true(http.get("useClientProtocol")):
        out.append(UPGRADE_WITH_CLIENT_PROTOCOL.at((*path, "useClientProtocol"), "use client protocol must not "
                                                   "be true when H2UpgradePolicy is UPGRADE"))
    if is_set(http, "http2KeepAlive"):
        keepalive = as_map(http["http2KeepAlive"])
        for key in ("interval", "timeout"):
            where = (*path, "http2KeepAlive", key)
            if is_set(keepalive, key):
                out += check_duration(keepalive[key], where)
            else:
                out.append(H2_KEEPALIVE.at(where, f"http2 keepalive {key} is required"))
    return out


def _tcp_pool(tcp: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out = _negative(tcp, "maxConnections", path)
    for key in ("connectTimeout", "maxConnectionDuration"):
        if is_set(tcp, key):
            out += check_duration(tcp[key], (*path, key))
    idle = parse_duration(tcp.get("idleTimeout"))
    if is_set(tcp, "idleTimeout") and (idle is None or abs(idle) >= MILLISECOND):
        out += check_duration(tcp["idleTimeout"], (*path, "idleTimeout"))
    keepalive = as_map(tcp.get("tcpKeepalive"))
    for key in ("time", "interval"):
        if is_set(keepalive, key):
            out += check_duration(keepalive[key], (*path, "tcpKeepalive", key))
    return out


def check_tls(tls: Mapping[str, Any], namespace: str, path: DataPath) -> list[Finding]:
    """`ValidateTLS` for ClientTLSSettings (destination, port or subset level)."""
    out = check_enum(tls.get("mode"), TLS_MODES, (*path, "mode")) if is_set(tls, "mode") else []
    mode = enum_index(tls.get("mode"), TLS_MODES)
    credential = as_str(tls.get("credentialName"))
    if credential.startswith(CONFIGMAP_PREFIX):
        out += _configmap(credential, namespace, (*path, "credentialName"))
    ca, sans = as_str(tls.get("caCertificates")), has_items(tls.get("subjectAltNames"))
    if is_true(tls.get("insecureSkipVerify")):
        if mode == SIMPLE and (ca or credential or sans):
            out.append(SKIP_VERIFY_SIMPLE.at((*path, "insecureSkipVerify"), "cannot specify CaCertificates or "
                                             "CredentialName or SubjectAltNames when InsecureSkipVerify is set true"))
        if mode == MUTUAL and (ca or sans):
            out.append(SKIP_VERIFY_MUTUAL.at((*path, "insecureSkipVerify"), "cannot specify CaCertificates or "
                                             "SubjectAltNames when InsecureSkipVerify is set true"))
    if mode in (SIMPLE, MUTUAL) and credential:
        if any(as_str(tls.get(key)) for key in _CERT_FILES):
            out.append(CREDENTIAL_WITH_FILES.at((*path, "credentialName"), "cannot specify client certificates or "
                                                "CA certificate or CA CRL If credentialName is set"))
        return out
    if mode == MUTUAL:
        for key, what in (("clientCertificate", "client certificate"), ("privateKey", "private key")):
            if not as_str(tls.get(key)):
                out.append(MUTUAL_MISSING_FILES.at((*path, key), f"{what} required for mutual tls"))
    return out


def _configmap(credential: str, namespace: str, path: DataPath) -> list[Finding]:
    parts = credential[len(CONFIGMAP_PREFIX):].split("/")
    if len(parts) > 2 or "" in parts:
        return [CONFIGMAP_CREDENTIAL.at(path, f"invalid configmap:// credentialName {credential!r}")]
    owner = parts[0] if len(parts) == 2 else namespace
    if owner != namespace or not namespace:
        return [CONFIGMAP_CREDENTIAL.at(path, "invalid configmap:// credentialName: namespace must match the "
                                              f"configuration namespace {namespace!r}")]
    return []


def _tunnel(tunnel: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out: list[Finding] = []
    protocol = as_str(tunnel.get("protocol"))
    if protocol not in ("", "CONNECT", "POST"):
        out.append(TUNNEL_PROTOCOL.at((*path, "protocol"), 'tunnel protocol must be "CONNECT" or "POST"'))
    host = as_str(tunnel.get("targetHost"))
    if fqdn_error(host) and not is_ip(host):
        out.append(TUNNEL_HOST.at((*path, "targetHost"), f"tunnel target host must be valid FQDN or IP address: "
                                                          f"{host!r}"))
    return out + check_port(tunnel.get("targetPort"), (*path, "targetPort"), "tunnel target port")
