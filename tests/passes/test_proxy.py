"""Pass `proxy` (proxy/, `pipeline.proxy_pass`): Assembled -> Proxied, per environment the Envoy
bootstrap with its sources table (bootstrap path -> ObjectId) and the iptables rules of the VM hosts
(T-codes when env.yaml's vm: settings cannot be captured).

The proxy's own tests are kept beside the proxy code's owners and are not moved here:
tests/test_envoy.py (clusters, listeners, TLS against goldens in tests/fixtures/envoy/),
tests/test_iptables.py (rules like istio-iptables, iptables-restore in network namespaces),
tests/test_rules.py (Istio webhook rules and analyzers), tests/test_proxy_artifacts.py (emitted
bootstraps and rulesets of the example estate), tests/test_settings.py (proxy and VM settings).
This module holds the pass's typed contract only.
"""

from __future__ import annotations

from meshc.model.diagnostics import has_errors
from meshc.model.ids import ObjectId
from meshc.pipeline import Proxied, proxy_pass
from meshc.proxy.vmcapture import APPLY_FILE

from .estates import API, VM, context, estate, upto

VM_T003 = "name: dev\nnamespace: egress\nvm:\n  includeOutboundCIDRs: [10.0.0.0/8, corp-net]\n"


def test_each_environment_gets_its_envoy_bootstrap_and_vm_rules() -> None:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"))
    ctx, _ = context(files)
    assembled = upto("assemble", files)
    step = proxy_pass(ctx, assembled)
    assert not has_errors(step.diagnostics) and isinstance(step.value, Proxied)
    env = step.value.assembled.envs["dev"]
    assert env.services == assembled.envs["dev"].services and env.envoy is not None
    clusters = {c["name"] for c in env.envoy.bootstrap()["static_resources"]["clusters"]}
    assert {"outbound|443||api.example.com", "outbound|5432||db.example.com"} <= clusters
    assert ObjectId("ServiceEntry", "egress", "db") in set(env.envoy.sources.values())
    assert sorted(step.value.vm_files["dev"]) == sorted([APPLY_FILE, "iptables/db-10-9-1-1.rules"])


def test_an_environment_without_vm_hosts_has_no_iptables_files() -> None:
    files = estate(a=API)
    ctx, _ = context(files)
    step = proxy_pass(ctx, upto("assemble", files))
    assert step.value is not None and step.value.vm_files == {"dev": {}}


def test_vm_settings_that_cannot_be_captured_are_t003_at_the_vm_endpoint() -> None:
    files = estate(b=VM.replace("SELECTOR", "db"), files={"environments/dev/env.yaml": VM_T003})
    ctx, _ = context(files)
    step = proxy_pass(ctx, upto("assemble", files))
    (t003,) = [d for d in step.diagnostics if d.code == "T003"]  # warnings about the VM may come too
    assert has_errors(step.diagnostics) and t003.severity.label == "error"
    pos = t003.position
    assert pos is not None and (pos.file, pos.line) == ("environments/base/b.yaml", 13)
    assert step.value is not None and list(step.value.vm_files["dev"]) == [APPLY_FILE]  # no rules for that VM
