"""The iptables artifact (meshc.iptables): rule order against istio-facts.md 6.3, variants,
validation, rendering; then, in network namespaces (marker `netns`), iptables-restore --test on
rendered files, real TCP/UDP traffic through the rules, and idempotent installation.

The netns tests need root, `ip` (iproute2) and iptables; they skip with the reason otherwise.
Each one builds its own namespaces (10.250.0.0/24) and removes them afterwards; the host's
network stack is never touched.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshc import api
from meshc.model.bundle import content
from meshc.model.diagnostics import Diagnostic, Severity
from meshc.proxy.iptables.rules import (
    APPLY_SCRIPT, CaptureSpec, Destination, build_ruleset, render, rules_filename, validate_spec,
)
from meshc.proxy.iptables.model import BUILTIN_CHAINS

from .conftest import REPO
from .netns_helpers import (
    SVC_IP, VM_IP, Lab, meaningful, parse_save,
)


def section(text: str, table: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    return lines[start + 1:lines.index("COMMIT", start)]


def chain_lines(lines: list[str], chain: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(f"-A {chain} ")]


# istioctl's VM defaults with one nameserver in the VM's /etc/resolv.conf (env.yaml vm.dnsServers).
VM = CaptureSpec("vm-a", dns_servers=(SVC_IP,))


def vm(**changes: object) -> CaptureSpec:
    return replace(VM, **changes)  # type: ignore[arg-type]


# istio-facts.md 6.3 for the istioctl VM defaults (-b '*' -d 22,15090,15021,15020 -i '*', DNS
# capture to the resolv.conf server 10.250.0.2), in Istio's generation order, ISTIO_ renamed to MESHC_.
ISTIO_ORDER = """\
-A MESHC_INBOUND -p tcp --dport 15008 -j RETURN
-A MESHC_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A MESHC_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j MESHC_INBOUND
-A MESHC_INBOUND -p tcp --dport 22 -j RETURN
-A MESHC_INBOUND -p tcp --dport 15090 -j RETURN
-A MESHC_INBOUND -p tcp --dport 15021 -j RETURN
-A MESHC_INBOUND -p tcp --dport 15020 -j RETURN
-A MESHC_INBOUND -p tcp -j MESHC_IN_REDIRECT
-A OUTPUT -j MESHC_OUTPUT
-A MESHC_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A MESHC_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 1337 -j MESHC_IN_REDIRECT
-A MESHC_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN
-A MESHC_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A MESHC_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j MESHC_IN_REDIRECT
-A MESHC_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 1337 -j RETURN
-A MESHC_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A MESHC_OUTPUT -j MESHC_OUTPUT_DNS
-A MESHC_OUTPUT_DNS -p tcp --dport 53 -d 10.250.0.2/32 -j REDIRECT --to-ports 15053
-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.250.0.2/32 -j REDIRECT --to-ports 15053
-A MESHC_OUTPUT -d 127.0.0.1/32 -j RETURN
-A MESHC_OUTPUT -j MESHC_REDIRECT
""".splitlines()

NAT_CHAINS = ["MESHC_INBOUND", "MESHC_REDIRECT", "MESHC_IN_REDIRECT", "MESHC_OUTPUT", "MESHC_OUTPUT_DNS"]


# --- unit: rule order and variants -------------------------------------------------------------

def test_default_vm_nat_table_is_istio_order_chain_by_chain() -> None:
    nat = section(render(build_ruleset(VM)), "nat")
    declared = [f":{c} - [0:0]" for c in NAT_CHAINS]
    by_chain = [ln for c in [*NAT_CHAINS, "PREROUTING", "OUTPUT"] for ln in chain_lines(ISTIO_ORDER, c)]
    assert nat == declared + by_chain
    for chain in [*NAT_CHAINS, "PREROUTING", "OUTPUT"]:  # per chain, Istio's order exactly
        assert chain_lines(nat, chain) == chain_lines(ISTIO_ORDER, chain)


def test_default_vm_raw_table_sets_dns_conntrack_zones() -> None:
    assert section(render(build_ruleset(VM)), "raw") == [
        ":MESHC_OUTPUT_DNS - [0:0]",
        ":MESHC_INBOUND - [0:0]",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1",
        "-A MESHC_OUTPUT_DNS -p udp --sport 15053 -m owner --uid-owner 1337 -j CT --zone 2",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -m owner --gid-owner 1337 -j CT --zone 1",
        "-A MESHC_OUTPUT_DNS -p udp --sport 15053 -m owner --gid-owner 1337 -j CT --zone 2",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.250.0.2/32 -j CT --zone 2",
        "-A MESHC_INBOUND -p udp --sport 53 -s 10.250.0.2/32 -j CT --zone 1",
        "-A OUTPUT -j MESHC_OUTPUT_DNS",
        "-A PREROUTING -j MESHC_INBOUND",
    ]


def test_file_layout_header_and_determinism() -> None:
    text = render(build_ruleset(VM))
    assert text == render(build_ruleset(CaptureSpec("vm-a", dns_servers=(SVC_IP,))))
    assert text.endswith("COMMIT\n") and "\r" not in text
    lines = text.splitlines()
    assert lines[:2] == [
        "# meshc: iptables-restore rules (IPv4) for workload vm-a",
        "# install with meshc-iptables-apply (docs/iptables.md): idempotent, keeps other tools' rules",
    ]
    assert [ln for ln in lines if ln.startswith("*")] == ["*raw", "*nat"]
    assert not re.search(r"\d{4}-\d\d-\d\d|v\d+\.\d+", text)
    assert rules_filename(VM) == "vm-a.rules"


def test_without_dns_capture_owner_rules_are_plain_and_no_raw_table() -> None:
    text = render(build_ruleset(CaptureSpec("vm-a", dns_capture=False)))
    assert "*raw" not in text and "MESHC_OUTPUT_DNS" not in text
    assert chain_lines(section(text, "nat"), "MESHC_OUTPUT") == [
        "-A MESHC_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
        "-A MESHC_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j MESHC_IN_REDIRECT",
        "-A MESHC_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A MESHC_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A MESHC_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j MESHC_IN_REDIRECT",
        "-A MESHC_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A MESHC_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A MESHC_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A MESHC_OUTPUT -j MESHC_REDIRECT",
    ]


def test_dns_servers_limit_redirect_and_zones_to_those_servers() -> None:
    text = render(build_ruleset(CaptureSpec("vm-a", dns_servers=("10.0.0.53", "10.0.0.54"))))
    assert chain_lines(section(text, "nat"), "MESHC_OUTPUT_DNS") == [
        "-A MESHC_OUTPUT_DNS -p tcp --dport 53 -d 10.0.0.53/32 -j REDIRECT --to-ports 15053",
        "-A MESHC_OUTPUT_DNS -p tcp --dport 53 -d 10.0.0.54/32 -j REDIRECT --to-ports 15053",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.0.0.53/32 -j REDIRECT --to-ports 15053",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.0.0.54/32 -j REDIRECT --to-ports 15053",
    ]
    raw = section(text, "raw")
    assert chain_lines(raw, "MESHC_OUTPUT_DNS")[4:] == [
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.0.0.53/32 -j CT --zone 2",
        "-A MESHC_OUTPUT_DNS -p udp --dport 53 -d 10.0.0.54/32 -j CT --zone 2",
    ]
    assert chain_lines(raw, "MESHC_INBOUND") == [
        "-A MESHC_INBOUND -p udp --sport 53 -s 10.0.0.53/32 -j CT --zone 1",
        "-A MESHC_INBOUND -p udp --sport 53 -s 10.0.0.54/32 -j CT --zone 1",
    ]


def test_dns_capture_without_servers_captures_no_dns_and_warns() -> None:
    """istio-iptables (tools/istio-iptables/pkg/capture/run.go `Run`, cmd/root.go; istio-facts.md
    6.2 `--capture-all-dns`) captures DNS only to the nameservers of /etc/resolv.conf and, with
    none, disables DNS capture entirely (no DNS chain, no port-53 tweaks in the owner rules). meshc
    cannot read the VM's resolv.conf, so with no `dns_servers` it writes what istio-iptables would
    write with an empty resolv.conf, and says so (T015) instead of capturing every port-53 packet,
    which would loop a local resolver's (systemd-resolved, dnsmasq) upstream queries back to the agent."""
    text = render(build_ruleset(CaptureSpec("vm-a")))
    assert text == render(build_ruleset(CaptureSpec("vm-a", dns_capture=False)))
    assert "--dport 53" not in text and "15053" not in text and "*raw" not in text
    (finding,) = validate_spec(CaptureSpec("vm-a"))
    assert (finding.code, finding.severity, finding.path) == ("T015", Severity.WARNING, ("dns_capture",))
    assert "vm.dnsServers" in finding.hint and "vm.dnsCapture: false" in finding.hint
    assert validate_spec(CaptureSpec("vm-a", dns_capture=False)) == []


