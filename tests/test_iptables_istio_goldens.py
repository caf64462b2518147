"""meshc's iptables rules against istio-iptables' own goldens (tests/fixtures/iptables_istio/,
unmodified copies of istio/istio `tools/istio-iptables/pkg/capture/testdata/*.golden` at commit
86c9f01fd735fb01d8192f5bcaf0d424afb7f14c; README.md there gives source and licence).

Every golden case whose configuration a `CaptureSpec` can express is compared: meshc's spec for
it must give the same rules, in the same order, chain by chain, as the IPv4 input
istio-iptables hands to `iptables-restore`. Two comparisons:

* pure Python (always runs): both rule files parsed and normalised the same way;
* network namespaces (marker `netns`): Istio's input loaded with `iptables-restore --noflush`
  (as istio-iptables runs it) and meshc's file installed with `meshc-iptables-apply`, each in its
  own fresh namespace, then both `iptables-save` outputs compared, with both iptables backends.

Normalisation is naming only (`normalise`): comments, counters and empty built-in chains
dropped, `ISTIO_<X>` chains read as `MESHC_<X>`, `-N X` read as `:X - [0:0]`, `* nat` as `*nat`
and the `--to-port` abbreviation as `--to-ports` (iptables-save prints both that way). Anything
beyond naming is a `KnownDifference` listed with the case and in docs/iptables.md ("Fidelity"); each
one removes only rules it names and fails if they are not there, so it cannot hide other
differences.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from meshc.proxy.iptables.model import BUILTIN_CHAINS
from meshc.proxy.iptables.rules import CaptureSpec, build_ruleset, render

from .conftest import REPO
from .netns_helpers import Lab, meaningful

FIXTURES = REPO / "tests" / "fixtures" / "iptables_istio"
ISTIO_COMMIT = "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c"
RUN_TEST = "tools/istio-iptables/pkg/capture/run_test.go"

Parsed = dict[str, dict[str, tuple[str, list[str]]]]  # table -> chain -> (policy, rules in order)


# --- reading the goldens --------------------------------------------------------------------------

SAVE_COMMANDS = ("iptables-save", "ip6tables-save")


def istio_v4_restore(golden: str) -> str:
    """The IPv4 `iptables-restore` input recorded in a golden, as istio-iptables gave it.

    A golden (run_test.go `compareToGolden`) is the stub's log of `Run`: the `iptables-save` /
    `ip6tables-save` reads of `VerifyIptablesState`, then the stdin lines of `iptables-restore`
    (`BuildV4Restore`), then with IPv6 enabled those of `ip6tables-restore` (`BuildV6Restore`),
    then the final `*-save` reads (run.go `executeCommands`, `Run`). Each restore input writes a
    table once, so the IPv6 input starts at the first repeated `* <table>` header."""
    lines = golden.splitlines()
    i = 0
    while i < len(lines) and lines[i] in SAVE_COMMANDS:
        i += 1
    blocks: list[list[str]] = []
    while i < len(lines) and lines[i].startswith("* "):
        end = lines.index("COMMIT", i)
        blocks.append(lines[i:end + 1])
        i = end + 1
    assert blocks and all(ln in SAVE_COMMANDS for ln in lines[i:]), "unexpected golden layout"
    heads = [b[0] for b in blocks]
    v4 = next((n for n in range(len(heads)) if heads[n] in heads[:n]), len(heads))
    if v4 < len(blocks):  # IPv6 enabled: the run ends by reading both families' state
        assert lines[-1] == "ip6tables-save"
    text = "\n".join(ln for block in blocks[:v4] for ln in block) + "\n"
    assert "::" not in text, "IPv6 address in the IPv4 input"
    return text


def normalise(text: str) -> Parsed:
    """An iptables-restore file or iptables-save output as `Parsed`, with naming normalised
    (module docstring): the form both comparisons use."""
    tables: Parsed = {}
    table = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        line = re.sub(r"\bISTIO_", "MESHC_", line)
        tokens = ["--to-ports" if t == "--to-port" else t for t in line.split()]
        if tokens[0].startswith("*"):
            table = "".join(tokens)[1:]
            tables[table] = {}
        elif tokens[0].startswith(":"):
            tables[table][tokens[0][1:]] = (tokens[1], [])
        elif tokens[0] == "-N":
            tables[table][tokens[1]] = ("-", [])
        elif tokens[0] == "-A":
            policy = "ACCEPT" if tokens[1] in BUILTIN_CHAINS else "-"
            tables[table].setdefault(tokens[1], (policy, []))[1].append(" ".join(tokens))
        else:
            assert tokens == ["COMMIT"], line
    # counters are dropped by parsing; empty built-in chains and tables by `meaningful`
    return meaningful("\n".join(_lines(tables)))


def _lines(tables: Parsed) -> Iterator[str]:
    for table, chains in tables.items():
        yield f"*{table}"
        yield from (f":{chain} {policy} [0:0]" for chain, (policy, _) in chains.items())
        yield from (rule for _, rules in chains.values() for rule in rules)
        yield "COMMIT"


# --- documented exceptions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class KnownDifference:
    """A documented difference that is not naming (docs/iptables.md, "Fidelity"), applied to one
    side before comparing."""

    name: str
    side: str  # "istio" or "meshc": whose rules it removes
    why: str
    apply: Callable[[Parsed], Parsed]


def _remove(parsed: Parsed, table: str, chain: str, rules: list[str]) -> None:
    policy, have = parsed[table][chain]
    for rule in rules:
        assert rule in have, f"exception expects {rule!r} in {table}/{chain}"
        have.remove(rule)
    parsed[table][chain] = (policy, have)


def _without_inbound_capture(parsed: Parsed) -> Parsed:
    out = {t: {c: (p, list(r)) for c, (p, r) in chains.items()} for t, chains in parsed.items()}
    _remove(out, "nat", "PREROUTING", ["-A PREROUTING -p tcp -j MESHC_INBOUND"])
    _remove(out, "nat", "MESHC_INBOUND", ["-A MESHC_INBOUND -p tcp -j MESHC_IN_REDIRECT"])
    return meaningful("\n".join(_lines(out)))


NO_INBOUND_CAPTURE = KnownDifference(
    "no-inbound-capture", "meshc",
    "istio-iptables writes no inbound capture when InboundPortsInclude is empty, the default of "
    "Istio's test config (run.go `handleInboundPortsInclude`). meshc always captures inbound for "
    "a VM, as istioctl always passes -b (the WorkloadGroup's ports or '*'), so `inbound_ports=()` "
    "means '*'. Removed from meshc's side: exactly the two rules '*' adds with no excluded ports "
    "(the inbound-ports-wildcard golden), `PREROUTING -p tcp -j MESHC_INBOUND` and "
    "`MESHC_INBOUND -p tcp -j MESHC_IN_REDIRECT`.",
    _without_inbound_capture)


def _owner_ids(parsed: Parsed, kind: str, keep: str, drop: str) -> Parsed:
    """Remove the rules for proxy id `drop`, after checking they are, chain by chain and in order,
    the rules for `keep` with the id changed (istio-iptables repeats its per-id rules for each
    id of the list: run.go `Run`, the `config.Split(cfg.cfg.ProxyUID/ProxyGID)` loops, and
    `addDNSConntrackZones`)."""
    flag = f"--{kind}-owner"
    out: Parsed = {}
    for table, chains in parsed.items():
        out[table] = {}
        for chain, (policy, rules) in chains.items():
            dropped = [r for r in rules if re.search(rf"{flag} {drop}( |$)", r)]
            kept = [r for r in rules if re.search(rf"{flag} {keep}( |$)", r)]
            copies = [re.sub(rf"{flag} {drop}( |$)", rf"{flag} {keep}\1", r) for r in dropped]
            assert copies == (kept if dropped else []), \
                f"{table}/{chain}: {kind} {drop} rules are not a copy of {keep}'s"
            out[table][chain] = (policy, [r for r in rules if r not in dropped])
    return out


SECOND_PROXY_IDS = KnownDifference(
    "second-proxy-ids", "istio",
    "The case gives istio-iptables two proxy uids (3,4) and gids (1,2); a CaptureSpec has one "
    "proxy uid and one gid (istioctl's VMs run the proxy as one user, 1337). meshc's spec uses the "
    "first of each; removed from Istio's side: the rules for uid 4 and gid 2, which the exception "
    "checks are the uid 3 / gid 1 rules repeated with the other id.",
    lambda parsed: _owner_ids(_owner_ids(parsed, "uid", "3", "4"), "gid", "1", "2"))


# --- the cases --------------------------------------------------------------------------------------

# Istio's test config (run_test.go:256 `constructTestConfig`): ports 15001/15006/15008, proxy
# uid and gid 1337, and nothing else: no inbound ports or exclusions, no outbound CIDRs or
# ports, no DNS capture. (meshc's defaults are istioctl's VM defaults, so they are cleared.)
ISTIO_TEST_BASE = CaptureSpec(
    "istio-golden", inbound_ports=(), exclude_inbound_ports=(), include_outbound_cidrs=(),
    exclude_outbound_cidrs=(), include_outbound_ports=(), exclude_outbound_ports=(), dns_capture=False,
    dns_servers=(), proxy_uid=1337, proxy_gid=1337, egress_allow_list=None)


def base(**changes: object) -> CaptureSpec:
    return replace(ISTIO_TEST_BASE, **changes)  # type: ignore[arg-type]


# DNS capture to resolv.conf's 127.0.0.53 (cfg.RedirectDNS, cfg.DNSServersV4), proxy ids 3,4 / 1,2.
DNS_3_1 = {"dns_capture": True, "dns_servers": ("127.0.0.53",), "proxy_uid": 3, "proxy_gid": 1}


@dataclass(frozen=True)
class Case:
    """One Istio test case: `golden` is its name in RUN_TEST (`getCommonTestCases`) and the
    golden's file name, `line` the line of that name in RUN_TEST at ISTIO_COMMIT."""

    golden: str
    line: int
    config: str  # the case's settings there, for the reader
    spec: CaptureSpec
    exceptions: tuple[KnownDifference, ...] = ()


