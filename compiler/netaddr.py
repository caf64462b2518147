"""Address and name forms Istio accepts (istio-facts.md section 4.1), as small pure predicates."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000,
            "us": 1_000, "ns": 1}


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def is_cidr(text: str) -> bool:
    if text.count("/") != 1:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


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
    return all(len(lb) <= 63 and _LABEL.match(lb) for lb in labels)


def is_unix(address: str) -> bool:
    return address.startswith("unix://")


def duration_ns(text: str) -> int | None:
    """Go-style duration -> nanoseconds, or None when malformed."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return int(round(total)) if pos == len(text) and text else None


def is_private(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_private
    except ValueError:
        return False
