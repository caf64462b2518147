"""Typed stages of the pipeline.

What the user wrote (`Layer`: one declaration item with its file and YAML node), the merged model
(`ServiceDecl`: one service in one environment, merged across layers, with its provenance),
the typed model (`Service` and its parts, built only from validated declarations), and
artifacts (`Artifact`: one emitted object with its identity and origin).
Positions are kept out of equality: provenance fields are `compare=False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from yaml.nodes import Node

from .diagnostics import Position


@dataclass(frozen=True, slots=True)
class Layer:
    """One declaration of a service (base entry or an environment's entry) and where it was written."""

    file: str
    node: Node = field(compare=False, repr=False)
    data: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def position(self) -> Position:
        mark = self.node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)


@dataclass(frozen=True, slots=True)
class EnvSettings:
    name: str
    namespace: str
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    networks: tuple[str, ...] = ()
    policy_profile: str = "standard"
    production: bool = False
    proxy: Mapping[str, Any] = field(default_factory=dict, compare=False)
    vm: Mapping[str, Any] = field(default_factory=dict, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source: Layer | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ServiceDecl:
    """A service merged across layers; `data` is plain, schema-valid declaration data."""

    name: str
    data: Mapping[str, Any]
    layers: tuple[Layer, ...] = field(compare=False, repr=False)

    @property
    def position(self) -> Position:
        return self.layers[0].position


@dataclass(frozen=True, slots=True)
class Port:
    number: int
    protocol: str
    name: str
    target_port: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    name: str
    ports: Mapping[str, int]
    labels: Mapping[str, str]
    locality: str
    weight: int | None
    network: str | None
    service_account: str | None


@dataclass(frozen=True, slots=True)
class Tls:
    mode: str
    sni: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    credential_name: str | None = None
    ca_certificates: str | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    insecure_skip_verify: bool | None = None


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Mapping[str, str]
    traffic_policy: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    namespace: str
    owner: str
    description: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    location: str
    resolution: str
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...]
    endpoints_as: str
    selector: Mapping[str, str]
    tls: Tls | None
    client_selector: Mapping[str, str]
    traffic_policy: Mapping[str, Any] | None
    subsets: tuple[Subset, ...]
    export_to: tuple[str, ...]
    decl: ServiceDecl = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Identity:
    kind: str
    namespace: str
    name: str
    group: str = "networking.istio.io"

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One emitted Istio object; `service` and `part` (endpoint or host index) say where it came from."""

    identity: Identity
    body: Mapping[str, Any]
    service: str
    part: int = 0
