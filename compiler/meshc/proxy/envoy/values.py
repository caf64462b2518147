"""Small value conversions shared by the Envoy translation (`meshc.envoy`).

Input: scalar values as written in Istio manifests (Go-style durations such as ``1m30s`` or
``100ms``, parsed by `meshc.model.values`; addresses, locality strings; address syntax is
`meshc.model.netaddr`). Output: the Envoy proto-JSON spelling of the same value.

Invariants: pure functions, no I/O. A value that cannot be converted is passed through
unchanged, so the strict parse in `meshc.envoy_validate` reports it (code E001) at the exact
bootstrap path instead of this module guessing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from meshc.model.netaddr import UNIX_PREFIX
from meshc.model.values import duration_nanos

MAX_UINT32 = 4294967295
ISTIO_FILTER_KEY = "istio"
TLS_MATCH_KEY = "envoy.transport_socket_match"


def envoy_duration(value: Any) -> Any:
    """A Go/Istio duration -> proto-JSON Duration ('5s', '0.100s'); unknown input unchanged."""
    if not isinstance(value, str):
        return value
    nanos = duration_nanos(value)
    if nanos is None:
        return value
    sign = "-" if nanos < 0 else ""
    seconds, frac = divmod(abs(nanos), 1_000_000_000)
    if frac == 0:
        return f"{sign}{seconds}s"
    if frac % 1_000_000 == 0:
        return f"{sign}{seconds}.{frac // 1_000_000:03d}s"
    if frac % 1_000 == 0:
        return f"{sign}{seconds}.{frac // 1_000:06d}s"
    return f"{sign}{seconds}.{frac:09d}s"


def whole_seconds(value: Any) -> Any:
    """A duration -> whole seconds (sub-second part truncated), as TcpKeepalive wants."""
    nanos = duration_nanos(value) if isinstance(value, str) else None
    return value if nanos is None else nanos // 1_000_000_000


@functools.lru_cache(maxsize=4096)  # a few localities, asked for per endpoint per client
def locality_parts(locality: str) -> tuple[str, str, str]:
    """'region/zone/subzone' -> the three parts; further segments are ignored."""
    parts = (locality.split("/") + ["", "", ""])[:3] if locality else ["", "", ""]
    return parts[0], parts[1], parts[2]


def envoy_locality(locality: str) -> dict[str, str]:
    region, zone, sub_zone = locality_parts(locality)
    keys = (("region", region), ("zone", zone), ("sub_zone", sub_zone))
    return {key: value for key, value in keys if value}


def locality_matches(locality: str, rule: str) -> bool:
    """Locality rule matching: each rule segment is '*', empty, or equal to the locality's."""
    have = locality_parts(locality)
    want = rule.rstrip("/").split("/")[:3]
    for index, segment in enumerate(want):
        if segment == "*":
            return True
        if segment and segment != have[index]:
            return False
    return True


def socket_address(address: str, port: int) -> dict[str, Any]:
    """An Envoy Address: a pipe for ``unix://`` endpoints, else a TCP socket address."""
    if address.startswith(UNIX_PREFIX):
        return {"pipe": {"path": address[len(UNIX_PREFIX):]}}
    return {"socket_address": {"address": address, "port_value": port}}


def typed(type_name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An Any in proto-JSON form for a fully-qualified message name."""
    return {"@type": f"type.googleapis.com/{type_name}", **(body or {})}


def saturating_sum(values: list[int]) -> int:
    return min(sum(values), MAX_UINT32)
