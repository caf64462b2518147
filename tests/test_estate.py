"""The example estate: goldens for every environment, determinism, kustomize, CRD validity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from meshc import api
from meshc.emit.bundle import read_bundle

from .conftest import REPO, check_golden_dir

ENVS = ["dev", "edge", "prod", "staging"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    outcome = api.build(REPO, out=out)
    assert outcome.ok, [str(d) for d in outcome.diagnostics]
    return out


@pytest.mark.parametrize("env", ENVS)
def test_estate_golden(built: Path, env: str) -> None:
    bundle = read_bundle(built / env)
    check_golden_dir(REPO / "tests" / "goldens" / "estate" / env, bundle.files)


def test_build_twice_is_byte_identical(built: Path, tmp_path: Path) -> None:
    outcome = api.build(REPO, out=tmp_path)
    assert outcome.ok
    for env in ENVS:
        assert read_bundle(tmp_path / env).files == read_bundle(built / env).files


def test_every_object_is_listed_in_index_and_kustomization(built: Path) -> None:
    for env in ENVS:
        bundle = read_bundle(built / env)
        kust = yaml.safe_load(bundle.files["kustomization.yaml"])
        manifests = {p for p in bundle.files if p.endswith(".yaml") and p != "kustomization.yaml"}
        assert set(kust["resources"]) == manifests
        docs = [d for p in manifests for d in yaml.safe_load_all(bundle.files[p])]
        index = yaml.safe_load(bundle.files["index.json"])
        listed = {(o["kind"], o["namespace"], o["name"]) for o in index["objects"]}
        assert listed == {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs}
        assert all(o["source"].startswith("environments/") for o in index["objects"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_accepts_bundle(built: Path) -> None:
    for env in ENVS:
        run = subprocess.run(["kubectl", "kustomize", str(built / env)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        kinds = {d["kind"] for d in yaml.safe_load_all(run.stdout)}
        assert kinds >= {"ServiceEntry", "DestinationRule"}, (env, kinds)
        assert kinds <= {"ServiceEntry", "WorkloadEntry", "DestinationRule", "Gateway", "VirtualService",
                         "AuthorizationPolicy", "Sidecar", "BackendTLSPolicy"}, (env, kinds)
    # every egress kind of the example estate reaches kubectl: prod's gateway path, edge's waypoint
    prod = {d["kind"] for d in yaml.safe_load_all(
        subprocess.run(["kubectl", "kustomize", str(built / "prod")], capture_output=True, text=True).stdout)}
    assert {"Gateway", "VirtualService", "AuthorizationPolicy", "Sidecar", "WorkloadEntry"} <= prod


def test_env_specific_services(built: Path) -> None:
    def services(env: str) -> set[str]:
        index = yaml.safe_load((built / env / "index.json").read_text())
        return {o["service"] for o in index["objects"]}

    assert "sandbox-egress" in services("dev") and "sandbox-egress" not in services("prod")
    assert "fraud-scoring" in services("prod") and "fraud-scoring" not in services("staging")
    assert "loadtest-sink" in services("staging")
