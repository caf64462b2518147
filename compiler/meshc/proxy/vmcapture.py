"""Pass `proxy` (VM half): typed Services of one environment -> iptables rules per VM workload.

Input: the environment's validated Services and its `vm:` settings. Output: one `CaptureSpec` per
VM host (an endpoint with a serviceAccount: it runs a sidecar), rendered to
`iptables/<workload>.rules`, plus diagnostics placed at the endpoint's declaration.
A VM is identified by its address and named after its first WorkloadEntry. Inbound capture follows
istioctl's VM bootstrap (`istioctl x workload entry configure`, workload.go `createClusterEnv`):
ISTIO_INBOUND_PORTS is the WorkloadGroup's `spec.template.ports` values, or `*` when it has none. Here:
the union of the `ports` values of the host's WorkloadEntries, or all ports (with the excluded
ones returned) as soon as one of them has no `ports`.
DNS capture redirects only DNS to `vm.dnsServers` (istio-iptables reads them from the VM's
/etc/resolv.conf); without them DNS is not captured and T015 is reported once, at env.yaml.
Findings about a setting of env.yaml (DNS) are placed there, once per environment; the others at
the VM's endpoint.
Allow-list mode (`vm.egressAllowList`): the host may reach every declared destination that has an
IP (service addresses, STATIC endpoints) on the service's ports; destinations known only by DNS
name cannot be written as iptables matches and are left out (docs/iptables.md).
Codes: T001-T015 (meshc.proxy.iptables.validate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshc.front.provenance import locate_decl, locate_in_layer
from meshc.model.core import EnvSettings, Port, Service
from meshc.model.diagnostics import DataPath, Diagnostic, Finding, Position, Severity, format_path
from meshc.model.netaddr import is_cidr, is_ip
from meshc.model.settings import VmSettings
from meshc.proxy.iptables.rules import APPLY_SCRIPT, CaptureSpec, Destination, build_ruleset, render, validate_spec

APPLY_FILE = "iptables/meshc-iptables-apply"


@dataclass
class VmHost:
    name: str
    service: Service
    index: int
    ports: set[int] = field(default_factory=set)
    all_ports: bool = False  # a WorkloadEntry without `ports`: istioctl writes ISTIO_INBOUND_PORTS='*'


def _target(svc: Service, ep_ports: Mapping[str, int], port: Port) -> int:
    return int(ep_ports.get(port.name) or port.target_port or port.number)


def vm_hosts(services: list[Service]) -> list[VmHost]:
    hosts: dict[str, VmHost] = {}
    for svc in services:
        for i, ep in enumerate(svc.endpoints):
            if not ep.service_account or not is_ip(ep.address):
                continue
            host = hosts.setdefault(ep.address, VmHost(f"{svc.name}-{ep.name}", svc, i))
            host.ports.update(int(p) for p in ep.ports.values())
            host.all_ports = host.all_ports or not ep.ports
    return sorted(hosts.values(), key=lambda h: h.name)


def _proto(port: Port) -> str:
    return "udp" if port.protocol == "UDP" else "tcp"


def destinations(services: list[Service]) -> tuple[Destination, ...]:
    out: set[Destination] = set()
    for svc in services:
        for addr in svc.addresses:
            if is_ip(addr) or is_cidr(addr):
                out.update(Destination(addr, p.number, _proto(p)) for p in svc.ports)
        for ep in svc.endpoints:
            if is_ip(ep.address):
                out.update(Destination(ep.address, _target(svc, ep.ports, p), _proto(p)) for p in svc.ports)
    return tuple(sorted(out, key=lambda d: (d.cidr, d.port, d.protocol)))


def _network(host: VmHost) -> str:
    return host.service.endpoints[host.index].network or ""


def capture_spec(host: VmHost, vm: VmSettings, allow: tuple[Destination, ...] | None) -> CaptureSpec:
    return CaptureSpec(
        workload=host.name, inbound_ports=() if host.all_ports else tuple(sorted(host.ports)),
        exclude_inbound_ports=vm.exclude_inbound_ports, include_outbound_cidrs=vm.include_outbound_cidrs,
        exclude_outbound_cidrs=vm.exclude_outbound_cidrs, exclude_outbound_ports=vm.exclude_outbound_ports,
        dns_capture=vm.dns_capture, dns_servers=vm.dns_servers_for(_network(host)), egress_allow_list=allow)


def vm_rules(settings: EnvSettings, services: list[Service]) -> tuple[dict[str, bytes], list[Diagnostic]]:
    hosts = vm_hosts(services)
    if not hosts:
        return {}, _env_errors(settings)
    allow = destinations(services) if settings.vm.egress_allow_list else None
    files: dict[str, bytes] = {APPLY_FILE: APPLY_SCRIPT.encode()}
    diags: list[Diagnostic] = []
    env_level: dict[tuple[str, str], Diagnostic] = {}
    for host in hosts:
        spec = capture_spec(host, settings.vm, allow)
        problems = validate_spec(spec)
        for f in problems:
            at_env = _env_yaml_path(f, _network(host) if _network(host) in dict(settings.vm.dns_servers_by_network)
                                    else None)
            if at_env is not None:
                diag = Diagnostic(f.code, f.severity, f.message, _env_position(settings, at_env),
                                  f"vm: {format_path(f.path)}", f.hint or "fix the vm: settings in env.yaml",
                                  settings.name, "VM capture")
                env_level.setdefault((diag.code, diag.path), diag)
                continue
            where = locate_decl(host.service.decl, ("endpoints", host.index))
            diags.append(Diagnostic(f.code, f.severity, f.message, where, f"vm: {format_path(f.path)}",
                                    f.hint or "fix the vm: settings in env.yaml", settings.name,
                                    f"VM {host.name}"))
        if not any(f.severity.label == "error" for f in problems):
            files[f"iptables/{spec.workload}.rules"] = render(build_ruleset(spec)).encode()
    return files, [*env_level.values(), *diags, *_unknown_networks(settings)]


_ENV_KEYS = {"dns_capture": "dnsCapture", "dns_servers": "dnsServers"}


def _env_errors(settings: EnvSettings) -> list[Diagnostic]:
    """Without VM workloads no rules are written, but a malformed vm: DNS setting in env.yaml is
    still an error at its line (not a surprise on the day the first VM is declared)."""
    vm = settings.vm
    out: list[Diagnostic] = []
    for network in (None, *dict(vm.dns_servers_by_network)):
        spec = CaptureSpec(workload="env", dns_capture=vm.dns_capture, dns_servers=vm.dns_servers_for(network)
                           if network is not None else vm.dns_servers)
        for f in validate_spec(spec):
            at_env = _env_yaml_path(f, network)
            if at_env is not None and f.severity.label == "error":
                out.append(Diagnostic(f.code, f.severity, f.message, _env_position(settings, at_env),
                                      f"vm: {format_path(f.path)}", f.hint or "fix the vm: settings in env.yaml",
                                      settings.name, "VM capture"))
    return out + _unknown_networks(settings)


def _unknown_networks(settings: EnvSettings) -> list[Diagnostic]:
    """T016: a dnsServersByNetwork entry for a network env.yaml does not declare."""
    return [Diagnostic("T016", Severity.ERROR, f"vm.dnsServersByNetwork names network {network!r}, which "
                       "env.yaml does not declare under networks: (no VM can be on it; its servers would "
                       "never be used)", _env_position(settings, ("vm", "dnsServersByNetwork", network)),
                       "vm: dnsServersByNetwork", "add the network to networks: or correct its name",
                       settings.name, "VM capture")
            for network in dict(settings.vm.dns_servers_by_network) if network not in settings.networks]


def _env_yaml_path(f: Finding, network: str | None = None) -> DataPath | None:
    """The env.yaml path (under vm:) of a finding about a DNS setting, None for the others; the
    servers of a network listed in dnsServersByNetwork are found there."""
    if not f.path or f.path[0] not in _ENV_KEYS:
        return None
    if network is not None and f.path[0] == "dns_servers":
        return ("vm", "dnsServersByNetwork", network, *f.path[1:])
    return ("vm", _ENV_KEYS[str(f.path[0])], *f.path[1:])


def _env_position(settings: EnvSettings, path: DataPath) -> Position:
    if settings.source is None:
        return Position(f"environments/{settings.name}/env.yaml", 1, 1)
    return locate_in_layer(settings.source, path)
