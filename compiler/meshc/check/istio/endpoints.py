"""The WorkloadEntry message: a standalone WorkloadEntry's spec or one ServiceEntry `endpoints[]` item.

Input: the endpoint mapping, its data path, and the ServiceEntry's port names (None for a
standalone WorkloadEntry, which cannot know them).
Output: findings of `validateWorkloadEntry` (pkg/config/validation/validation.go) for STATIC
endpoints and standalone WorkloadEntries, and of the DNS branch of `ValidateServiceEntry` for
DNS / DNS_ROUND_ROBIN endpoints.
Invariants: `service_ports is None` means "standalone WorkloadEntry": hostnames are allowed (allowFQDN)
and port names are not cross-checked; otherwise hostnames are rejected as for STATIC.
Codes emitted: I201 address required, I202 address unset with network (warning), I203 bad unix
socket path, I204 unix endpoint with ports, I205 address neither IP nor FQDN, and in ServiceEntry
context I114 STATIC endpoint not an IP, I115 endpoint port not a service port name, I116 unix endpoint
without exactly one service port; plus the shared I020/I021/I040/I041.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error, webhook_warning
from meshc.check.istio.fields import as_map, as_str
from meshc.check.istio.primitives import (
    VALIDATION,
    check_labels,
    check_port,
    check_port_name,
    fqdn_error,
    is_ip,
    unix_address_error,
)
from meshc.model.diagnostics import DataPath, Finding

_WE = f"{VALIDATION} validateWorkloadEntry"
_SE = f"{VALIDATION} ValidateServiceEntry"
UNIX_PREFIX = "unix://"

ADDRESS_REQUIRED = webhook_error(
    "I201", "endpoint has neither address nor network", _WE,
    "set address (IP, hostname for DNS services, or unix:// socket), or network for a gateway-reached endpoint")
ADDRESS_UNSET_WITH_NETWORK = webhook_warning(
    "I202", "endpoint without address is reached through its network's gateway", _WE,
    "set address unless the endpoint really stands for workloads behind the network gateway")
UNIX_PATH = webhook_error(
    "I203", "unix socket address is not an absolute file path or @abstract name",
    f"{_WE}; ValidateUnixAddress", "use unix:///absolute/path (no trailing '/') or unix://@abstract-name")
UNIX_PORTS = webhook_error(
    "I204", "unix socket endpoint lists ports", _WE, "remove ports from a unix:// endpoint")
NOT_IP_OR_FQDN = webhook_error(
    "I205", "endpoint address is neither an IP nor a valid FQDN", f"{_WE} / {_SE} (DNS branch)",
    "use an IP address or a DNS name made of DNS-1123 labels")
STATIC_NOT_IP = webhook_error(
    "I114", "STATIC ServiceEntry endpoint address is not an IP or unix socket", _WE + " (allowFQDN=false)",
    "use IP addresses with resolution STATIC, or switch to resolution DNS for hostnames")
PORT_NOT_DEFINED = webhook_error(
    "I115", "endpoint ports key is not a port name of the ServiceEntry", f"{_WE} / {_SE}",
    "key endpoint ports by the ServiceEntry port *name* (e.g. http: 8080), not by number")
UNIX_NEEDS_ONE_PORT = webhook_error(
    "I116", "unix socket endpoint in a ServiceEntry without exactly one port", _WE,
    "give a ServiceEntry with unix:// endpoints exactly one port")

RULES: tuple[Rule, ...] = (
    ADDRESS_REQUIRED, ADDRESS_UNSET_WITH_NETWORK, UNIX_PATH, UNIX_PORTS, NOT_IP_OR_FQDN,
    STATIC_NOT_IP, PORT_NOT_DEFINED, UNIX_NEEDS_ONE_PORT,
)


def _check_ports(ports: Mapping[str, Any], path: DataPath, service_ports: frozenset[str] | None) -> list[Finding]:
    out: list[Finding] = []
    for raw_name, number in ports.items():
        name = as_str(raw_name)
        where = (*path, "ports", name)
        if service_ports is not None and name not in service_ports:
            out.append(PORT_NOT_DEFINED.at(where, f"endpoint port {name!r} is not defined by the service entry"))
        out += check_port_name(name, where)
        out += check_port(number, where, "endpoint port")
    return out


def _check_address(addr: str, path: DataPath, service_ports: frozenset[str] | None) -> list[Finding]:
    where = (*path, "address")
    if not addr or is_ip(addr):
        return []
    if service_ports is not None:
        return [STATIC_NOT_IP.at(where, f"endpoint address {addr!r} is not a valid IP address")]
    if fqdn_error(addr):
        return [NOT_IP_OR_FQDN.at(where, f"endpoint address {addr!r} is not a valid FQDN or an IP address")]
    return []


def check_workload_entry(entry: Mapping[str, Any], path: DataPath,
                         service_ports: frozenset[str] | None = None) -> list[Finding]:
    """`validateWorkloadEntry`; `service_ports` None = standalone WorkloadEntry (allowFQDN)."""
    addr, network = as_str(entry.get("address")), as_str(entry.get("network"))
    ports = as_map(entry.get("ports"))
    out: list[Finding] = []
    if not addr:
        if not network:
            return [ADDRESS_REQUIRED.at((*path, "address"), "address is required")]
        out.append(ADDRESS_UNSET_WITH_NETWORK.at((*path, "address"), f"address is unset with network {network!r}"))
    unix = addr.startswith(UNIX_PREFIX)
    if unix:
        error = unix_address_error(addr[len(UNIX_PREFIX):])
        if error:
            out.append(UNIX_PATH.at((*path, "address"), error))
        if ports:
            out.append(UNIX_PORTS.at((*path, "ports"), f"unix endpoint {addr} must not include ports"))
    else:
        out += _check_address(addr, path, service_ports)
    out += _check_ports(ports, path, service_ports)
    out += check_labels(entry.get("labels"), (*path, "labels"))
    if unix and service_ports is not None and len(service_ports) != 1:
        out.append(UNIX_NEEDS_ONE_PORT.at((*path, "address"), "exactly 1 service port required for unix endpoints"))
    return out


def check_dns_endpoint(entry: Mapping[str, Any], path: DataPath, service_ports: frozenset[str]) -> list[Finding]:
    """An endpoint of a DNS / DNS_ROUND_ROBIN ServiceEntry: IP or FQDN (empty and unix:// fail)."""
    addr = as_str(entry.get("address"))
    out: list[Finding] = []
    if not is_ip(addr) and fqdn_error(addr):
        out.append(NOT_IP_OR_FQDN.at((*path, "address"),
                                     f"endpoint address {addr!r} is not a valid FQDN or an IP address"))
    out += check_labels(entry.get("labels"), (*path, "labels"))
    out += _check_ports(as_map(entry.get("ports")), path, service_ports)
    return out