def test_every_dns_redirect_names_a_server() -> None:
    """No rules file redirects DNS without `-d <server>`: there is no capture-all mode."""
    for spec in (VM, vm(dns_servers=("10.0.0.53", "10.0.0.54")), vm(egress_allow_list=())):
        for line in render(build_ruleset(spec)).splitlines():
            if "--to-ports 15053" in line or ("--zone 2" in line and "--dport 53" in line):
                assert re.search(r" -d \d+\.\d+\.\d+\.\d+/32 ", line), line
            if "--zone 1" in line and "--sport 53" in line:
                assert re.search(r" -s \d+\.\d+\.\d+\.\d+/32 ", line), line


def test_explicit_all_cidr_keeps_the_app_loopback_return_like_star() -> None:
    """istio-iptables' `separateV4V6` sets HasLoopBackIP only for an include CIDR whose address is a
    loopback address (capture/run.go; istio-facts.md 6.3 step 11b): `-i 0.0.0.0/0` keeps the
    `-o lo ! --uid-owner` RETURN exactly like `-i '*'`; only the last rule's text differs, and
    iptables-save prints `-d 0.0.0.0/0` as nothing (the netns test compares the saved state)."""
    for dns in (False, True):
        star = chain_lines(section(render(build_ruleset(vm(dns_capture=dns))), "nat"), "MESHC_OUTPUT")
        every = chain_lines(section(render(build_ruleset(vm(dns_capture=dns, include_outbound_cidrs=("0.0.0.0/0",)))),
                                    "nat"), "MESHC_OUTPUT")
        assert star[:-1] == every[:-1]
        assert (star[-1], every[-1]) == ("-A MESHC_OUTPUT -j MESHC_REDIRECT",
                                         "-A MESHC_OUTPUT -d 0.0.0.0/0 -j MESHC_REDIRECT")
        assert sum("! --uid-owner 1337 -j RETURN" in ln for ln in every) == 1
    for cidrs, kept in ((("0.0.0.0/1", "128.0.0.0/1"), True), (("10.0.0.0/8",), True),
                        (("127.0.0.0/8",), False), (("10.0.0.0/8", "127.0.0.1/32"), False)):
        out = render(build_ruleset(vm(include_outbound_cidrs=cidrs)))
        assert ("! --uid-owner 1337 -j RETURN" in out) is kept, cidrs


