"""Pass `bundle` (emit/bundle.py, `pipeline.bundle_pass`): Proxied -> CompileResult, per environment
a `Bundle`: the manifest files, kustomization.yaml, index.json, the Envoy files (envoy/: shared
clusters and listeners, the egress bootstrap, views and workload nodes) and the VM iptables
files. The driver runs it only when no pass before it left an error.

Whole bundles against goldens: tests/test_estate.py and tests/test_cases.py.
"""

from __future__ import annotations

import orjson
import yaml

from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_LISTENERS
from meshc.model.results import CompileResult
from meshc.pipeline import Assembled, bundle_pass, compile_estate, compile_passes, run_passes
from meshc.proxy.vmcapture import APPLY_FILE

from .estates import API, VM, context, estate, upto


def test_each_environment_gets_its_bundle() -> None:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"))
    ctx, _ = context(files)
    proxied = upto("proxy", files)
    step = bundle_pass(ctx, proxied)
    assert step.diagnostics == () and isinstance(step.value, CompileResult)
    env = step.value.envs["dev"]
    assert env.bundle is not None and env.bundle.env == "dev"
    assert env.artifacts == proxied.assembled.envs["dev"].artifacts
    names = list(env.bundle.files)
    views = [n for n in names if n.startswith("envoy/views/")]
    assert len(views) == 1
    assert names == sorted(names) and set(names) - set(views) == {
        "egress/api.yaml", "egress/db.yaml", "kustomization.yaml", "index.json", ENVOY_CLUSTERS, ENVOY_LISTENERS,
        ENVOY_BOOTSTRAP, "envoy/workloads/db-10-9-1-1.json", APPLY_FILE, "iptables/db-10-9-1-1.rules"}
    kustomization = yaml.safe_load(env.bundle.files["kustomization.yaml"])  # type: ignore[arg-type]
    assert kustomization["resources"] == ["egress/api.yaml", "egress/db.yaml"]
    index = orjson.loads(env.bundle.files["index.json"])  # type: ignore[arg-type]
    assert index["meshcBundle"] == 1 and index["environment"] == "dev"
    assert [(o["kind"], o["name"]) for o in index["objects"]] == [
        ("DestinationRule", "db"), ("ServiceEntry", "api"), ("ServiceEntry", "db"), ("WorkloadEntry", "db-10-9-1-1")]
    assert env.bundle.files[ENVOY_CLUSTERS] == env.envoy.file  # type: ignore[union-attr]


def test_nothing_is_bundled_after_a_unit_failed() -> None:
    """The driver stops after the pass that left an error (assemble reports the unit's V001)."""
    files = estate(a=API.replace("api.example.com", "mydb"), b=VM.replace("SELECTOR", "db"))
    ctx, tree = context(files)
    value, diags, _ = run_passes(ctx, compile_passes(), tree)
    assert isinstance(value, Assembled) and "V001" in [d.code for d in diags]
    result = compile_estate(tree)
    assert not result.ok and all(env.bundle is None for env in result.envs.values())
