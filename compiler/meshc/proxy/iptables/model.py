"""Typed model for the iptables artifact: the per-VM input (`CaptureSpec`) and the output
(`Ruleset` = tables -> chains -> rules, each rule a tuple of match parts plus one target).

Every match part and target knows its own iptables argument tokens (`args()`); nothing else in
meshc builds rule text. All classes are frozen, so a `Ruleset` can be hashed, compared and
rendered byte-for-byte deterministically (see `meshc.iptables.render`).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshc.model.settings import VmSettings

_VM = VmSettings()  # istioctl's VM defaults, as env.yaml's vm: block has them
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
OWN_PREFIX = "MESHC_"


# --- input ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """One declared service endpoint/port the VM may reach (allow-list mode)."""

    cidr: str  # IP or CIDR; hostnames are resolved before meshc gets here
    port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class CaptureSpec:
    """What istio-iptables would be told for one VM workload (WorkloadEntry with a serviceAccount)."""

    workload: str
    inbound_ports: tuple[int, ...] = ()  # () = '*' (all), as istioctl writes for port-less WorkloadGroups
    exclude_inbound_ports: tuple[int, ...] = _VM.exclude_inbound_ports
    include_outbound_cidrs: tuple[str, ...] = _VM.include_outbound_cidrs
    exclude_outbound_cidrs: tuple[str, ...] = _VM.exclude_outbound_cidrs
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = _VM.exclude_outbound_ports
    dns_capture: bool = _VM.dns_capture
    dns_servers: tuple[str, ...] = _VM.dns_servers  # DNS is captured only to these; () = none (T015)
    proxy_uid: int = 1337
    proxy_gid: int = 1337
    egress_allow_list: tuple[Destination, ...] | None = None  # None = no egress filter


# --- match parts --------------------------------------------------------------------------------

def _neg(negated: bool) -> tuple[str, ...]:
    return ("!",) if negated else ()


@dataclass(frozen=True)
class Proto:
    name: str

    def args(self) -> tuple[str, ...]:
        return ("-p", self.name)


@dataclass(frozen=True)
class Addr:
    """`-s`/`-d` with a normalised CIDR (``10.1.2.3/32``)."""

    flag: str
    cidr: str
    negated: bool = False

    def args(self) -> tuple[str, ...]:
        return (*_neg(self.negated), self.flag, self.cidr)


@dataclass(frozen=True)
class Iface:
    flag: str  # "-o" or "-i"
    name: str

    def args(self) -> tuple[str, ...]:
        return (self.flag, self.name)


@dataclass(frozen=True)
class Port:
    """`--dport`/`--sport` (needs a preceding `Proto`)."""

    flag: str
    port: int
    negated: bool = False

    def args(self) -> tuple[str, ...]:
        return (*_neg(self.negated), self.flag, str(self.port))


@dataclass(frozen=True)
class MultiPort:
    ports: tuple[int, ...]
    negated: bool = False

    def args(self) -> tuple[str, ...]:
        return ("-m", "multiport", *_neg(self.negated), "--dports", ",".join(map(str, self.ports)))


@dataclass(frozen=True)
class Owner:
    kind: str  # "uid" or "gid"
    ident: int
    negated: bool = False

    def args(self) -> tuple[str, ...]:
        return ("-m", "owner", *_neg(self.negated), f"--{self.kind}-owner", str(self.ident))


@dataclass(frozen=True)
class CtState:
    states: tuple[str, ...]
    negated: bool = False

    def args(self) -> tuple[str, ...]:
        return ("-m", "conntrack", *_neg(self.negated), "--ctstate", ",".join(self.states))


@dataclass(frozen=True)
class CtOrigDst:
    """Original (pre-NAT) destination of the connection, so redirected traffic is judged by
    where the application meant to go."""

    cidr: str | None
    port: int

    def args(self) -> tuple[str, ...]:
        where = ("--ctorigdst", self.cidr) if self.cidr else ()
        return ("-m", "conntrack", *where, "--ctorigdstport", str(self.port))


Match = Proto | Addr | Iface | Port | MultiPort | Owner | CtState | CtOrigDst


# --- targets ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Jump:
    chain: str

    def args(self) -> tuple[str, ...]:
        return ("-j", self.chain)


@dataclass(frozen=True)
class Return:
    def args(self) -> tuple[str, ...]:
        return ("-j", "RETURN")


@dataclass(frozen=True)
class Redirect:
    port: int

    def args(self) -> tuple[str, ...]:
        return ("-j", "REDIRECT", "--to-ports", str(self.port))


@dataclass(frozen=True)
class CtZone:
    zone: int

    def args(self) -> tuple[str, ...]:
        return ("-j", "CT", "--zone", str(self.zone))


@dataclass(frozen=True)
class Reject:
    with_: str  # "tcp-reset" or "icmp-port-unreachable"

    def args(self) -> tuple[str, ...]:
        return ("-j", "REJECT", "--reject-with", self.with_)


Target = Jump | Return | Redirect | CtZone | Reject


# --- output -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...]
    target: Target

    def args(self) -> tuple[str, ...]:
        return (*(tok for m in self.matches for tok in m.args()), *self.target.args())


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_CHAINS


@dataclass(frozen=True)
class Table:
    name: str
    chains: tuple[Chain, ...]  # meshc chains in declaration order, then built-in chains

    def chain(self, name: str) -> Chain:
        return next(c for c in self.chains if c.name == name)


@dataclass(frozen=True)
class Ruleset:
    workload: str
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)
