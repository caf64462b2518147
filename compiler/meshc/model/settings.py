"""Typed settings of one environment's proxies, each default written once (here).

`ProxySettings`: what one client proxy's Envoy configuration depends on besides the Istio objects
(env.yaml `trustDomain`, `clusterDomain` and its `proxy:` block). `VmSettings`: how the iptables
capture of a VM workload is set up (env.yaml `vm:`). Both are built once, by `front.load`, from a
schema-valid env.yaml; every later stage reads their attributes, never the YAML mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ProxySettings:
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    dns_refresh_rate: str = "60s"
    connect_timeout: str = "10s"
    locality: str = ""  # client proxy locality "region/zone/subzone" for priorities; "" = unknown
    outbound_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN  # short DestinationRule hosts: <host>.<ns>.svc.<this>
    # the client proxy's own labels (sorted pairs), matched by DR failoverPriority with region/zone/
    # subzone from `locality`; e.g. topology.istio.io/network
    labels: tuple[tuple[str, str], ...] = ()
    # the client proxy's namespace: DestinationRules with a workloadSelector apply to a proxy only in
    # their own namespace and when the selector is a subset of its labels ("" = selected by none)
    namespace: str = ""
    # where the proxies read the shared cluster and listener files (envoy/clusters.json,
    # envoy/listeners.json) from: their bootstraps name them there (env.yaml proxy.configDir)
    config_dir: str = "/etc/meshc/envoy"


@dataclass(frozen=True)
class GatewaySettings:
    """The egress gateway (sidecar mode) of an environment: its Kubernetes Service's name and
    namespace, and the labels of its pods."""

    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[int, ...] = ()  # the ports its Kubernetes Service exposes; () = not declared

    def host(self, cluster_domain: str) -> str:
        return f"{self.name}.{self.namespace}.svc.{cluster_domain}"


@dataclass(frozen=True)
class WaypointSettings:
    """The egress waypoint (ambient) of an environment; `managed`: meshc emits its Gateway."""

    name: str
    namespace: str
    managed: bool = False
    tls_origination: str = "DestinationRule"  # or BackendTLSPolicy


@dataclass(frozen=True)
class EgressSettings:
    """env.yaml `egress:`: the default egress path of the services, the gateway and waypoint they
    use, and what every consumer namespace's Sidecar keeps visible."""

    mode: str = "direct"  # direct | gateway | waypoint
    gateway: GatewaySettings | None = None
    waypoint: WaypointSettings | None = None
    control_plane_namespace: str = "istio-system"
    sidecar_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class VmSettings:
    dns_capture: bool = True
    egress_allow_list: bool = False  # allow only declared destinations with an IP (docs/iptables.md)
    exclude_inbound_ports: tuple[int, ...] = (22, 15090, 15021, 15020)
    include_outbound_cidrs: tuple[str, ...] = ("*",)
    exclude_outbound_cidrs: tuple[str, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    # nameservers DNS capture redirects to the agent (istio-iptables: those of /etc/resolv.conf);
    # none = DNS is not captured (warning T015), never every packet to port 53
    dns_servers: tuple[str, ...] = ()
    # per network (env.yaml vm.dnsServersByNetwork): the VMs of that network use these instead
    dns_servers_by_network: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def dns_servers_for(self, network: str | None) -> tuple[str, ...]:
        return dict(self.dns_servers_by_network).get(network or "", self.dns_servers)

