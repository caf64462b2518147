"""Shared primitives of istiod's Go validation: names, hosts, addresses, durations, protocols.

Input: single field values (strings, numbers) taken from a manifest.
Output: predicates and "error text or None" functions (host, FQDN, IP/CIDR, duration, unix path),
plus Finding builders for the rules shared by all kinds (ports, protocols, labels, durations).
Invariants: regexes are compiled once at import; the behaviour follows the Go helpers named in
istio-facts.md 4.1 (`ValidateWildcardDomain`, `ValidateFQDN`, `ValidateIPSubnet`, `ValidateDuration`,
`ValidatePort`, `ValidatePortName`, `ValidateProtocol`, `labels.Instance.Validate`).
Codes emitted: I040 port number, I041 port name, I042 protocol, I020 label key, I021 label value,
I050 duration.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error
from meshc.check.istio.fields import as_int, as_map, as_str
from meshc.model.diagnostics import DataPath, Finding
from meshc.model.netaddr import duration_nanos
from meshc.proxy.envoy.values import is_ip as is_ip  # re-exported: netip.ParseAddr semantics

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

_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS1123_LABEL = re.compile(_DNS_LABEL)
_WILDCARD_LABEL = re.compile(rf"\*|(?:\*|\*-)?{_DNS_LABEL}")
_LABEL_KEY = re.compile(rf"(?:({_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?({_QUALIFIED})")
_LABEL_VALUE = re.compile(rf"(?:{_QUALIFIED})?")
_NUMERIC = re.compile(r"[+-]?[0-9]+")
_PREFIX_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
MILLISECOND = 10**6

PROTOCOLS = {p.lower(): p for p in (
    "TCP", "UDP", "GRPC", "GRPC-Web", "HTTP", "HTTP_PROXY", "HTTP2", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL")}
HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
TLS_FAMILY = frozenset({"HTTPS", "TLS"})
TCP_FAMILY = frozenset({"TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"})


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def is_wildcard_label(value: str) -> bool:
    return len(value) <= 63 and _WILDCARD_LABEL.fullmatch(value) is not None


def _precondition_error(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def _labels_error(domain: str, whole: str) -> str | None:
    parts = domain.split(".")
    if _NUMERIC.fullmatch(parts[-1]):
        return f"domain name {whole!r} invalid (top level domain {parts[-1]!r} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f"domain name {whole!r} invalid (label {label!r} invalid)"
    return None


def fqdn_error(name: str) -> str | None:
    """`ValidateFQDN`: DNS-1123 labels, no wildcard, last label not numeric; single labels pass."""
    return _precondition_error(name) or _labels_error(name, name)


def wildcard_domain_error(domain: str) -> str | None:
    """`ValidateWildcardDomain`: like FQDN, but the first label may be `*`, `*x` or `*-x`."""
    pre = _precondition_error(domain)
    if pre:
        return pre
    first, dot, rest = domain.partition(".")
    if not is_wildcard_label(first):
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    return _labels_error(rest, domain) if dot else None


def is_partial_wildcard(host: str) -> bool:
    """`ValidatePartialWildCard`: a `*` anywhere except as the whole host or a leading `*.`."""
    return "*" in host and len(host) != 1 and not host.startswith("*.")


def ip_subnet_error(value: str) -> str | None:
    """`ValidateIPSubnet`: exactly one `/` means a CIDR prefix, otherwise a plain IP."""
    if value.count("/") == 1:
        addr, _, bits = value.partition("/")
        try:
            parsed = ipaddress.ip_address(addr)
        except ValueError:
            return f"{value} is not a valid CIDR block"
        if "%" in addr or not _PREFIX_BITS.fullmatch(bits) or int(bits) > parsed.max_prefixlen:
            return f"{value} is not a valid CIDR block"
        return None
    return None if is_ip(value) else f"{value} is not a valid IP"


def unix_address_error(path: str) -> str | None:
    """`ValidateUnixAddress` on the part after `unix://`: absolute file path or `@abstract`."""
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{path} is not an absolute path to a file"
    return None


def parse_duration(value: Any) -> int | None:
    """Go `time.ParseDuration` (also covers proto-JSON `1.5s`) in nanoseconds; None if unparseable."""
    return _parse_duration(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)
def _parse_duration(text: str) -> int | None:
    return duration_nanos(text)


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


def label_key_error(key: str) -> str | None:
    match = _LABEL_KEY.fullmatch(key)
    if match is None:
        return f"invalid label key: {key!r}"
    if match.group(1) and len(match.group(1)) > 253:
        return f"invalid label key: {key!r} (DNS prefix is too long)"
    if len(match.group(2)) > 63:
        return f"invalid label key: {key!r} (name is too long)"
    return None


def label_value_error(value: str) -> str | None:
    """Kubernetes' IsValidLabelValue: at most 63 characters of the qualified-name alphabet."""
    if len(value) > 63:
        return f"invalid label value: {value[:70]!r}... (must be at most 63 characters)"
    if _LABEL_VALUE.fullmatch(value) is None:
        return (f"invalid label value: {value!r} (letters, digits, '-', '_' and '.', starting and ending "
                "with a letter or digit)")
    return None


def check_labels(labels: Any, path: DataPath) -> list[Finding]:
    """`labels.Instance.Validate` over a map; each bad key or value is one finding."""
    out: list[Finding] = []
    for key, value in as_map(labels).items():
        key_text, value_text = as_str(key), as_str(value)
        error = label_key_error(key_text)
        if error:
            out.append(LABEL_KEY.at((*path, key_text), error))
        if _LABEL_VALUE.fullmatch(value_text) is None:
            out.append(LABEL_VALUE.at((*path, key_text), f"invalid label value: {value_text!r}"))
    return out


def string_map(value: Any) -> Mapping[str, str]:
    return {as_str(k): as_str(v) for k, v in as_map(value).items()}
