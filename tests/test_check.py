"""`meshc check` and `meshc lint`: findings from every layer land on the declaration a human wrote."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshc import api

from .conftest import CRDS, REPO
from .passes.estates import ENV, VM


def test_example_estate_is_clean() -> None:
    outcome = api.check(REPO, layers=("schema", "istio", "envoy"), today=dt.date(2026, 11, 25))
    assert not outcome.input_error
    errors = [f"{d.position} {d.code} {d.message}" for d in outcome.diagnostics if d.severity.label == "error"]
    assert errors == []


def test_build_leaves_no_spool_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bootstrap is spooled under .meshc-cache/ during a build; after a good build and after a
    failed one the spool is gone and the bundle is in place."""
    from meshc.emit import bundle as emit

    spooled: list[Path] = []
    real = emit.spool
    monkeypatch.setattr(emit, "spool", lambda *a: spooled.append(Path(a[0])) or real(*a))
    root = _repo(tmp_path, "waivers: []\n")
    decl = root / "environments/base/a.yaml"
    decl.write_text(decl.read_text().replace("      - {name: replica, labels: {role: replica}}\n", ""))
    outcome = api.build(root, out=tmp_path / "out")
    assert outcome.ok, [str(d) for d in outcome.diagnostics]
    decl.write_text(decl.read_text().replace("number: 5432", "number: 99999"))
    assert not api.build(root, out=tmp_path / "out").ok
    assert len(spooled) == 1 and spooled[0].parent == root / ".meshc-cache"  # the spool directory
    assert not any(p.exists() for p in spooled)
    assert not list((root / ".meshc-cache").glob(".meshc-spool-*"))
    assert (tmp_path / "out/dev/envoy/bootstrap.json").is_file()


def _repo(tmp_path: Path, waivers: str) -> Path:
    root = tmp_path / "repo"
    (root / "environments/dev").mkdir(parents=True)
    (root / "environments/base").mkdir(parents=True)
    (root / "environments/dev/env.yaml").write_text(ENV)
    (root / "environments/base/a.yaml").write_text(VM.replace("SELECTOR", "db"))
    (root / "meshc.yaml").write_text(f"crds: {CRDS}\nwaivers: waivers.yaml\n")
    (root / "waivers.yaml").write_text(waivers)
    return root


def test_waivers_are_listed_and_expired_or_unused_ones_are_findings(tmp_path: Path) -> None:
    root = _repo(tmp_path, """waivers:
  - {code: A406, object: DestinationRule/egress/db, owner: team, reason: replica coming, expires: 2030-01-01}
  - {code: A406, env: prod, owner: team, reason: unused, expires: 2030-01-01}
  - {code: I111, owner: team, reason: old, expires: 2020-01-01}
""")
    outcome = api.check(root, today=dt.date(2026, 11, 25))
    codes = sorted(d.code for d in outcome.diagnostics)
    assert "A406" not in codes and [d.code for d in outcome.waived] == ["A406"]
    assert "W001" in codes and "W002" in codes
    partial = api.check(root, layers=("istio",), today=dt.date(2026, 11, 25))
    assert "W002" not in {d.code for d in partial.diagnostics}  # a partial check cannot tell


def _cli(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc", *args, "-C", str(root)], input=stdin,
                          capture_output=True, text=True)


def test_check_exit_codes_and_formats(tmp_path: Path) -> None:
    root = _repo(tmp_path, "waivers: []\n")
    run = _cli(root, "check", "--layer", "istio", "--format", "json")
    assert run.returncode == 1, run.stderr
    doc = json.loads(run.stdout)
    finding = next(f for f in doc["findings"] if f["code"] == "A406")
    assert set(finding) >= {"code", "severity", "message", "kind", "namespace", "name", "path", "file",
                            "line", "istio_code"}
    assert (finding["file"], finding["line"], finding["kind"]) == ("environments/base/a.yaml", 16, "DestinationRule")
    sarif = json.loads(_cli(root, "check", "--layer", "istio", "--format", "sarif").stdout)
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    gh = _cli(root, "check", "--layer", "istio", "--format", "github").stdout
    assert "::error file=environments/base/a.yaml,line=16" in gh
    (root / "meshc.yaml").write_text("crds: /nonexistent/crds.yaml\n")
    bad = _cli(root, "check", "--layer", "schema")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr + bad.stdout


def test_lint_reads_stdin_and_points_at_lines(tmp_path: Path) -> None:
    manifest = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x, namespace: ns}
spec:
  hosts: [x.example.com]
  resolution: NONE
  endpoints:
  - address: 1.1.1.1
  ports:
  - {number: 80, name: http, protocol: HTTP}
"""
    run = _cli(tmp_path, "lint", "--crds", str(CRDS), "--format", "json", "-", stdin=manifest)
    assert run.returncode == 1, run.stderr
    found = {(f["code"], f["line"]) for f in json.loads(run.stdout)["findings"]}
    assert ("I112", 8) in found and ("S002", 5) in found
    clean = _cli(tmp_path, "lint", "--crds", str(CRDS), "-", stdin=manifest.replace(
        "  endpoints:\n  - address: 1.1.1.1\n", "  addresses: [1.1.1.1]\n"))
    assert clean.returncode == 0, clean.stdout


@pytest.mark.cue
def test_cue_policy_violation_points_at_the_declaration(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "repo"
    (root / "environments/prod").mkdir(parents=True)
    (root / "environments/base").mkdir(parents=True)
    (root / "environments/prod/env.yaml").write_text("name: prod\nnamespace: egress\npolicyProfile: strict\n")
    (root / "environments/base/a.yaml").write_text("""services:
  - name: api
    owner: team
    hosts: [api.example.com]
    resolution: dns
    ports:
      - {number: 443, protocol: HTTPS}
    exportTo:
      - "*"
""")
    shutil.copytree(REPO / "policies", root / "policies")
    outcome = api.check(root, layers=("cue",))
    assert not outcome.input_error, [str(d) for d in outcome.diagnostics]
    hits = [d for d in outcome.diagnostics if d.code == "P001"]
    assert hits and hits[0].position is not None
    assert (hits[0].position.file, hits[0].position.line) == ("environments/base/a.yaml", 9)
    assert hits[0].related and hits[0].related[0].file.startswith("policies/strict/")


