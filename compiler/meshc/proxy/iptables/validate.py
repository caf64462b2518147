"""`validate_spec(CaptureSpec) -> list[Finding]`: problems with one VM's capture settings.

Paths are field names of `CaptureSpec` (``("egress_allow_list", 2, "port")``). Codes:

  T001 error    workload name is not a DNS-1123 subdomain (it names the file <workload>.rules)
  T002 error    port outside 1..65535
  T003 error    not an IPv4 address / CIDR (DNS servers must be plain addresses)
  T004 error    '*' where it is not allowed (exclude CIDRs, DNS servers, destinations) or mixed
                with other include CIDRs
  T005 error    IPv6 address: meshc writes IPv4 (iptables) rules only
  T006 error    destination protocol is not "tcp" or "udp"
  T007 error    proxy uid/gid outside 0..4294967294
  T008 warning  proxy uid/gid 0: everything running as root would bypass capture
  T009 warning  duplicate entry (ignored)
  T010 warning  CIDR has host bits set (the network address is used)
  T011 warning  port both included and excluded (inbound: the include wins, as Istio ignores
                excludes when given a port list; outbound: the exclusion wins)
  T012 warning  an Istio proxy port is listed for inbound capture (would loop or hide the proxy)
  T013 warning  empty egress allow-list: only DNS, loopback and the proxy may be reached
  T014 warning  dns_servers given but neither DNS capture nor the allow-list uses them
  T015 warning  DNS capture without dns_servers: no DNS is captured (istio-iptables reads the
                servers from /etc/resolv.conf and captures DNS only to them; meshc cannot read
                the VM's file, so the servers must be declared)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence

from meshc.model.diagnostics import DataPath, Finding, Severity
from meshc.proxy.iptables.model import CaptureSpec

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PROXY_PORTS = frozenset({15000, 15001, 15004, 15006, 15020, 15021, 15053, 15090})
MAX_ID = 4294967294

E, W = Severity.ERROR, Severity.WARNING
DNS_SERVERS_HINT = ("list the VM's nameservers (the `nameserver` lines of its /etc/resolv.conf) in env.yaml "
                    "vm.dnsServers, or set vm.dnsCapture: false")


def _f(code: str, sev: Severity, msg: str, path: DataPath, hint: str = "") -> Finding:
    return Finding(code, sev, msg, path, hint=hint)


def validate_spec(spec: CaptureSpec) -> list[Finding]:
    out: list[Finding] = []
    if len(spec.workload) > 253 or not _SUBDOMAIN.fullmatch(spec.workload):
        out.append(_f("T001", E, f"workload name {spec.workload!r} is not a DNS-1123 subdomain",
                      ("workload",), "use lower-case letters, digits, '-' and '.'"))
    for field in ("inbound_ports", "exclude_inbound_ports", "include_outbound_ports", "exclude_outbound_ports"):
        out += _ports(getattr(spec, field), (field,))
    out += _cidrs(spec.include_outbound_cidrs, ("include_outbound_cidrs",), star="alone")
    out += _cidrs(spec.exclude_outbound_cidrs, ("exclude_outbound_cidrs",), star="never")
    out += _cidrs(spec.dns_servers, ("dns_servers",), star="never", plain=True)
    out += _ids(spec)
    out += _overlaps(spec)
    out += _allow_list(spec)
    if spec.dns_servers and not spec.dns_capture and spec.egress_allow_list is None:
        out.append(_f("T014", W, "dns_servers has no effect without dns_capture or an egress allow-list",
                      ("dns_servers",)))
    if spec.dns_capture and not spec.dns_servers:
        out.append(_f("T015", W, "DNS capture is on but no DNS servers are known: DNS is not captured",
                      ("dns_capture",), DNS_SERVERS_HINT))
    return out


def _ports(ports: Sequence[int], path: DataPath) -> Iterator[Finding]:
    seen: set[int] = set()
    for i, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            yield _f("T002", E, f"port {port!r} is outside 1..65535", (*path, i))
        elif port in seen:
            yield _f("T009", W, f"duplicate port {port}", (*path, i))
        seen.add(port)


def _cidrs(items: Sequence[str], path: DataPath, star: str, plain: bool = False) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, text in enumerate(items):
        where = (*path, i)
        if text == "*":
            if star == "never" or len(items) > 1:
                yield _f("T004", E, f"'*' is not allowed here{' with other entries' if star == 'alone' else ''}",
                         where, "list CIDRs, or use '*' alone" if star == "alone" else "")
            continue
        finding = _one_address(str(text), where, plain)
        if finding:
            yield finding
        elif text in seen:
            yield _f("T009", W, f"duplicate entry {text}", where)
        seen.add(text)


def _one_address(text: str, where: DataPath, plain: bool) -> Finding | None:
    try:
        value = ipaddress.ip_address(text) if plain else ipaddress.ip_network(text, strict=False)
    except ValueError:
        kind = "IPv4 address" if plain else "IPv4 address or CIDR"
        return _f("T003", E, f"{text!r} is not an {kind}", where)
    if value.version == 6:
        return _f("T005", E, f"{text} is IPv6; meshc only writes IPv4 rules", where)
    if not plain and "/" in text and ipaddress.ip_network(text, strict=False).with_prefixlen != text:
        net = ipaddress.ip_network(text, strict=False).with_prefixlen
        return _f("T010", W, f"{text} has host bits set; {net} is used", where)
    return None


def _ids(spec: CaptureSpec) -> Iterator[Finding]:
    for field in ("proxy_uid", "proxy_gid"):
        ident = getattr(spec, field)
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= MAX_ID:
            yield _f("T007", E, f"{field} {ident!r} is outside 0..{MAX_ID}", (field,))
        elif ident == 0:
            yield _f("T008", W, f"{field} 0 means everything running as root bypasses capture", (field,),
                     "run the proxy as its own user (istio-proxy, 1337)")


def _overlaps(spec: CaptureSpec) -> Iterator[Finding]:
    for i, port in enumerate(spec.inbound_ports):
        if port in spec.exclude_inbound_ports:
            yield _f("T011", W, f"inbound port {port} is also excluded; it is captured", ("inbound_ports", i))
        if port in PROXY_PORTS:
            yield _f("T012", W, f"inbound port {port} belongs to the Istio proxy; capturing it breaks the proxy",
                     ("inbound_ports", i))
    for i, port in enumerate(spec.include_outbound_ports):
        if port in spec.exclude_outbound_ports:
            yield _f("T011", W, f"outbound port {port} is also excluded; it is not captured",
                     ("include_outbound_ports", i))


def _allow_list(spec: CaptureSpec) -> Iterator[Finding]:
    dests = spec.egress_allow_list
    if dests is None:
        return
    if not dests:
        yield _f("T013", W, "empty egress allow-list: only DNS, loopback and the proxy can be reached",
                 ("egress_allow_list",))
    for i, dest in enumerate(dests):
        where: DataPath = ("egress_allow_list", i, "cidr")
        problem = (_f("T004", E, "'*' is not allowed as a destination", where) if dest.cidr == "*"
                   else _one_address(str(dest.cidr), where, plain=False))
        if problem:
            yield problem
        yield from _ports((dest.port,), ("egress_allow_list", i, "port"))
        if dest.protocol not in ("tcp", "udp"):
            yield _f("T006", E, f"protocol {dest.protocol!r} is not tcp or udp", ("egress_allow_list", i, "protocol"))
        if dest in dests[:i]:
            yield _f("T009", W, f"duplicate destination {dest.cidr}:{dest.port}/{dest.protocol}",
                     ("egress_allow_list", i))
