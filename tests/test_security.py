"""A hostile repository can read nothing, delete nothing, run nothing and hang nothing.

Each test is one attack from docs/security.md, with its files in tests/security/ (data). They
run the real CLI on a temporary estate made by `meshc init`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshc.cli.main import main
from meshc.cli.diff import diff_command

from .conftest import REPO

ATTACKS = REPO / "tests" / "security"
SECRET = "root:x:0:0:"  # what /etc/passwd-like content looks like


def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    return root


def meshc(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    run = subprocess.run([sys.executable, "-m", "meshc", *args, "-C", str(root)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    return run


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", *args], check=True,
                   capture_output=True)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET + "secret\n")
    return path


# --- files outside the repository ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "folder", "environment"])
def test_links_out_of_environments_are_refused(tmp_path: Path, secret: Path, kind: str) -> None:
    root = estate(tmp_path)
    if kind == "file":
        (root / "environments/base/leak.yaml").symlink_to(secret)
    elif kind == "folder":
        (root / "environments/base/more").symlink_to(secret.parent)
    else:
        shutil.move(root / "environments/prod", tmp_path / "prod")
        (root / "environments/prod").symlink_to(tmp_path / "prod")
    run = meshc(root, "build")
    assert run.returncode == 2 and "error[L008]" in run.stderr and "outside the repository" in run.stderr
    assert not (root / "out").exists() or SECRET not in "".join(
        p.read_text(errors="replace") for p in (root / "out").rglob("*") if p.is_file())


def test_a_policy_file_linking_outside_is_refused_at_its_place(tmp_path: Path, secret: Path) -> None:
    root = estate(tmp_path)
    policy = sorted((root / "policies").glob("*.cue"))[0]
    policy.unlink()
    policy.symlink_to(secret)
    run = meshc(root, "build")  # the position names the link (it once held a Path and crashed rendering)
    assert run.returncode == 2 and f"policies/{policy.name}: error[C003]: policy file refused" in run.stderr
    assert SECRET not in run.stderr + run.stdout


def test_a_template_cannot_include_a_file_from_outside(tmp_path: Path, secret: Path) -> None:
    root = estate(tmp_path)
    (root / "templates").mkdir()
    shutil.copyfile(ATTACKS / "template-include-leak.json.j2", root / "templates/serviceentry.json.j2")
    (root / "templates/leak.txt").symlink_to(secret)
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text() + "templates: templates\n")
    run = meshc(root, "build")
    assert run.returncode == 2 and "error[X001]" in run.stderr and "outside the repository" in run.stderr
    assert SECRET not in run.stderr + run.stdout


def test_a_git_refs_meshc_yaml_cannot_point_outside_its_checkout(tmp_path: Path, secret: Path) -> None:
    root = estate(tmp_path)
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text() + f"templates: {secret.parent}\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "hostile base")
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text().replace(f"templates: {secret.parent}\n", ""))
    result = CliRunner().invoke(diff_command, ["--base", "HEAD", "--format", "markdown", "-C", str(root)])
    assert result.exit_code == 2 and "error[C006]: templates:" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize("setting, code", [("crds: /dev/zero", "C006"), ("policies: /", "C006"),
                                           ("waivers: /etc/passwd", "C006"), ("templates: /etc", "C006")])
def test_meshc_yaml_cannot_name_outside_paths(tmp_path: Path, setting: str, code: str) -> None:
    root = estate(tmp_path)
    text = "\n".join(line for line in (root / "meshc.yaml").read_text().splitlines()
                     if not line.startswith(setting.split(":")[0] + ":"))
    (root / "meshc.yaml").write_text(text + f"\n{setting}\n")
    run = meshc(root, "build", timeout=60)
    assert run.returncode == 2 and f"error[{code}]" in run.stderr and "outside the repository" in run.stderr


def test_the_person_running_meshc_may_allow_an_outside_path(tmp_path: Path) -> None:
    root = estate(tmp_path)
    shared = tmp_path / "shared-policies"
    shutil.move(root / "policies", shared)
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text().replace("policies: policies",
                                                                               f"policies: {shared}"))
    assert meshc(root, "build").returncode == 2
    run = subprocess.run([sys.executable, "-m", "meshc", "--allow-outside", str(shared), "build", "-C", str(root)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_devices_are_never_read(tmp_path: Path, target: str) -> None:
    root = estate(tmp_path)
    (root / "environments/base/zero.yaml").symlink_to(target)
    run = meshc(root, "build", timeout=60)
    assert run.returncode == 2 and "error[L008]" in run.stderr


def test_a_pipe_is_not_a_file(tmp_path: Path) -> None:
    root = estate(tmp_path)
    os.mkfifo(root / "environments/base/pipe.yaml")
    run = meshc(root, "build", timeout=60)
    assert run.returncode == 2 and "not a regular file" in run.stderr


# --- deletion ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("out", ["environments", ".", "environments/dev", "policies", "..", "/tmp"])
def test_out_cannot_replace_sources_or_leave_the_repository(tmp_path: Path, out: str) -> None:
    root = estate(tmp_path)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text().replace("out: out", f"out: {out}"))
    run = meshc(root, "build", "--env", "dev")
    assert run.returncode == 2 and "error[C007]" in run.stderr
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


# --- exhaustion ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("attack, says", [
    ("template-power.json.j2", "is too large (over 4096 bits)"),
    ("template-repeat.json.j2", "repetition to 400,000,000 items is over the limit"),
    ("template-loops.json.j2", "rendering took longer than 5 s"),
])
def test_templates_run_within_limits(tmp_path: Path, attack: str, says: str) -> None:
    root = estate(tmp_path)
    (root / "templates").mkdir()
    shutil.copyfile(ATTACKS / attack, root / "templates/serviceentry.json.j2")
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text() + "templates: templates\n")
    run = meshc(root, "build", "--skip-checks", timeout=90)
    assert run.returncode == 2 and "error[X001]" in run.stderr and says in run.stderr


def test_an_ignore_glob_is_matched_in_linear_time(tmp_path: Path) -> None:
    root = estate(tmp_path)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    shutil.copyfile(ATTACKS / "ignore-backtracking.yaml", root / ".meshc-diffignore")
    services = root / "environments/base/services.yaml"
    services.write_text(services.read_text().replace("description: Example SaaS API, called over HTTPS",
                                                     "description: " + "a" * 300))
    run = meshc(root, "diff", "--base", "HEAD", "--format", "json", timeout=60)
    assert run.returncode == 0, run.stderr


# --- output that cannot speak for someone else ------------------------------------------------------------

def test_a_file_name_cannot_forge_workflow_commands(tmp_path: Path) -> None:
    root = estate(tmp_path)
    (root / "environments/base/x\n::error file=a.yaml::forged.yaml").write_text("services: []\n")
    for args in (("build",), ("check", "--format", "github")):
        run = meshc(root, *args)
        assert run.returncode == 2
        assert not any(line.startswith("::error file=a.yaml") for line in (run.stdout + run.stderr).splitlines())


def test_github_annotations_escape_every_value(tmp_path: Path) -> None:
    root = estate(tmp_path)
    services = root / "environments/base/services.yaml"
    services.write_text(services.read_text().replace("hosts: [api.payments.example.com]",
                                                     'hosts: ["a%0A::error::x\\r\\n::warning::y, z: w"]'))
    run = meshc(root, "check", "--format", "github")
    assert run.returncode == 2
    lines = run.stdout.splitlines()
    assert lines and all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines)
    assert not any(line.startswith(("::error::", "::warning::")) for line in lines)
    assert "%250A" in run.stdout  # a literal %0A in a value is not a newline in the annotation


def test_terminal_output_has_no_raw_control_characters(tmp_path: Path) -> None:
    root = estate(tmp_path)
    services = root / "environments/base/services.yaml"
    services.write_text(services.read_text().replace("hosts: [api.payments.example.com]",
                                                     'hosts: ["\\e[31mred\\u202e"]'))
    run = meshc(root, "build")
    assert run.returncode == 2 and "\x1b" not in run.stderr and "\u202e" not in run.stderr
    assert "\\x1b[31mred\\u202e" in run.stderr


@pytest.mark.parametrize("where", ["environments", "outside"])
def test_meshc_replaces_only_folders_it_made(tmp_path: Path, where: str) -> None:
    """Even an --out chosen by hand never deletes a folder that is not a bundle meshc wrote."""
    root = estate(tmp_path)
    out = root / "environments" if where == "environments" else tmp_path / "elsewhere"
    (out / "dev").mkdir(parents=True, exist_ok=True)
    (out / "dev" / "precious.txt").write_text("mine\n")
    before = sorted(p.relative_to(out).as_posix() for p in (out / "dev").rglob("*"))
    run = meshc(root, "build", "--env", "dev", "--out", str(out))
    assert run.returncode == 2 and "error[B006]" in run.stderr and "is not a bundle meshc wrote" in run.stderr
    assert sorted(p.relative_to(out).as_posix() for p in (out / "dev").rglob("*")) == before
    assert meshc(root, "build", "--env", "dev", "--out", str(tmp_path / "fresh")).returncode == 0
    assert meshc(root, "build", "--env", "dev", "--out", str(tmp_path / "fresh")).returncode == 0  # its own: replaced


# --- no code or trusted state from the working tree ------------------------------------------------------

def test_a_planted_cache_is_never_loaded(tmp_path: Path) -> None:
    root = estate(tmp_path)
    marker = tmp_path / "pwned"
    env = {"MESHC_PWNED_MARKER": str(marker), "MESHC_STATE_DIR": str(tmp_path / "state")}
    (root / ".meshc-cache").mkdir()
    shutil.copyfile(ATTACKS / "planted-state.pickle", root / ".meshc-cache/state.pickle")
    run = meshc(root, "build", env=env)
    assert run.returncode == 0, run.stderr
    assert "info[K001]" in run.stderr and ".meshc-cache/state.pickle is not read" in run.stderr
    assert not marker.exists()
    # the same file where meshc keeps its cache: its tag is not this user's, so it is not loaded
    (state,) = (tmp_path / "state" / "repos").iterdir()
    shutil.copyfile(ATTACKS / "planted-state.pickle", state / "state.pickle")
    services = root / "environments/base/services.yaml"
    services.write_text(services.read_text() + "# changed\n")
    run = meshc(root, "build", env=env)
    assert run.returncode == 0 and "is not a cache this user's meshc wrote" in run.stderr
    assert not marker.exists()


def test_a_planted_build_record_is_ignored(tmp_path: Path) -> None:
    """A record that claims a hand-made bundle is current (as a committed one would) is not
    believed: its tag is not this user's."""
    import hashlib
    import json

    root = estate(tmp_path)
    assert meshc(root, "build").returncode == 0
    (record,) = (root / ".meshc-cache/builds").glob("*.json")
    signed = json.loads(record.read_text())
    index = root / "out/dev/index.json"
    index.write_text(index.read_text().replace('"environment": "dev"', '"environment": "pwned"'))
    signed["record"]["envs"]["dev"]["index.json"] = hashlib.sha256(index.read_bytes()).hexdigest()
    record.write_text(json.dumps(signed))
    run = meshc(root, "build")
    assert run.returncode == 0 and "bundles are up to date" not in run.stderr and "/out/dev (" in run.stderr, run.stderr
    assert '"environment": "dev"' in index.read_text()
