"""VM workload groups: the proxies of an environment that get the same configuration.

Input: an environment's settings and validated Services. Output: the egress `Proxy` (the
standalone egress Envoy, env.yaml `proxy:`) and one `Proxy` per VM workload group: the VM hosts
(endpoints with a serviceAccount and an IP, `vmcapture.vm_hosts`) that share a namespace, labels,
locality, network, service account and captured ports, as a WorkloadGroup's template gives them.
A group is named after its first host (`<service>-<endpoint>`, as the iptables files); its proxy
settings carry the workload's namespace, labels (with ``topology.istio.io/network``) and
locality, which select DestinationRules and order failover (meshc.proxy.envoy.proxies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from meshc.front.provenance import locate_decl
from meshc.model.core import EnvSettings, Service, TrafficPolicy
from meshc.model.diagnostics import DataPath, Diagnostic, Severity
from meshc.proxy.envoy.endpoints import client_labels
from meshc.proxy.envoy.proxies import Proxy
from meshc.proxy.envoy.values import envoy_locality
from meshc.proxy.vmcapture import VmHost, vm_hosts

NETWORK_LABEL = "topology.istio.io/network"


def egress_proxy(settings: EnvSettings) -> Proxy:
    name = f"meshc-egress.{settings.namespace}"
    node: dict[str, Any] = {"id": name, "cluster": name}
    if settings.proxy.locality:
        node["locality"] = envoy_locality(settings.proxy.locality)
    return Proxy("", replace(settings.proxy, namespace=settings.namespace), node)


def _key(host: VmHost) -> tuple[Any, ...]:
    ep = host.service.endpoints[host.index]
    return (host.service.namespace, tuple(sorted(ep.labels.items())), ep.locality, ep.network or "",
            ep.service_account or "", host.all_ports, tuple(sorted(host.ports)))


def workload_proxies(settings: EnvSettings, services: list[Service]) -> list[Proxy]:
    groups: dict[tuple[Any, ...], list[VmHost]] = {}
    for host in vm_hosts(services):  # sorted by name: the first host names the group
        groups.setdefault(_key(host), []).append(host)
    return [_proxy(settings, hosts) for hosts in groups.values()]


def _proxy(settings: EnvSettings, hosts: list[VmHost]) -> Proxy:
    first = hosts[0]
    svc = first.service
    ep = svc.endpoints[first.index]
    labels = dict(ep.labels)
    if ep.network:
        labels.setdefault(NETWORK_LABEL, ep.network)
    namespace = svc.namespace
    node: dict[str, Any] = {
        # istiod's node id (type~ip~id~domain) of the first host; the others start Envoy with
        # --service-node (docs/envoy.md)
        "id": f"sidecar~{ep.address}~{first.name}.{namespace}~{namespace}.svc.{settings.cluster_domain}",
        "cluster": f"{svc.name}.{namespace}",
        "metadata": {"NAMESPACE": namespace, "SERVICE_ACCOUNT": ep.service_account or "",
                     "LABELS": dict(sorted(labels.items())), "WORKLOAD_NAME": svc.name,
                     **({"NETWORK": ep.network} if ep.network else {}),
                     "MESHC_HOSTS": [f"{h.name} {h.service.endpoints[h.index].address}" for h in hosts]},
    }
    if ep.locality:
        node["locality"] = envoy_locality(ep.locality)
    proxy = replace(settings.proxy, namespace=namespace, locality=ep.locality,
                    labels=tuple(sorted(labels.items())))
    return Proxy(first.name, proxy, node)


def _credential_paths(svc: Service) -> list[DataPath]:
    """Where a declaration sets credentialName (tls, subsets' and portLevel tls)."""
    out: list[DataPath] = []
    if svc.tls is not None and svc.tls.credential_name:
        out.append(("tls", "credentialName"))
    policies: list[tuple[DataPath, TrafficPolicy | None]] = [(("trafficPolicy",), svc.traffic_policy)]
    policies += [(("subsets", i, "trafficPolicy"), s.traffic_policy) for i, s in enumerate(svc.subsets)]
    for base, policy in policies:
        if policy is None:
            continue
        if isinstance(policy.tls, Mapping) and policy.tls.get("credentialName"):
            out.append((*base, "tls", "credentialName"))
        out += [(*base, "portLevel", j, "tls", "credentialName") for j, level in enumerate(policy.port_level)
                if isinstance(level.tls, Mapping) and level.tls.get("credentialName")]
    return out


def unselected_credentials(settings: EnvSettings, services: list[Service], groups: list[Proxy]) -> list[Diagnostic]:
    """E004: a credentialName DestinationRule (clientSelector) that selects none of `groups` (the
    egress proxy and the VM workload groups): no proxy configuration meshc writes carries that TLS."""
    out: list[Diagnostic] = []
    index: dict[tuple[str, str, str], set[int]] = {}  # (namespace, label, value) -> proxies
    for i, g in enumerate(groups):
        for k, v in client_labels(g.settings.locality, g.settings.labels).items():
            index.setdefault((g.settings.namespace, k, v), set()).add(i)
    for svc in services:
        if not svc.client_selector or not _credential_paths(svc):
            continue
        chosen = set.intersection(*(index.get((svc.namespace, k, v), set()) for k, v in svc.client_selector.items()))
        if chosen:
            continue
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(svc.client_selector.items()))
        out.append(Diagnostic(
            "E004", Severity.WARNING,
            f"clientSelector {{{shown}}} selects no proxy meshc configures (VM workload or egress Envoy) in namespace "
            f"{svc.namespace!r}: no proxy configuration meshc writes carries this credentialName TLS "
            "(Kubernetes pods with these labels get it from istiod)",
            locate_decl(svc.decl, ("clientSelector",)), "clientSelector",
            "if VMs are meant to use it, give their endpoints these labels (and the service's namespace); "
            "if only pods are, accept this with a waiver", settings.name, f"service {svc.name}"))
    return out
