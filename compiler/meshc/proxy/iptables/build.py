"""`CaptureSpec` -> `Ruleset`: the rules istio-iptables programs in REDIRECT mode
(istio-facts.md 6.3), in meshc-owned `MESHC_*` chains, plus the optional egress allow-list.

Within each chain the rule order is exactly Istio's; the file lists chain by chain (meshc chains
in Istio's creation order, the jumps from built-in chains last). Lists from the spec are
de-duplicated (first occurrence wins) and CIDRs normalised, so the same spec always gives the
same rules. The spec must pass `validate_spec` without errors, else `ValueError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TypeVar

from meshc.model.diagnostics import Severity
from meshc.proxy.iptables.model import (
    Addr,
    CaptureSpec,
    Chain,
    CtOrigDst,
    CtState,
    CtZone,
    Iface,
    Jump,
    Match,
    MultiPort,
    Owner,
    Port,
    Proto,
    Redirect,
    Reject,
    Return,
    Rule,
    Ruleset,
    Table,
    Target,
)
from meshc.proxy.iptables.validate import validate_spec

OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
INBOUND_TUNNEL_PORT = 15008
DNS_PROXY_PORT = 15053
PASSTHROUGH_SOURCE = "127.0.0.6/32"
LOOPBACK = "127.0.0.1/32"

INBOUND, REDIRECT, IN_REDIRECT = "MESHC_INBOUND", "MESHC_REDIRECT", "MESHC_IN_REDIRECT"
OUTPUT, OUTPUT_DNS, EGRESS = "MESHC_OUTPUT", "MESHC_OUTPUT_DNS", "MESHC_EGRESS"
TABLE_ORDER = ("raw", "nat", "filter")  # netfilter hook priority order; each table commits on its own

T = TypeVar("T")


class _Builder:
    """Collects rules per table and chain in first-use order; `freeze` gives the `Ruleset`."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[Rule]]] = {}

    def declare(self, table: str, *chains: str) -> None:
        for name in chains:
            self.tables.setdefault(table, {}).setdefault(name, [])

    def add(self, table: str, chain: str, matches: Sequence[Match], target: Target) -> None:
        self.declare(table, chain)
        self.tables[table][chain].append(Rule(tuple(matches), target))

    def freeze(self, workload: str) -> Ruleset:
        tables = []
        for name in sorted(self.tables, key=TABLE_ORDER.index):
            chains = [Chain(c, tuple(rules)) for c, rules in self.tables[name].items()]
            chains.sort(key=lambda c: c.builtin)  # stable: meshc chains first, then built-ins
            tables.append(Table(name, tuple(chains)))
        return Ruleset(workload, tuple(tables))


def unique(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))


def net(text: str) -> str:
    """'10.1.2.3' -> '10.1.2.3/32'; '10.1.2.3/16' -> '10.1.0.0/16' (the form iptables-save prints)."""
    return ipaddress.ip_network(text, strict=False).with_prefixlen


def build_ruleset(spec: CaptureSpec) -> Ruleset:
    errors = [f for f in validate_spec(spec) if f.severity >= Severity.ERROR]
    if errors:
        raise ValueError("invalid CaptureSpec: " + "; ".join(f"{f.code} {f.message}" for f in errors))
    b = _Builder()
    _nat(b, spec)
    if dns_redirect(spec):
        _raw_dns(b, spec)
    if spec.egress_allow_list is not None:
        _egress(b, spec)
    return b.freeze(spec.workload)


def dns_redirect(spec: CaptureSpec) -> bool:
    """DNS is captured only to known nameservers: istio-iptables (capture/run.go `Run`) reads them
    from /etc/resolv.conf and, without `--capture-all-dns`, disables DNS capture when there are
    none ("no DNS servers provided. DNS capture disabled."); meshc has no capture-all mode, which
    would send a local resolver's (systemd-resolved, dnsmasq) upstream queries back to the agent."""
    return spec.dns_capture and bool(spec.dns_servers)


# --- nat ------------------------------------------------------------------------------------------