def test_inbound_port_list_captures_only_those_ports() -> None:
    nat = section(render(build_ruleset(CaptureSpec("vm-a", inbound_ports=(8080, 9090)))), "nat")
    assert chain_lines(nat, "MESHC_INBOUND") == [
        "-A MESHC_INBOUND -p tcp --dport 15008 -j RETURN",
        "-A MESHC_INBOUND -p tcp --dport 8080 -j MESHC_IN_REDIRECT",
        "-A MESHC_INBOUND -p tcp --dport 9090 -j MESHC_IN_REDIRECT",
    ]


def test_outbound_includes_and_excludes_in_istio_positions() -> None:
    spec = CaptureSpec("vm-a", dns_capture=False, exclude_outbound_ports=(25,), include_outbound_ports=(3306,),
                       exclude_outbound_cidrs=("10.0.0.0/8", "192.168.1.1"), include_outbound_cidrs=("10.1.0.0/16",))
    out = chain_lines(section(render(build_ruleset(spec)), "nat"), "MESHC_OUTPUT")
    assert out[:3] == [
        "-A MESHC_OUTPUT -p tcp --dport 25 -j RETURN",
        "-A MESHC_OUTPUT -p udp --dport 25 -j RETURN",
        "-A MESHC_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
    ]
    assert out[-5:] == [
        "-A MESHC_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A MESHC_OUTPUT -d 10.0.0.0/8 -j RETURN",
        "-A MESHC_OUTPUT -d 192.168.1.1/32 -j RETURN",
        "-A MESHC_OUTPUT -p tcp --dport 3306 -j MESHC_REDIRECT",
        "-A MESHC_OUTPUT -d 10.1.0.0/16 -j MESHC_REDIRECT",
    ]


def test_no_outbound_capture_keeps_owner_rules_but_no_redirect_jump() -> None:
    out = chain_lines(section(render(build_ruleset(CaptureSpec("vm-a", include_outbound_cidrs=()))), "nat"),
                      "MESHC_OUTPUT")
    assert out[-1] == "-A MESHC_OUTPUT -d 127.0.0.1/32 -j RETURN"
    assert not any(ln.endswith("-j MESHC_REDIRECT") for ln in out)


def test_loopback_in_include_cidrs_drops_the_app_loopback_return() -> None:
    spec = CaptureSpec("vm-a", dns_capture=False, include_outbound_cidrs=("127.1.2.3/32",))
    out = chain_lines(section(render(build_ruleset(spec)), "nat"), "MESHC_OUTPUT")
    assert not any("! --uid-owner" in ln or "! --gid-owner" in ln for ln in out)
    assert out[-1] == "-A MESHC_OUTPUT -d 127.1.2.3/32 -j MESHC_REDIRECT"


