"""Shared primitives of istiod's Go validation: names, hosts, addresses, durations, protocols.

Input: single field values (strings, numbers) taken from a manifest.
Output: predicates and "error text or None" functions (host, FQDN, IP/CIDR, duration, unix path;
the value syntax itself is `meshc.model.netaddr` and `meshc.model.values`, shared with the front
end and the proxy pass, and re-exported here), plus Finding builders for the rules shared by all
kinds (ports, protocols, labels, durations).
Invariants: the behaviour follows the Go helpers named in
istio-facts.md 4.1 (`ValidateWildcardDomain`, `ValidateFQDN`, `ValidateIPSubnet`, `ValidateDuration`,
`ValidatePort`, `ValidatePortName`, `ValidateProtocol`, `labels.Instance.Validate`).
Codes emitted: I040 port number, I041 port name, I042 protocol, I020 label key, I021 label value,
I050 duration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error
from meshc.check.istio.fields import as_int, as_map, as_str
from meshc.model.diagnostics import DataPath, Finding

# value syntax lives in meshc.model; the check/istio modules import these names from here
from meshc.model.netaddr import fqdn_error as fqdn_error
from meshc.model.netaddr import ip_subnet_error as ip_subnet_error
from meshc.model.netaddr import is_dns1123_label as is_dns1123_label
from meshc.model.netaddr import is_ip as is_ip
from meshc.model.netaddr import is_partial_wildcard as is_partial_wildcard
from meshc.model.netaddr import unix_address_error as unix_address_error
from meshc.model.netaddr import wildcard_domain_error as wildcard_domain_error
from meshc.model.values import duration_nanos, is_label_value, label_key_error

VALIDATION = "pkg/config/validation/validation.go"
AGENT = "pkg/config/validation/agent/validation.go"

PORT_RANGE = webhook_error(
    "I040", "port number outside 1..65535", f"{AGENT} ValidatePort",
    "use a port number between 1 and 65535")
PORT_NAME = webhook_error(
    "I041", "port name is not a DNS-1123 label", f"{VALIDATION} ValidatePortName",
    "use letters, digits and '-', start and end alphanumeric, at most 62 characters (e.g. http-api)")
PROTOCOL = webhook_error(
    "I042", "unsupported protocol", f"{VALIDATION} ValidateProtocol; pkg/config/protocol/instance.go Parse",
    "use one of HTTP, HTTPS, GRPC, GRPC-Web, HTTP2, HTTP_PROXY, TCP, TLS, MONGO, REDIS, MYSQL, UDP, or leave empty")
LABEL_KEY = webhook_error(
    "I020", "invalid label key", "pkg/config/labels/instance.go Instance.Validate",
    "use [prefix/]name with name matching ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] (<=63) and a DNS prefix <=253")
LABEL_VALUE = webhook_error(
    "I021", "invalid label value", "pkg/config/labels/instance.go Instance.Validate",
    "use an empty value or alphanumerics with '-', '_' or '.' inside")
DURATION = webhook_error(
    "I050", "duration below 1ms, not whole milliseconds, or unparseable", f"{AGENT} ValidateDuration",
    "use a whole number of milliseconds of at least 1ms, e.g. 250ms, 5s, 1m")

RULES: tuple[Rule, ...] = (PORT_RANGE, PORT_NAME, PROTOCOL, LABEL_KEY, LABEL_VALUE, DURATION)

MILLISECOND = 10**6

PROTOCOLS = {p.lower(): p for p in (
    "TCP", "UDP", "GRPC", "GRPC-Web", "HTTP", "HTTP_PROXY", "HTTP2", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL")}
HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
TLS_FAMILY = frozenset({"HTTPS", "TLS"})
TCP_FAMILY = frozenset({"TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"})


def parse_duration(value: Any) -> int | None:
    """Go `time.ParseDuration` (also covers proto-JSON `1.5s`) in nanoseconds; None if unparseable."""
    return duration_nanos(value) if isinstance(value, str) else None


def duration_error(value: Any) -> str | None:
    """`ValidateDuration`: at least 1ms and a whole number of milliseconds."""
    nanos = parse_duration(value)
    if nanos is None:
        return f"invalid duration {value!r}"
    if nanos < MILLISECOND:
        return "duration must be greater than 1ms"
    if nanos % MILLISECOND:
        return "only durations to ms precision are supported"
    return None


def protocol_of(value: Any) -> str | None:
    """Canonical protocol name; "" for unset (sniffing); None when Istio does not know it."""
    text = as_str(value)
    return "" if text == "" else PROTOCOLS.get(text.lower())


def check_port(value: Any, path: DataPath, what: str = "port") -> list[Finding]:
    number = as_int(value)
    if number is not None and 1 <= number <= 65535:
        return []
    return [PORT_RANGE.at(path, f"{what} {value!r} must be in the range 1..65535")]


def check_port_name(value: Any, path: DataPath) -> list[Finding]:
    name = as_str(value)
    return [] if is_dns1123_label(name) else [PORT_NAME.at(path, f"invalid port name: {name!r}")]


def check_protocol(value: Any, path: DataPath) -> list[Finding]:
    if protocol_of(value) is not None:
        return []
    return [PROTOCOL.at(path, f"unsupported protocol: {as_str(value)!r}")]


def check_duration(value: Any, path: DataPath) -> list[Finding]:
    error = duration_error(value)
    return [DURATION.at(path, f"{error} (got {value!r})")] if error else []


def check_labels(labels: Any, path: DataPath) -> list[Finding]:
    """`labels.Instance.Validate` over a map; each bad key or value is one finding."""
    out: list[Finding] = []
    for key, value in as_map(labels).items():
        key_text, value_text = as_str(key), as_str(value)
        error = label_key_error(key_text)
        if error:
            out.append(LABEL_KEY.at((*path, key_text), error))
        if not is_label_value(value_text):
            out.append(LABEL_VALUE.at((*path, key_text), f"invalid label value: {value_text!r}"))
    return out


def string_map(value: Any) -> Mapping[str, str]:
    return {as_str(k): as_str(v) for k, v in as_map(value).items()}