def _nat(b: _Builder, spec: CaptureSpec) -> None:
    b.declare("nat", INBOUND, REDIRECT, IN_REDIRECT, OUTPUT)
    if dns_redirect(spec):
        b.declare("nat", OUTPUT_DNS)
    b.add("nat", INBOUND, [Proto("tcp"), Port("--dport", INBOUND_TUNNEL_PORT)], Return())
    b.add("nat", REDIRECT, [Proto("tcp")], Redirect(OUTBOUND_CAPTURE_PORT))
    b.add("nat", IN_REDIRECT, [Proto("tcp")], Redirect(INBOUND_CAPTURE_PORT))
    _inbound(b, spec)
    b.add("nat", "OUTPUT", [], Jump(OUTPUT))
    for port in unique(spec.exclude_outbound_ports):
        for proto in ("tcp", "udp"):
            b.add("nat", OUTPUT, [Proto(proto), Port("--dport", port)], Return())
    b.add("nat", OUTPUT, [Iface("-o", "lo"), Addr("-s", PASSTHROUGH_SOURCE)], Return())
    _owner_rules(b, spec, "uid", spec.proxy_uid)
    _owner_rules(b, spec, "gid", spec.proxy_gid)
    if dns_redirect(spec):
        _nat_dns(b, spec)
    b.add("nat", OUTPUT, [Addr("-d", LOOPBACK)], Return())
    for cidr in unique(net(c) for c in spec.exclude_outbound_cidrs):
        b.add("nat", OUTPUT, [Addr("-d", cidr)], Return())
    for port in unique(spec.include_outbound_ports):
        b.add("nat", OUTPUT, [Proto("tcp"), Port("--dport", port)], Jump(REDIRECT))
    _include_cidrs(b, spec)


def _inbound(b: _Builder, spec: CaptureSpec) -> None:
    tcp: list[Match] = [Proto("tcp")]
    b.add("nat", "PREROUTING", tcp, Jump(INBOUND))
    if spec.inbound_ports:
        for port in unique(spec.inbound_ports):
            b.add("nat", INBOUND, [*tcp, Port("--dport", port)], Jump(IN_REDIRECT))
        return
    for port in unique(spec.exclude_inbound_ports):
        if port != INBOUND_TUNNEL_PORT:  # already returned above: the same rule twice would be noise
            b.add("nat", INBOUND, [*tcp, Port("--dport", port)], Return())
    b.add("nat", INBOUND, tcp, Jump(IN_REDIRECT))


def _owner_rules(b: _Builder, spec: CaptureSpec, kind: str, ident: int) -> None:
    """Istio 6.3 steps 11/12 for one proxy uid or gid."""
    lo: list[Match] = [Iface("-o", "lo")]
    dns = dns_redirect(spec)
    if dns and kind == "uid":
        not_tunnel: Match = MultiPort((53, INBOUND_TUNNEL_PORT), negated=True)
    else:
        not_tunnel = Port("--dport", INBOUND_TUNNEL_PORT, negated=True)
    b.add("nat", OUTPUT, [*lo, Addr("-d", LOOPBACK, negated=True), Proto("tcp"), not_tunnel,
                          Owner(kind, ident)], Jump(IN_REDIRECT))
    if not _loopback_included(spec):
        not_dns: list[Match] = [Proto("tcp"), Port("--dport", 53, negated=True)] if dns else []
        b.add("nat", OUTPUT, [*lo, *not_dns, Owner(kind, ident, negated=True)], Return())
    b.add("nat", OUTPUT, [Owner(kind, ident)], Return())


def _loopback_included(spec: CaptureSpec) -> bool:
    """istio-iptables' `HasLoopBackIP` (capture/run.go `separateV4V6`): an include CIDR whose address,
    as written, is a loopback address. A range that merely contains loopback (0.0.0.0/0) does not
    count, so an explicit 0.0.0.0/0 keeps the app-to-app `-o lo` RETURN exactly like `*`."""
    addrs = (ipaddress.ip_interface(c).ip for c in spec.include_outbound_cidrs if c != "*")
    return any(a.version == 4 and a.is_loopback for a in addrs)