def test_allow_list_filter_table() -> None:
    spec = CaptureSpec("vm-a", dns_servers=("10.0.0.53",), egress_allow_list=(
        Destination("10.250.0.2", 8080), Destination("10.9.0.0/16", 5353, "udp")))
    assert section(render(build_ruleset(spec)), "filter") == [
        ":MESHC_EGRESS - [0:0]",
        "-A MESHC_EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A MESHC_EGRESS -o lo -m conntrack ! --ctstate DNAT -j RETURN",
        "-A MESHC_EGRESS -m owner --uid-owner 1337 -j RETURN",
        "-A MESHC_EGRESS -m owner --gid-owner 1337 -j RETURN",
        "-A MESHC_EGRESS -p udp -m conntrack --ctorigdst 10.0.0.53/32 --ctorigdstport 53 -j RETURN",
        "-A MESHC_EGRESS -p tcp -m conntrack --ctorigdst 10.0.0.53/32 --ctorigdstport 53 -j RETURN",
        "-A MESHC_EGRESS -p tcp -m conntrack --ctorigdst 10.250.0.2/32 --ctorigdstport 8080 -j RETURN",
        "-A MESHC_EGRESS -p udp -m conntrack --ctorigdst 10.9.0.0/16 --ctorigdstport 5353 -j RETURN",
        "-A MESHC_EGRESS -p tcp -j REJECT --reject-with tcp-reset",
        "-A MESHC_EGRESS -j REJECT --reject-with icmp-port-unreachable",
        "-A OUTPUT -j MESHC_EGRESS",
    ]


def test_custom_proxy_ids_and_duplicates() -> None:
    spec = vm(proxy_uid=999, proxy_gid=998, exclude_inbound_ports=(22, 22),
                       egress_allow_list=(Destination("10.0.0.1", 80), Destination("10.0.0.1", 80)))
    text = render(build_ruleset(spec))
    assert "1337" not in text and "--uid-owner 999" in text and "--gid-owner 998" in text
    assert text.count("--dport 22 ") == 1 and text.count("--ctorigdstport 80 ") == 1
    assert [f.code for f in validate_spec(spec)] == ["T009", "T009"]


# --- unit: validation --------------------------------------------------------------------------

BAD = [
    (vm(workload="VM_A"), ["T001"]),
    (vm(inbound_ports=(0, 70000)), ["T002", "T002"]),
    (vm(exclude_outbound_ports=(-1,), include_outbound_ports=(True,)), ["T002", "T002"]),
    (vm(include_outbound_cidrs=("10.0.0.0/33",), exclude_outbound_cidrs=("example.com",)),
     ["T003", "T003"]),
    (vm(dns_servers=("10.0.0.0/24",)), ["T003"]),
    (vm(exclude_outbound_cidrs=("*",)), ["T004"]),
    (vm(include_outbound_cidrs=("*", "10.0.0.0/8")), ["T004"]),
    (vm(egress_allow_list=(Destination("*", 80),)), ["T004"]),
    (vm(exclude_outbound_cidrs=("fd00::/8",), dns_servers=("::1",)), ["T005", "T005"]),
    (vm(egress_allow_list=(Destination("10.0.0.1", 80, "sctp"), Destination("10.0.0.1", 0))),
     ["T006", "T002"]),
    (vm(proxy_uid=-1, proxy_gid=2 ** 32), ["T007", "T007"]),
    (vm(proxy_uid=0), ["T008"]),
    (vm(include_outbound_cidrs=("10.1.2.3/16",)), ["T010"]),
    (vm(inbound_ports=(22,), exclude_inbound_ports=(22,)), ["T011"]),
    (vm(include_outbound_ports=(25,), exclude_outbound_ports=(25,)), ["T011"]),
    (vm(inbound_ports=(15006,)), ["T012"]),
    (vm(egress_allow_list=()), ["T013"]),
    (vm(dns_capture=False, dns_servers=("10.0.0.53",)), ["T014"]),
    (CaptureSpec("vm-a"), ["T015"]),
    (CaptureSpec("vm-a", dns_servers=("10.0.0.53", "10.0.0.53")), ["T009"]),
]


@pytest.mark.parametrize(("spec", "codes"), BAD, ids=[f"{c[0]}-{i}" for i, (_, c) in enumerate(BAD)])
def test_validate_spec_reports(spec: CaptureSpec, codes: list[str]) -> None:
    findings = validate_spec(spec)
    assert [f.code for f in findings] == codes
    assert all(f.path and f.message for f in findings)
    errors = any(f.severity >= Severity.ERROR for f in findings)
    if errors:
        with pytest.raises(ValueError, match=codes[0]):
            build_ruleset(spec)
    else:
        build_ruleset(spec)


def test_validate_spec_accepts_defaults_and_finding_paths() -> None:
    assert validate_spec(VM) == []
    (finding,) = validate_spec(vm(egress_allow_list=(Destination("10.0.0.1", 80, "icmp"),)))
    assert (finding.code, finding.severity) == ("T006", Severity.ERROR)
    assert finding.path == ("egress_allow_list", 0, "protocol")


# --- unit: invariants over many specs ------------------------------------------------------------