CASES = [
    Case("inbound-ports-include", 144, 'InboundPortsInclude = "32000,31000"',
         base(inbound_ports=(32000, 31000))),
    Case("inbound-ports-wildcard", 150, 'InboundPortsInclude = "*"', base()),
    Case("ipv6-inbound-ports", 73, 'InboundPortsInclude = "4000,5000"; EnableIPv6 (IPv4 input compared)',
         base(inbound_ports=(4000, 5000))),
    Case("empty", 120, "(nothing)", base(), (NO_INBOUND_CAPTURE,)),
    Case("ipv6-empty-inbound-ports", 37, 'InboundPortsInclude = ""; EnableIPv6 (IPv4 input compared)',
         base(), (NO_INBOUND_CAPTURE,)),
    Case("ipnets", 131, 'OutboundIPRangesInclude = "10.0.0.0/8"',
         base(include_outbound_cidrs=("10.0.0.0/8",)), (NO_INBOUND_CAPTURE,)),
    Case("outbound-ports-include", 218, 'OutboundPortsInclude = "32000,31000"',
         base(include_outbound_ports=(32000, 31000)), (NO_INBOUND_CAPTURE,)),
    Case("ipv6-outbound-ports", 112,
         'InboundPortsInclude = ""; OutboundPortsInclude = "32000,31000"; EnableIPv6 (IPv4 input compared)',
         base(include_outbound_ports=(32000, 31000)), (NO_INBOUND_CAPTURE,)),
    Case("ip-range", 44, 'OutboundIPRangesExclude = "1.1.0.0/16"; OutboundIPRangesInclude = "9.9.0.0/16"; '
         'RedirectDNS; DNSServersV4 = 127.0.0.53; ProxyUID = "3,4"; ProxyGID = "1,2"',
         base(exclude_outbound_cidrs=("1.1.0.0/16",), include_outbound_cidrs=("9.9.0.0/16",), **DNS_3_1),
         (NO_INBOUND_CAPTURE, SECOND_PROXY_IDS)),
    Case("loopback-outbound-iprange", 224, 'OutboundIPRangesInclude = "127.1.2.3/32"; RedirectDNS; '
         'DNSServersV4 = 127.0.0.53; ProxyUID = "3,4"; ProxyGID = "1,2"',
         base(include_outbound_cidrs=("127.1.2.3/32",), **DNS_3_1), (NO_INBOUND_CAPTURE, SECOND_PROXY_IDS)),
    Case("dns-uid-gid", 170, 'RedirectDNS; DNSServersV4 = 127.0.0.53 (V6 ::127.0.0.53); ProxyUID = "3,4"; '
         'ProxyGID = "1,2"; EnableIPv6 (IPv4 input compared)',
         base(**DNS_3_1), (NO_INBOUND_CAPTURE, SECOND_PROXY_IDS)),
    Case("ipv6-dns-uid-gid", 181, 'RedirectDNS without DNS servers (capture disabled); ProxyUID = "3,4"; '
         'ProxyGID = "1,2"; EnableIPv6 (IPv4 input compared)',
         base(dns_capture=True, proxy_uid=3, proxy_gid=1), (NO_INBOUND_CAPTURE, SECOND_PROXY_IDS)),
]

