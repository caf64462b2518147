"""The iptables artifact: traffic capture for VMs that run an Istio sidecar.

Input: one `CaptureSpec` per VM workload (a WorkloadEntry with a serviceAccount), built by the
pipeline from the declarations (`vm:` settings, istioctl's VM defaults otherwise).

Output: `render(build_ruleset(spec))`, the text of ``<workload>.rules`` (`rules_filename`), an
iptables-restore file equivalent to what istio-iptables programs in REDIRECT mode (istio-facts.md
6.3), but in meshc-owned chains: nat MESHC_INBOUND / MESHC_REDIRECT / MESHC_IN_REDIRECT /
MESHC_OUTPUT / MESHC_OUTPUT_DNS, raw MESHC_OUTPUT_DNS / MESHC_INBOUND (DNS conntrack zones) and,
in allow-list mode, filter MESHC_EGRESS. `APPLY_SCRIPT` is the POSIX sh program that installs a
rules file on a VM (docs/iptables.md).

Invariants:
* The model is typed (`meshc.iptables_model`): tables -> chains -> rules of match parts and a
  target; rule text is produced only by those types, here, in one place.
* Output is byte-deterministic: LF line ends, no dates or versions, same spec -> same bytes.
* Only chains named MESHC_* are declared; built-in chains get exactly one plain jump each
  (`-A <BUILTIN> [...] -j MESHC_*`) and their policies are never touched.
* Idempotent installation: every MESHC_* chain is declared with ``:CHAIN - [0:0]`` (which
  flushes it under ``--noflush``), and `APPLY_SCRIPT` deletes the jumps left by any earlier meshc
  file and drops MESHC_* chains no longer declared, in the same per-table commit. Applying the
  same file twice, or after an older meshc file, leaves one copy of every rule and one jump.
* IPv4 only (no ip6tables file); validation rejects IPv6 entries.

Diagnostics: `validate_spec` returns `Finding`s with codes T001-T015 (see
`meshc.iptables_validate`); `build_ruleset` raises `ValueError` for a spec with errors, which
the pipeline never passes because it validates first.
"""

from __future__ import annotations

from meshc.proxy.iptables.apply import APPLY_SCRIPT
from meshc.proxy.iptables.build import build_ruleset
from meshc.proxy.iptables.model import CaptureSpec, Destination, Ruleset
from meshc.proxy.iptables.validate import validate_spec

__all__ = ["APPLY_SCRIPT", "CaptureSpec", "Destination", "Ruleset", "build_ruleset", "render",
           "rules_filename", "validate_spec"]


def rules_filename(spec: CaptureSpec) -> str:
    return f"{spec.workload}.rules"


def render(ruleset: Ruleset) -> str:
    """iptables-restore text: per table, the MESHC_* chain declarations, then the rules chain
    by chain (meshc chains first, the jumps from built-in chains last), then COMMIT."""
    lines = [
        f"# meshc: iptables-restore rules (IPv4) for workload {ruleset.workload}",
        "# install with meshc-iptables-apply (docs/iptables.md): idempotent, keeps other tools' rules",
    ]
    for table in ruleset.tables:
        lines.append(f"*{table.name}")
        lines += [f":{chain.name} - [0:0]" for chain in table.chains if not chain.builtin]
        for chain in table.chains:
            lines += [" ".join(("-A", chain.name, *rule.args())) for rule in chain.rules]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