PORTS = st.lists(st.integers(1, 65535), max_size=4).map(tuple)
CIDRS = st.lists(st.ip_addresses(v=4).map(str) | st.sampled_from(["10.0.0.0/8", "192.168.0.0/16"]), max_size=3)
SPECS = st.builds(
    CaptureSpec, workload=st.sampled_from(["vm-a", "db.prod"]), inbound_ports=PORTS, exclude_inbound_ports=PORTS,
    include_outbound_cidrs=st.just(("*",)) | CIDRS.map(tuple), exclude_outbound_cidrs=CIDRS.map(tuple),
    include_outbound_ports=PORTS, exclude_outbound_ports=PORTS, dns_capture=st.booleans(),
    dns_servers=st.lists(st.ip_addresses(v=4).map(str), max_size=2).map(tuple),
    proxy_uid=st.integers(1, 65535), proxy_gid=st.integers(1, 65535),
    egress_allow_list=st.none() | st.lists(st.builds(Destination, cidr=st.ip_addresses(v=4).map(str),
                                                     port=st.integers(1, 65535),
                                                     protocol=st.sampled_from(["tcp", "udp"])), max_size=3).map(tuple),
)


@example(CaptureSpec("vm-a", inbound_ports=(), exclude_inbound_ports=(15008,), proxy_uid=1, proxy_gid=1))
@settings(max_examples=150, deadline=None)
@given(SPECS)
def test_every_valid_spec_renders_a_well_formed_file(spec: CaptureSpec) -> None:
    if any(f.severity >= Severity.ERROR for f in validate_spec(spec)):
        return
    text = render(build_ruleset(spec))
    assert text == render(build_ruleset(spec))
    for table in ("raw", "nat", "filter"):
        if f"*{table}" not in text:
            continue
        lines = section(text, table)
        declared = {ln[1:].split()[0] for ln in lines if ln.startswith(":")}
        assert all(name.startswith("MESHC_") for name in declared)
        rules = [ln for ln in lines if ln.startswith("-A ")]
        assert len(rules) == len(set(rules)), "a rule appears twice"
        for builtin in BUILTIN_CHAINS:  # at most one jump from each built-in chain, always into MESHC_
            jumps = chain_lines(lines, builtin)
            assert len(jumps) <= 1 and all(re.search(r"-j MESHC_\w+$", j) for j in jumps)
        targets = {m for ln in rules for m in re.findall(r"-j (MESHC_\w+)", ln)}
        assert targets <= declared


def test_docs_show_the_apply_script_verbatim() -> None:
    assert APPLY_SCRIPT in (REPO / "docs" / "iptables.md").read_text()


# --- build: env.yaml vm: settings and the declarations -> rules files ----------------------------

VM_DECL = """\
services:
  - name: orders
    hosts: [orders.example.com]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    ports:
      - {number: 8080, protocol: HTTP}
      - {number: 9000, protocol: TCP}
    endpoints:
      - address: 10.1.0.5
        name: a
        serviceAccount: orders
        ports: {http-8080: 18080}
      - address: 10.1.0.6
        name: b
        serviceAccount: orders
"""


def compile_vms(root: Path, vm_block: str) -> tuple[dict[str, str], list[Diagnostic]]:
    (root / "environments" / "base").mkdir(parents=True)
    (root / "environments" / "dev").mkdir()
    (root / "environments" / "base" / "vm.yaml").write_text(VM_DECL)
    (root / "environments" / "dev" / "env.yaml").write_text(f"name: dev\nnamespace: egress\n{vm_block}")
    _, result = api.compile_repo(root, use_cache=False)
    env = result.envs.get("dev")
    files = env.bundle.files if env is not None and env.bundle is not None else {}
    rules = {k.removeprefix("iptables/"): content(v).decode() for k, v in files.items() if k.endswith(".rules")}
    return rules, [d for d in result.diagnostics if d.code.startswith("T")]


def where(diag: Diagnostic, root: Path) -> str:
    assert diag.position is not None
    return f"{diag.position.file.removeprefix(str(root) + '/')}:{diag.position.line}"


def test_inbound_ports_are_the_workload_entry_ports_or_all(tmp_path: Path) -> None:
    """istioctl's VM bootstrap (istioctl/pkg/workload/workload.go `createClusterEnv`; istio-facts.md
    6.2): ISTIO_INBOUND_PORTS is the WorkloadGroup template's `ports` values, or `*` when it has
    none, not the Service's ports. A WorkloadEntry with `ports` captures those target ports; one
    without captures every port except the excluded ones (22, 15090, 15021, 15020)."""
    rules, _ = compile_vms(tmp_path, "vm: {dnsServers: [10.0.0.53]}\n")
    a = chain_lines(section(rules["orders-a.rules"], "nat"), "MESHC_INBOUND")
    assert a == ["-A MESHC_INBOUND -p tcp --dport 15008 -j RETURN",
                 "-A MESHC_INBOUND -p tcp --dport 18080 -j MESHC_IN_REDIRECT"]
    b = chain_lines(section(rules["orders-b.rules"], "nat"), "MESHC_INBOUND")
    assert b == chain_lines(ISTIO_ORDER, "MESHC_INBOUND")
    assert "--dport 8080 " not in rules["orders-b.rules"] and "--dport 9000 " not in rules["orders-b.rules"]


