"""meshc as users install it: the shipped CRD schemas, meshc.yaml's istio:/crds:, `meshc version`,
`meshc init`, and a wheel installed into a fresh virtual environment in an empty folder.

The shipped schemas are compared with their source, the official CRD files
(shared/schemas/istio-crds-all.yaml and gateway-api-crds.yaml beside the repository, or
MESHC_FULL_CRDS / MESHC_FULL_GATEWAY_CRDS); those two tests skip with a message when the files
are absent: a lone clone needs nothing outside itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from click.testing import CliRunner

from meshc import api
from meshc.cli.main import main
from meshc.check.schema.crd import CrdSet
from meshc.cli.init import scaffold_files
from meshc.model.release import DEFAULT_ISTIO, shipped_crds, shipped_releases

from . import test_crd
from .conftest import FULL_CRDS, REPO

FULL_GATEWAY = Path(os.environ.get("MESHC_FULL_GATEWAY_CRDS", FULL_CRDS.parent / "gateway-api-crds.yaml"))
sys.path.insert(0, str(REPO / "tools"))
import gen_crd_schemas  # noqa: E402


def _need_full_crds() -> None:
    if not (FULL_CRDS.is_file() and FULL_GATEWAY.is_file()):
        pytest.skip(f"the official CRD files are not beside the repository ({FULL_CRDS}, {FULL_GATEWAY}); "
                    "set MESHC_FULL_CRDS and MESHC_FULL_GATEWAY_CRDS to compare the shipped schemas with them")


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


# --- the shipped schemas ---------------------------------------------------------------------------

def _objects() -> Iterator[tuple[str, Any]]:
    """Every object the test suite and the example estate produce or feed the schema layer."""
    for name, value in vars(test_crd).items():
        if isinstance(value, dict) and "kind" in value:
            yield f"test_crd.{name}", value
    for case in test_crd.INVALID:
        yield f"test_crd.INVALID.{case[0]}", case[1]
    for path in sorted((REPO / "tests" / "lint_cases").rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict):
                yield f"{path.relative_to(REPO)}#{i}", doc
    for root in [REPO, *sorted(p for p in (REPO / "tests" / "cases").iterdir() if p.is_dir())]:
        _, result = api.compile_repo(root, use_cache=False)
        for env_name, env in result.envs.items():
            for art in env.artifacts:
                yield f"{root.name}/{env_name}/{art.identity}", art.body


def test_shipped_schema_gives_the_full_crds_verdict(tmp_path: Path) -> None:
    _need_full_crds()
    full = tmp_path / "full.yaml"
    full.write_text(FULL_CRDS.read_text() + "\n---\n" + FULL_GATEWAY.read_text())
    reference, shipped = CrdSet.load(full), CrdSet.load(shipped_crds())
    assert shipped.kinds() == reference.kinds()
    seen = 0
    for name, body in _objects():
        assert shipped.validate(body) == reference.validate(body), name
        seen += 1
    assert seen > 200  # every source above contributed


def test_shipped_file_is_what_the_generator_makes() -> None:
    _need_full_crds()
    name, data = gen_crd_schemas.generate(FULL_CRDS.parent, DEFAULT_ISTIO)
    assert (REPO / "compiler/meshc/data" / name).read_bytes() == data, \
        "compiler/meshc/data is stale: run `python tools/gen_crd_schemas.py` and commit the result"


def test_shipped_schema_keeps_rules_and_drops_prose() -> None:
    text = shipped_crds().read_text()
    assert '"description": "' not in text  # prose gone; a field named description (GatewayClass) stays
    assert '"description": {' in text
    assert "x-kubernetes-validations" in text and "x-kubernetes-preserve-unknown-fields" in text
    assert "x-kubernetes-list-map-keys" in text
    assert shipped_releases() == [DEFAULT_ISTIO]


def test_version_names_meshc_and_the_istio_release() -> None:
    result = cli("version")
    assert result.exit_code == 0
    assert result.output.startswith("meshc ")
    assert f"istio {DEFAULT_ISTIO}" in result.output


# --- meshc.yaml: istio: and crds: -----------------------------------------------------------------

def _estate(tmp_path: Path, meshc_yaml: str) -> Path:
    root = tmp_path / "estate"
    assert cli("init", str(root)).exit_code == 0
    (root / "meshc.yaml").write_text(meshc_yaml)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc", *args, "-C", str(root)], capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize("meshc_yaml, where, says", [
    ('policies: policies\nistio: "1.19"\n', "meshc.yaml:2:8", "error[C005]: istio: '1.19' is not a release"),
    ("policies: policies\ncrds: missing.yaml\n", "meshc.yaml:2:7", "cannot read the CRD file"),
    ("policies: policies\ncrds: broken.yaml\n", "meshc.yaml:2:7", "malformed YAML"),
    ("policies: policies\ncrds: gateway.yaml\n", "meshc.yaml:2:7", "serves no ServiceEntry"),
    ("policies: policies\ncrds: [a, b]\n", "meshc.yaml:2:7", "crds: must be a path"),
    ("policies: policies\ncrd: x.yaml\n", "meshc.yaml:2:1", "unknown key 'crd'"),
], ids=["unknown-release", "missing-file", "unparsable", "no-emitted-kinds", "not-a-path", "unknown-key"])
def test_bad_schema_settings_are_input_errors(tmp_path: Path, meshc_yaml: str, where: str, says: str) -> None:
    root = _estate(tmp_path, meshc_yaml)
    (root / "broken.yaml").write_text("kind: [unclosed\n")
    (root / "gateway.yaml").write_text(yaml.safe_dump(
        next(c for c in yaml.safe_load(shipped_crds().read_text())["items"]
             if c["metadata"]["name"] == "gateways.gateway.networking.k8s.io")))
    for command in ("build", "check"):
        run = _run(root, command)
        said = run.stdout + run.stderr
        assert run.returncode == 2, (command, said)
        assert "Traceback" not in said
        assert where in said and says in said, said
        assert "fix:" in said
    assert not list((root / "out").glob("*/index.json"))  # no bundle written


def test_own_crds_win_over_the_shipped_ones(tmp_path: Path) -> None:
    """A CRD file named by crds: is what the schema layer validates against."""
    items = yaml.safe_load(shipped_crds().read_text())["items"]
    own = [c for c in items if c["spec"]["group"] == "networking.istio.io"]
    for crd in own:  # a stricter cluster: at most 0 connections
        if crd["spec"]["names"]["kind"] == "DestinationRule":
            for version in crd["spec"]["versions"]:
                tcp = (version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["trafficPolicy"]
                       ["properties"]["connectionPool"]["properties"]["tcp"]["properties"])
                tcp["maxConnections"]["maximum"] = 0
    root = _estate(tmp_path, "policies: policies\ncrds: own.yaml\n")
    (root / "own.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": own}))
    run = _run(root, "check", "--layer", "schema")
    said = run.stdout + run.stderr
    assert run.returncode == 1, said
    assert "error[S001]" in said and "environments/base/services.yaml" in said
    assert _run(root, "check", "--layer", "schema", "--crds", str(shipped_crds())).returncode == 0


# --- meshc init ------------------------------------------------------------------------------------

def test_init_writes_an_estate_that_builds_checks_and_diffs(tmp_path: Path) -> None:
    root = tmp_path / "new"
    result = cli("init", str(root))
    assert result.exit_code == 0, result.output
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert written == set(scaffold_files())
    assert {"meshc.yaml", "waivers.yaml", ".gitignore", "policies/owner.cue", "environments/dev/env.yaml",
            "environments/prod/env.yaml", ".github/workflows/meshc.yml"} <= written
    for rel in written:
        if rel.startswith("environments/"):
            first = (root / rel).read_text().splitlines()[0]
            assert first.startswith("# yaml-language-server: $schema=../../.meshc/schemas/"), rel
            assert (root / rel).parent.joinpath(first.split("=", 1)[1]).resolve().is_file(), rel
    assert _run(root, "build").returncode == 0
    assert sorted(p.name for p in (root / "out").iterdir()) == ["dev", "prod"]
    check = _run(root, "check")
    assert check.returncode == 0, check.stderr
    assert "0 error(s), 0 warning(s)" in check.stdout + check.stderr


def test_init_refuses_a_folder_with_files_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("init", str(tmp_path))
    assert result.exit_code == 2
    assert "is not empty" in result.output and "notes.txt" in result.output and "nothing was written" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    clash = tmp_path / "clash"
    (clash / "environments/base").mkdir(parents=True)
    (clash / "environments/base/services.yaml").write_text("services: []\n")
    result = cli("init", str(clash))
    assert result.exit_code == 2 and "would overwrite: environments/base/services.yaml" in result.output
    assert (clash / "environments/base/services.yaml").read_text() == "services: []\n"
    assert [p.name for p in clash.iterdir()] == ["environments"]


def test_init_accepts_a_fresh_git_clone(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert cli("init", str(tmp_path)).exit_code == 0
    assert (tmp_path / "meshc.yaml").is_file()


# --- the wheel -------------------------------------------------------------------------------------

def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, check=True, env=env, capture_output=True)


def test_wheel_in_a_fresh_environment_runs_init_build_check_diff(tmp_path: Path) -> None:
    """Build the wheel, install it into a new venv in an empty folder, and use it as a user would."""
    started = time.monotonic()
    dist, work, src = tmp_path / "dist", tmp_path / "empty", tmp_path / "src"
    work.mkdir()
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(  # setuptools builds in the source tree
        ".git", ".venv", "out", ".meshc-cache", "build", "dist", "*.egg-info", "bench", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(dist), str(src)], check=True, capture_output=True)
    wheel = next(dist.glob("meshc-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", str(wheel)],
                         capture_output=True, text=True, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    meshc = str(venv / "bin/meshc")
    site = subprocess.run([str(venv / "bin/python"), "-c", "import meshc, sys; print(meshc.__file__); "
                           "import importlib.util as u; print(u.find_spec('compiler'))"],
                          capture_output=True, text=True, check=True, cwd=work).stdout.split()
    assert site[0].startswith(str(venv)) and site[1] == "None"  # no top-level `compiler` in site-packages
    estate = work / "estate"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str, ok: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run([meshc, *args], cwd=estate if estate.exists() else work, capture_output=True,
                              text=True, check=False, env=env)
        assert proc.returncode in ok, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc.stdout + proc.stderr

    assert "istio 1.31" in run("version")
    run("init", str(estate))
    assert (estate / ".gitignore").is_file() and (estate / ".github/workflows/meshc.yml").is_file()
    _git(estate, "init", "-q", "-b", "main")
    _git(estate, "add", "-A")
    _git(estate, "commit", "-q", "-m", "estate")
    assert "wrote out/prod" in run("build")
    assert "0 error(s)" in run("check")
    services = estate / "environments/base/services.yaml"
    services.write_text(services.read_text().replace("maxConnections: 100", "maxConnections: 150"))
    out = run("diff", "--base", "HEAD", "--format", "markdown")
    assert "payments-api" in out and "maxConnections" in out
    print(f"wheel build + install + init/build/check/diff: {time.monotonic() - started:.1f} s")
