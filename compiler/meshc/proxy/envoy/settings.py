"""What one proxy's configuration depends on besides the Istio objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProxySettings:
    trust_domain: str = "cluster.local"
    dns_refresh_rate: str = "60s"
    connect_timeout: str = "10s"
    locality: str = ""  # client proxy locality "region/zone/subzone" for priorities; "" = unknown
    outbound_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