def test_env_yaml_dns_servers_limit_dns_capture(tmp_path: Path) -> None:
    rules, diags = compile_vms(tmp_path, "vm:\n  dnsCapture: true\n  dnsServers: [10.0.0.53, 10.0.0.54]\n")
    assert diags == []
    nat = section(rules["orders-b.rules"], "nat")
    assert chain_lines(nat, "MESHC_OUTPUT_DNS") == [
        f"-A MESHC_OUTPUT_DNS -p {p} --dport 53 -d 10.0.0.{n}/32 -j REDIRECT --to-ports 15053"
        for p in ("tcp", "udp") for n in (53, 54)]


def test_dns_capture_without_dns_servers_is_one_warning_at_env_yaml(tmp_path: Path) -> None:
    rules, diags = compile_vms(tmp_path, "vm:\n  egressAllowList: false\n  dnsCapture: true\n")
    (diag,) = diags  # two VMs, one setting: one finding
    assert (diag.code, diag.severity, where(diag, tmp_path)) == ("T015", Severity.WARNING,
                                                                 "environments/dev/env.yaml:5")
    assert "vm.dnsServers" in diag.hint
    assert sorted(rules) == ["orders-a.rules", "orders-b.rules"]
    assert all("--dport 53" not in text and "*raw" not in text for text in rules.values())


def test_bad_dns_servers_are_errors_at_their_env_yaml_line(tmp_path: Path) -> None:
    rules, diags = compile_vms(tmp_path, "vm:\n  dnsServers:\n    - 10.0.0.53\n    - 10.0.0.0/24\n    - fd00::53\n")
    assert [(d.code, d.severity, where(d, tmp_path)) for d in diags] == [
        ("T003", Severity.ERROR, "environments/dev/env.yaml:6"),
        ("T005", Severity.ERROR, "environments/dev/env.yaml:7")]
    assert rules == {}


# --- netns: iptables-restore, traffic, idempotency ----------------------------------------------

RESTORE_SPECS = {
    "vm-default": VM,
    "no-dns": CaptureSpec("vm-a", dns_capture=False),
    "dns-capture-no-servers": CaptureSpec("vm-a"),
    "include-all-explicit": vm(include_outbound_cidrs=("0.0.0.0/0",)),
    "dns-servers": CaptureSpec("vm-a", dns_servers=("10.250.0.53", "10.250.0.54")),
    "inbound-list": CaptureSpec("vm-a", inbound_ports=(8080, 9090)),
    "outbound-tuning": CaptureSpec("vm-a", exclude_outbound_ports=(25, 587), include_outbound_ports=(3306,),
                                   exclude_outbound_cidrs=("10.0.0.0/8",), include_outbound_cidrs=("10.1.0.0/16",)),
    "loopback-include": CaptureSpec("vm-a", include_outbound_cidrs=("127.1.2.3/32",)),
    "allow-list": CaptureSpec("vm-a", dns_servers=("10.250.0.53",), egress_allow_list=(
        Destination(SVC_IP, 8080), Destination("10.9.0.0/16", 5353, "udp"))),
    "allow-list-empty-no-capture": CaptureSpec("vm-a", include_outbound_cidrs=(), egress_allow_list=()),
    "other-ids": CaptureSpec("vm-a", proxy_uid=999, proxy_gid=998),
}


@pytest.mark.netns
@pytest.mark.parametrize("name", sorted(RESTORE_SPECS))
def test_iptables_restore_accepts_rendered_file(lab: Lab, name: str) -> None:
    lab.restore(render(build_ruleset(RESTORE_SPECS[name])), "--test")


def svc_servers(lab: Lab) -> None:
    lab.serve(lab.svc, "svc", "tcp:8080", "tcp:9090", "udp:53", "udp:5353")


def proxy(lab: Lab) -> None:
    """Stand-ins for Envoy (15001 out, 15006 in) and the agent's DNS proxy, as uid/gid 1337. Like
    the real agent, the DNS stand-in listens on localhost, so its answers leave from the address
    the redirect chose and conntrack maps them back to the server the client asked."""
    lab.serve(lab.vm, "proxy", "tcp:15001", "tcp:15006", "udp:127.0.0.1:15053", uid=1337)


@pytest.mark.netns
def test_outbound_is_captured_except_for_the_proxy_uid_and_gid(lab: Lab) -> None:
    lab.apply(render(build_ruleset(VM)))
    svc_servers(lab)
    proxy(lab)
    assert lab.call(lab.vm, SVC_IP, 8080) == f"proxy port=15001 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 8080, uid=1000, gid=1000) == f"proxy port=15001 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 8080, uid=1337, gid=1337) == f"svc port=8080 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 8080, uid=1000, gid=1337) == f"svc port=8080 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 8080, uid=1337, gid=1000) == f"svc port=8080 orig={SVC_IP}:8080"


@pytest.mark.netns
def test_outbound_exclusions_bypass_capture(lab: Lab) -> None:
    lab.apply(render(build_ruleset(CaptureSpec("vm-a", exclude_outbound_ports=(9090,)))))
    svc_servers(lab)
    proxy(lab)
    assert lab.call(lab.vm, SVC_IP, 9090) == f"svc port=9090 orig={SVC_IP}:9090"
    assert lab.call(lab.vm, SVC_IP, 8080).startswith("proxy port=15001")


