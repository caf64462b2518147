"""The bundle of one environment as values: file path -> bytes, or a file already on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Spooled:
    """A bundle file already on disk, written by the worker that made it (the Envoy bootstrap of a
    large estate: ~130 MB at 10,000 services, not worth holding or piping). The writer links it
    into place; anything else reads it."""

    path: str
    sha256: str

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


# The Envoy files of a bundle (meshc.proxy.envoy.proxies): shared CDS and LDS, the egress proxy's
# bootstrap, one bootstrap per VM workload group; the egress gateway's static configuration (only in
# environments whose Gateways select it: services with `egress: gateway`).
ENVOY_CLUSTERS = "envoy/clusters.json"
ENVOY_LISTENERS = "envoy/listeners.json"
ENVOY_BOOTSTRAP = "envoy/bootstrap.json"
ENVOY_WORKLOADS = "envoy/workloads"
ENVOY_GATEWAY = "envoy/gateway.json"


def content(data: bytes | Spooled) -> bytes:
    return data.read() if isinstance(data, Spooled) else data


@dataclass(frozen=True)
class Bundle:
    env: str
    files: dict[str, bytes | Spooled] = field(default_factory=dict)