def _nat_dns(b: _Builder, spec: CaptureSpec) -> None:
    b.add("nat", OUTPUT, [], Jump(OUTPUT_DNS))
    servers = _dns_matches(spec)
    for proto in ("tcp", "udp"):
        for server in servers:
            b.add("nat", OUTPUT_DNS, [Proto(proto), Port("--dport", 53), *server], Redirect(DNS_PROXY_PORT))


def _dns_matches(spec: CaptureSpec) -> list[list[Match]]:
    """One `-d <server>/32` per configured server (`dns_redirect`: there is at least one)."""
    return [[Addr("-d", net(s))] for s in unique(spec.dns_servers)]


def _include_cidrs(b: _Builder, spec: CaptureSpec) -> None:
    if "*" in spec.include_outbound_cidrs:
        b.add("nat", OUTPUT, [], Jump(REDIRECT))
        return
    for cidr in unique(net(c) for c in spec.include_outbound_cidrs):
        b.add("nat", OUTPUT, [Addr("-d", cidr)], Jump(REDIRECT))


# --- raw: DNS conntrack zones --------------------------------------------------------------------

def _raw_dns(b: _Builder, spec: CaptureSpec) -> None:
    """Zone 1: agent <-> upstream resolvers; zone 2: applications <-> agent (istio-facts 6.3)."""
    b.declare("raw", OUTPUT_DNS, INBOUND)
    b.add("raw", "OUTPUT", [], Jump(OUTPUT_DNS))
    udp: list[Match] = [Proto("udp")]
    for kind, ident in (("uid", spec.proxy_uid), ("gid", spec.proxy_gid)):
        b.add("raw", OUTPUT_DNS, [*udp, Port("--dport", 53), Owner(kind, ident)], CtZone(1))
        b.add("raw", OUTPUT_DNS, [*udp, Port("--sport", DNS_PROXY_PORT), Owner(kind, ident)], CtZone(2))
    b.add("raw", "PREROUTING", [], Jump(INBOUND))
    for server in _dns_matches(spec):
        source = [Addr("-s", m.cidr) for m in server if isinstance(m, Addr)]
        b.add("raw", OUTPUT_DNS, [*udp, Port("--dport", 53), *server], CtZone(2))
        b.add("raw", INBOUND, [*udp, Port("--sport", 53), *source], CtZone(1))


# --- filter: egress allow-list ----------------------------------------------------------------------

def _egress(b: _Builder, spec: CaptureSpec) -> None:
    """Only declared destinations (judged by the pre-NAT destination, so connections captured by
    the proxy are checked too), DNS, genuine loopback and the proxy itself may leave; the rest
    is refused (TCP reset, ICMP port unreachable otherwise)."""
    b.declare("filter", EGRESS)
    b.add("filter", "OUTPUT", [], Jump(EGRESS))
    b.add("filter", EGRESS, [CtState(("RELATED", "ESTABLISHED"))], Return())
    b.add("filter", EGRESS, [Iface("-o", "lo"), CtState(("DNAT",), negated=True)], Return())
    b.add("filter", EGRESS, [Owner("uid", spec.proxy_uid)], Return())
    b.add("filter", EGRESS, [Owner("gid", spec.proxy_gid)], Return())
    servers: list[str | None] = [net(s) for s in unique(spec.dns_servers)] or [None]
    for proto in ("udp", "tcp"):
        for server in servers:
            b.add("filter", EGRESS, [Proto(proto), CtOrigDst(server, 53)], Return())
    for dest in unique(spec.egress_allow_list or ()):
        b.add("filter", EGRESS, [Proto(dest.protocol), CtOrigDst(net(dest.cidr), dest.port)], Return())
    b.add("filter", EGRESS, [Proto("tcp")], Reject("tcp-reset"))
    b.add("filter", EGRESS, [], Reject("icmp-port-unreachable"))