@pytest.mark.netns
def test_inbound_capture_leaves_excluded_ports_alone(lab: Lab) -> None:
    lab.apply(render(build_ruleset(VM)))
    lab.serve(lab.vm, "app", "tcp:22", "tcp:8080", "tcp:15008")
    proxy(lab)
    assert lab.call(lab.svc, VM_IP, 22) == f"app port=22 orig={VM_IP}:22"
    assert lab.call(lab.svc, VM_IP, 15008) == f"app port=15008 orig={VM_IP}:15008"
    assert lab.call(lab.svc, VM_IP, 8080) == f"proxy port=15006 orig={VM_IP}:8080"


@pytest.mark.netns
def test_dns_is_redirected_to_the_agent_but_not_for_the_agent(lab: Lab) -> None:
    lab.apply(render(build_ruleset(VM)))
    svc_servers(lab)
    proxy(lab)
    assert lab.call(lab.vm, SVC_IP, 53, proto="udp") == "proxy port=15053"
    assert lab.call(lab.vm, SVC_IP, 53, proto="udp", uid=1337, gid=1337) == "svc port=53"
    assert lab.call(lab.vm, SVC_IP, 5353, proto="udp") == "svc port=5353"


@pytest.mark.netns
def test_dns_is_captured_only_to_the_declared_servers(lab: Lab) -> None:
    """As istio-iptables with resolv.conf servers (capture/run.go `SetupDNSRedir`): DNS to another
    server (a local resolver's upstream) is left alone; with no server known nothing is captured."""
    svc_servers(lab)
    proxy(lab)
    for spec in (vm(dns_servers=("10.250.0.99",)), CaptureSpec("vm-a")):
        lab.apply(render(build_ruleset(spec)))
        assert lab.call(lab.vm, SVC_IP, 53, proto="udp") == "svc port=53"
        assert lab.call(lab.vm, SVC_IP, 8080) == f"proxy port=15001 orig={SVC_IP}:8080"


@pytest.mark.netns
def test_explicit_all_cidr_equals_star(lab: Lab) -> None:
    """istio-iptables gives `-i '*'` and `-i 0.0.0.0/0` the same state (HasLoopBackIP is false for
    both, capture/run.go `separateV4V6`; iptables-save prints `-d 0.0.0.0/0` as no match): app-to-app
    traffic over lo returns, the rest goes to Envoy."""
    lab.serve(lab.vm, "local", "tcp:7000")
    proxy(lab)
    saved = []
    for cidrs in (("*",), ("0.0.0.0/0",)):
        lab.apply(render(build_ruleset(vm(include_outbound_cidrs=cidrs))))
        saved.append(meaningful(lab.save()))
        assert lab.call(lab.vm, VM_IP, 7000) == f"local port=7000 orig={VM_IP}:7000"
        assert lab.call(lab.vm, SVC_IP, 8080) == f"proxy port=15001 orig={SVC_IP}:8080"
    assert saved[0] == saved[1]


ALLOW = (Destination(SVC_IP, 8080), Destination(SVC_IP, 5353, "udp"))


@pytest.mark.netns
def test_allow_list_with_capture_judges_the_original_destination(lab: Lab) -> None:
    lab.apply(render(build_ruleset(vm(egress_allow_list=ALLOW))))
    svc_servers(lab)
    proxy(lab)
    assert lab.call(lab.vm, SVC_IP, 8080) == f"proxy port=15001 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 9090) == "REFUSED"
    assert lab.call(lab.vm, SVC_IP, 9090, uid=1337, gid=1337) == f"svc port=9090 orig={SVC_IP}:9090"
    assert lab.call(lab.vm, SVC_IP, 53, proto="udp") == "proxy port=15053"
    assert lab.call(lab.vm, SVC_IP, 5353, proto="udp") == "svc port=5353"


@pytest.mark.netns
def test_allow_list_without_capture_refuses_undeclared_destinations(lab: Lab) -> None:
    spec = CaptureSpec("vm-a", include_outbound_cidrs=(), dns_capture=False, egress_allow_list=ALLOW[:1])
    lab.apply(render(build_ruleset(spec)))
    svc_servers(lab)
    lab.serve(lab.vm, "local", "tcp:7000")
    assert lab.call(lab.vm, SVC_IP, 8080) == f"svc port=8080 orig={SVC_IP}:8080"
    assert lab.call(lab.vm, SVC_IP, 9090) == "REFUSED"
    assert lab.call(lab.vm, SVC_IP, 5353, proto="udp") == "EPERM"  # UDP: the send itself fails
    assert lab.call(lab.vm, SVC_IP, 53, proto="udp") == "svc port=53"
    assert lab.call(lab.vm, "127.0.0.1", 7000) == "local port=7000 orig=127.0.0.1:7000"
    assert lab.call(lab.vm, VM_IP, 7000) == f"local port=7000 orig={VM_IP}:7000"