# The other goldens at ISTIO_COMMIT, and the setting a CaptureSpec cannot express.
NOT_COMPARED = {
    "tproxy": "TPROXY inbound mode, ExcludeInterfaces",
    "inbound-ports-tproxy": "TPROXY inbound mode",
    "inbound-ports-wildcard-tproxy": "TPROXY inbound mode",
    "kube-virt-interfaces": "RerouteVirtualInterfaces (-k)",
    "ipnets-with-kube-virt-interfaces": "RerouteVirtualInterfaces (-k)",
    "ipv6-virt-interfaces": "RerouteVirtualInterfaces (-k)",
    "ipv6-ipnets": "RerouteVirtualInterfaces (-k); IPv6 CIDRs",
    "ipv6-uid-gid": "RerouteVirtualInterfaces (-k); IPv6 CIDRs",
    "outbound-owner-groups": "OwnerGroupsInclude",
    "outbound-owner-groups-exclude": "OwnerGroupsExclude",
    "ipv6-dns-outbound-owner-groups": "OwnerGroupsInclude",
    "ipv6-dns-outbound-owner-groups-exclude": "OwnerGroupsExclude",
    "basic-exclude-nic": "ExcludeInterfaces (-c)",
    "drop-invalid": "DropInvalid",
    "host-ipv4-loopback-cidr": "HostIPv4LoopbackCidr",
}

