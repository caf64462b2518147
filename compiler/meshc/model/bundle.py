"""The bundle of one environment as values: file path -> bytes, or a file already on disk."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


class SpooledFiles(Mapping[str, bytes]):
    """Files by bundle path, some of them already on disk (`Spooled`): read as bytes like any
    mapping of files (a spooled one from disk, on each access), handed to the writer as they
    are (`entries`: spooled ones are linked into place)."""

    def __init__(self, entries: Mapping[str, bytes | Spooled]) -> None:
        self._entries = dict(entries)

    def entries(self) -> dict[str, bytes | Spooled]:
        return dict(self._entries)

    def __getitem__(self, rel: str) -> bytes:
        return content(self._entries[rel])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def bundle_entries(files: Mapping[str, bytes]) -> Mapping[str, bytes | Spooled]:
    """What the writer gets for `files`: spooled files as `Spooled`, the others as bytes."""
    return files.entries() if isinstance(files, SpooledFiles) else files


@dataclass(frozen=True)
class Bundle:
    env: str
    files: dict[str, bytes | Spooled] = field(default_factory=dict)