FOREIGN = """*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
-A OUTPUT -p tcp --dport 9999 -j ACCEPT
COMMIT
"""

# What an older meshc might have left: other jump forms (-I, matches, from PREROUTING), a chain
# the new file no longer has (MESHC_LEGACY), a table it no longer uses (mangle), and - because it
# was installed with plain `iptables-restore --noflush` twice - every jump twice.
OLDER = """*nat
:MESHC_OUTPUT - [0:0]
:MESHC_REDIRECT - [0:0]
:MESHC_LEGACY - [0:0]
-A MESHC_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A MESHC_LEGACY -p tcp --dport 8080 -j MESHC_REDIRECT
-A MESHC_OUTPUT -j MESHC_LEGACY
-I OUTPUT 1 -p tcp -j MESHC_OUTPUT
-A PREROUTING -p tcp -j MESHC_LEGACY
COMMIT
*mangle
:MESHC_MARK - [0:0]
-A MESHC_MARK -j MARK --set-mark 7
-A OUTPUT -j MESHC_MARK
COMMIT
"""


def meshc_jumps(save: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for table, chains in parse_save(save).items():
        for chain in BUILTIN_CHAINS & set(chains):
            n = sum(1 for r in chains[chain][1] if " -j MESHC_" in r or " -g MESHC_" in r)
            if n:
                counts[(table, chain)] = n
    return counts


@pytest.mark.netns
def test_applying_twice_gives_identical_iptables_save(lab: Lab) -> None:
    spec = vm(egress_allow_list=ALLOW)
    lab.restore(FOREIGN, "--noflush")
    lab.apply(render(build_ruleset(spec)))
    once = lab.save()
    lab.apply(render(build_ruleset(spec)))
    assert lab.save() == once
    assert meshc_jumps(once) == {("raw", "OUTPUT"): 1, ("raw", "PREROUTING"): 1, ("nat", "OUTPUT"): 1,
                                 ("nat", "PREROUTING"): 1, ("filter", "OUTPUT"): 1}


@pytest.mark.netns
def test_plain_noflush_restore_would_duplicate_jumps(lab: Lab) -> None:
    """Why APPLY_SCRIPT exists: the meshc chains are flushed by their declarations, the jumps are not."""
    text = render(build_ruleset(VM))
    lab.restore(text, "--noflush")
    lab.restore(text, "--noflush")
    state = parse_save(lab.save())
    assert meshc_jumps(lab.save())[("nat", "OUTPUT")] == 2
    assert len(state["nat"]["MESHC_OUTPUT"][1]) == len(chain_lines(section(text, "nat"), "MESHC_OUTPUT"))


@pytest.mark.netns
def test_apply_over_an_older_meshc_file_equals_a_fresh_install(lab: Lab) -> None:
    new = render(build_ruleset(CaptureSpec("vm-a", dns_capture=False)))
    lab.restore(FOREIGN, "--noflush")
    foreign = meaningful(lab.save())
    lab.apply(new)
    fresh = meaningful(lab.save())
    lab.apply("")  # an empty file removes everything meshc installed
    assert meaningful(lab.save()) == foreign
    lab.restore(OLDER, "--noflush")
    lab.restore(OLDER, "--noflush")
    assert meshc_jumps(lab.save())[("nat", "OUTPUT")] == 2
    lab.apply(render(build_ruleset(vm(egress_allow_list=ALLOW))))  # DNS + filter too
    lab.apply(new)
    assert meaningful(lab.save()) == fresh
    assert meshc_jumps(lab.save()) == {("nat", "OUTPUT"): 1, ("nat", "PREROUTING"): 1}
    assert "MESHC_LEGACY" not in lab.save() and "MESHC_MARK" not in lab.save()


def test_a_bad_dns_server_is_an_error_before_any_vm_exists() -> None:
    """env.yaml's vm: DNS settings are checked even when no service has VM workloads yet: a
    mistake is reported at its line now, not on the day the first VM is declared."""
    from meshc.files.tree import MemoryTree
    from meshc.pipeline import compile_estate

    env = "name: dev\nnamespace: egress\nvm:\n  dnsCapture: true\n  dnsServers: [not-an-ip]\n"
    service = "services:\n  - name: api\n    hosts: [api.example.com]\n    ports:\n      - {number: 443, protocol: HTTPS}\n"
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": env, "environments/base/a.yaml": service}))
    errors = [d for d in result.diagnostics if d.severity.label == "error"]
    assert [d.code for d in errors] == ["T003"] and errors[0].position is not None
    assert (errors[0].position.file, errors[0].position.line) == ("environments/dev/env.yaml", 5)
    warnings = [d.code for d in result.diagnostics if d.severity.label == "warning"]
    assert "T015" not in warnings  # capture without servers matters only once VMs exist