IDS = [c.golden for c in CASES]


def golden_text(case: Case) -> str:
    return (FIXTURES / f"{case.golden}.golden").read_text()


def expected_and_actual(case: Case, istio: Parsed, meshc: Parsed) -> tuple[Parsed, Parsed]:
    for exc in case.exceptions:
        if exc.side == "istio":
            istio = exc.apply(istio)
        else:
            meshc = exc.apply(meshc)
    return istio, meshc


def assert_same_rules(istio: Parsed, meshc: Parsed) -> None:
    """Per table, the same chains with the same rules in the same order (diff on failure)."""
    for table in sorted(set(istio) | set(meshc)):
        want, got = istio.get(table, {}), meshc.get(table, {})
        if want != got:
            diff = difflib.unified_diff(list(_lines({table: want})), list(_lines({table: got})),
                                        "istio-iptables", "meshc", lineterm="", n=1)
            pytest.fail(f"table {table} differs:\n" + "\n".join(diff))


# --- pure Python --------------------------------------------------------------------------------------

def test_fixtures_are_the_unmodified_istio_goldens() -> None:
    readme = (FIXTURES / "README.md").read_text()
    assert ISTIO_COMMIT in readme and "Apache License 2.0" in readme
    sums = dict(re.findall(r"^\| `([\w.-]+\.golden)` \| `([0-9a-f]{64})` \|$", readme, re.M))
    files = sorted(p.name for p in FIXTURES.glob("*.golden"))
    assert sorted(sums) == files == sorted(f"{c.golden}.golden" for c in CASES)
    for name in files:
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == sums[name], name
    assert not set(IDS) & set(NOT_COMPARED) and len(IDS) + len(NOT_COMPARED) == 27  # goldens at the commit


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_meshc_rules_equal_the_istio_golden(case: Case) -> None:
    """The spec of each case against the golden of the Istio test case of that name (RUN_TEST at
    ISTIO_COMMIT, line `Case.line`), up to naming and the case's listed known differences."""
    istio, meshc = expected_and_actual(case, normalise(istio_v4_restore(golden_text(case))),
                                       normalise(render(build_ruleset(case.spec))))
    assert_same_rules(istio, meshc)


