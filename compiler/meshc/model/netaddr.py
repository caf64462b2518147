"""Value forms Istio accepts (istio-facts.md section 4.1): addresses, names, Go durations."""

from __future__ import annotations

import functools
import ipaddress
import re
from decimal import Decimal, InvalidOperation

_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


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
    return all(len(lb) <= 63 and _LABEL.fullmatch(lb) for lb in labels)


def is_unix(address: str) -> bool:
    return address.startswith("unix://")


@functools.lru_cache(maxsize=4096)  # a few distinct strings, parsed for every cluster
def duration_nanos(text: str) -> int | None:
    """Go duration ('1h', '1m30s', '2.5s', '-1s') -> nanoseconds; None when not a duration."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    if body == "0":
        return 0
    pos, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            return None
        try:
            total += Decimal(match.group(1)) * _UNIT_NANOS[match.group(2)]
        except InvalidOperation:
            return None
        pos = match.end()
    if pos == 0 or pos != len(body):
        return None
    return sign * int(total)


def is_private(address: str) -> bool:
    try:
        return ipaddress.ip_network(address, strict=False).is_private
    except ValueError:
        return False
