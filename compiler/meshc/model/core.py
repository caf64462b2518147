"""Typed stages of the pipeline.

What the user wrote (`Layer`: one declaration item with its file and YAML node), the merged model
(`ServiceDecl`: one service in one environment, merged across layers, with its provenance),
the typed model (`Service` and its parts, built only from validated declarations), and
artifacts (`Artifact`: one emitted object with its identity and origin).
Positions are kept out of equality: provenance fields are `compare=False`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import Node

from meshc.model.diagnostics import Position
from meshc.model.ids import ObjectId
from meshc.model.settings import (
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_TRUST_DOMAIN,
    EgressSettings,
    ProxySettings,
    VmSettings,
)


class NodeSource:
    """The YAML nodes of one file, parsed on first use: positions are needed only for diagnostics,
    so a build that reads declarations from the parse cache never composes nodes."""

    def __init__(self, file: str, text: bytes, nodes: list[Node] | None = None,
                 compose: Callable[[str], list[Node | None]] | None = None) -> None:
        """`compose` reads the text as the file was read when it was loaded (front.load passes
        files.source.compose_all: YAML 1.2 scalars, go-yaml's flow colons)."""
        self.file, self.text, self.nodes, self.compose = file, text, nodes, compose

    def node(self, index: tuple[Any, ...]) -> Node:
        if self.nodes is None:
            text = self.text.decode("utf-8")
            if self.compose is not None:
                composed = self.compose(text)
            else:
                composed = list(yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
            self.nodes = [n for n in composed if n is not None]
        node: Any = self.nodes[index[0]]
        for elem in index[1:]:
            if isinstance(elem, str):
                node = next(v for k, v in node.value if k.value == elem)
            else:
                node = node.value[elem]
        return node  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Layer:
    """One declaration of a service (base entry or an environment's entry) and where it was written.
    `index` locates its node in `source`: (document,) or (document, section, item)."""

    file: str
    data: Mapping[str, Any] = field(compare=False, repr=False)
    line: int = 0
    col: int = 0
    source: NodeSource | None = field(default=None, compare=False, repr=False)
    index: tuple[Any, ...] = field(default=(0,), compare=False, repr=False)

    @property
    def position(self) -> Position:
        return Position(self.file, self.line, self.col)

    @property
    def node(self) -> Node:
        assert self.source is not None
        return self.source.node(self.index)


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """One environment's env.yaml, typed and defaulted once by `front.load`; `proxy` and `vm` also
    carry the values they depend on (trust and cluster domain). `raw` is env.yaml as written (the
    cache fingerprint hashes it)."""

    name: str
    namespace: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    networks: tuple[str, ...] = ()
    policy_profile: str = "standard"
    production: bool = False
    proxy: ProxySettings = field(default_factory=ProxySettings, compare=False)
    vm: VmSettings = field(default_factory=VmSettings, compare=False)
    dataplane: str = "sidecar"  # or ambient
    # env.yaml `namespaces:` (namespace, its service accounts; none = any), None when not given
    namespaces: tuple[tuple[str, tuple[str, ...]], ...] | None = field(default=None, compare=False)
    egress: EgressSettings = field(default_factory=EgressSettings, compare=False)
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
class PortPolicy:
    """One `portLevel` entry of a traffic policy: it replaces the policy's settings for that port
    (Istio's portLevelSettings). The settings are Istio API values, schema-validated, kept as written."""

    port: int
    load_balancer: Mapping[str, Any] | None = None
    connection_pool: Mapping[str, Any] | None = None
    outlier_detection: Mapping[str, Any] | None = None
    tls: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """A declared traffic policy (a service's, or a subset's, which may also set `tls`)."""

    load_balancer: Mapping[str, Any] | None = None
    connection_pool: Mapping[str, Any] | None = None
    outlier_detection: Mapping[str, Any] | None = None
    tls: Mapping[str, Any] | None = None
    port_level: tuple[PortPolicy, ...] = ()
    retry_budget: Mapping[str, Any] | None = None
    proxy_protocol: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> TrafficPolicy | None:
        """From schema-valid declaration data (None stays None)."""
        if data is None:
            return None
        return cls(data.get("loadBalancer"), data.get("connectionPool"), data.get("outlierDetection"),
                   data.get("tls"), tuple(PortPolicy(int(e["port"]), e.get("loadBalancer"), e.get("connectionPool"),
                                                     e.get("outlierDetection"), e.get("tls"))
                                          for e in data.get("portLevel", ())),
                   data.get("retryBudget"), data.get("proxyProtocol"))


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Mapping[str, str]
    traffic_policy: TrafficPolicy | None


@dataclass(frozen=True, slots=True)
class Consumer:
    """Who may call a service: a namespace, or one service account in it."""

    namespace: str
    service_account: str | None = None


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
    traffic_policy: TrafficPolicy | None
    subsets: tuple[Subset, ...]
    export_to: tuple[str, ...]
    decl: ServiceDecl = field(compare=False, repr=False)
    egress: str = "direct"  # direct | gateway | waypoint (declared, else env.yaml egress.mode)
    consumers: tuple[Consumer, ...] = ()


OriginEntry = tuple[tuple[Any, ...], tuple[Any, ...], bool]  # (body prefix, declaration path, continues)
Origin = tuple[OriginEntry, ...]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One emitted Istio object; `service` and `part` (endpoint or host index) say where it came
    from, and `origin` which declaration value each part of the body was made from: pairs of
    (path prefix in the body, path in the service declaration, whether the rest of the body path
    continues below that declaration path). Built by expand beside the values it makes, so a
    finding anywhere in the object is placed at the line that wrote its value (front.provenance)."""

    identity: ObjectId
    body: Mapping[str, Any]
    service: str
    part: int = 0
    origin: Origin = field(default=(), compare=False, repr=False)
    # an object kept verbatim (environments/<env>/passthrough/): the file:line it was read at and
    # its YAML node, so a finding inside it is placed at the field's own line
    source: Position | None = field(default=None, compare=False, repr=False)
    node: Any = field(default=None, compare=False, repr=False)