def test_normalise_is_naming_only() -> None:
    """The normalisation maps names and spellings iptables itself treats as equal, nothing else."""
    assert normalise("* nat\n-N ISTIO_X\n-A ISTIO_X -p tcp -j REDIRECT --to-port 1\nCOMMIT\n") == \
        normalise("# c\n*nat\n:MESHC_X - [3:4]\n:OUTPUT ACCEPT [1:2]\n"
                  "-A MESHC_X -p tcp -j REDIRECT --to-ports 1\nCOMMIT\n")
    assert normalise("*nat\n-A OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\nCOMMIT\n") != \
        normalise("*nat\n-A OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\nCOMMIT\n")


def test_exceptions_remove_only_what_they_name() -> None:
    plain = normalise(render(build_ruleset(base())))
    with pytest.raises(AssertionError, match="exception expects"):
        NO_INBOUND_CAPTURE.apply(normalise(render(build_ruleset(base(inbound_ports=(80,))))))
    assert sum(len(r) for c in NO_INBOUND_CAPTURE.apply(plain).values() for _, r in c.values()) == \
        sum(len(r) for c in plain.values() for _, r in c.values()) - 2
    odd = normalise("*nat\n-A OUTPUT -m owner --uid-owner 3 -j RETURN\n"
                    "-A OUTPUT -m owner --uid-owner 4 -j MESHC_X\nCOMMIT\n")
    with pytest.raises(AssertionError, match="not a copy"):
        SECOND_PROXY_IDS.apply(odd)


def test_each_exception_is_needed() -> None:
    """Without its exceptions every such case differs, so none is dead weight."""
    for case in CASES:
        if case.exceptions:
            raw = normalise(istio_v4_restore(golden_text(case))), normalise(render(build_ruleset(case.spec)))
            assert raw[0] != raw[1], case.golden


# --- netns: both rule sets through iptables-restore and iptables-save -------------------------------

@pytest.mark.netns
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_iptables_save_equals_istio_golden_in_netns(lab: Lab, case: Case) -> None:
    """Istio's IPv4 input restored as istio-iptables does (run.go `executeIptablesRestoreCommand`,
    `iptables-restore --noflush`) in one fresh namespace, meshc's file installed with
    meshc-iptables-apply in another; the saved states must be equal up to naming and the case's
    exceptions."""
    lab.restore(istio_v4_restore(golden_text(case)), "--noflush", ns=lab.svc)
    lab.apply(render(build_ruleset(case.spec)))
    istio, meshc = expected_and_actual(case, normalise(lab.save(ns=lab.svc)), normalise(lab.save()))
    assert_same_rules(istio, meshc)


def test_docs_list_every_case_and_known_difference() -> None:
    docs = (REPO / "docs" / "iptables.md").read_text()
    fidelity = docs[docs.index("## Fidelity"):docs.index("## Differences from istio-iptables output")]
    assert ISTIO_COMMIT in fidelity
    for name in [*IDS, *NOT_COMPARED, NO_INBOUND_CAPTURE.name, SECOND_PROXY_IDS.name]:
        assert f"`{name}`" in fidelity or f"*{name}*" in fidelity, name
