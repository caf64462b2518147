"""Addresses and names as Istio accepts them (istio-facts.md section 4.1): IPs, CIDRs, DNS names, unix sockets.

Predicates for meshc's own declaration rules (`is_fqdn`, `is_cidr`, ...), the "error text or None"
forms of istiod's Go helpers (`ValidateFQDN`, `ValidateWildcardDomain`, `ValidateIPSubnet`,
`ValidateUnixAddress`, `ValidatePartialWildCard`), and the address conversions of the Envoy
translation (`normalise_address`, `cidr_parts`). One IP parser (`ipaddress`, with
netip.ParseAddr's forms) serves every stage.
Invariants: pure functions; regexes compiled once at import.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_LABEL = re.compile(rf"^{_DNS_LABEL}$")
_DNS1123_LABEL = re.compile(_DNS_LABEL)
_WILDCARD_LABEL = re.compile(rf"\*|(?:\*|\*-)?{_DNS_LABEL}")
_NUMERIC = re.compile(r"[+-]?[0-9]+")
_PREFIX_BITS = re.compile(r"0|[1-9][0-9]{0,2}")
UNIX_PREFIX = "unix://"


# --------------------------------------------------------------------------- IP addresses and CIDRs


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_cidr(text: str) -> bool:
    if text.count("/") != 1:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


def cidr_parts(text: str) -> tuple[str, int] | None:
    """'10.0.0.0/8' -> ('10.0.0.0', 8); None for plain IPs and non-addresses."""
    if "/" not in text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return str(net.network_address), net.prefixlen


def normalise_address(text: str) -> str:
    """A ServiceEntry address: '/32' and '/128' prefixes collapse to the plain IP."""
    if "/" not in text:
        return text
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return text


def is_private(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_private
    except ValueError:
        return False


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


# --------------------------------------------------------------------------- unix sockets


def is_unix(address: str) -> bool:
    return address.startswith(UNIX_PREFIX)


def unix_address_error(path: str) -> str | None:
    """`ValidateUnixAddress` on the part after `unix://`: absolute file path or `@abstract`."""
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{path} is not an absolute path to a file"
    return None


# --------------------------------------------------------------------------- DNS names


def is_fqdn(host: str, wildcard: bool = False) -> bool:
    """DNS name with labels of 1-63 chars; last label not all digits; optional leading `*.`."""
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 255:
        return False
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return False
    if labels[-1].isdigit():
        return False
    return all(len(lb) <= 63 and _LABEL.fullmatch(lb) for lb in labels)


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

