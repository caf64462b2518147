"""`meshc check` and `meshc lint`: findings from every layer land on the declaration a human wrote."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshc import api, pipeline
from meshc.check.layers import CheckOptions, check_run, run_checks
from meshc.pipeline import compile_estate
from meshc.files.tree import MemoryTree

from .conftest import CRDS, REPO

ENV = "name: dev\nnamespace: egress\n"
VM = """services:
  - name: db
    owner: team
    hosts: [db.example.com]
    addresses: [10.9.0.1]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    selector: {app: SELECTOR}
    ports:
      - {number: 5432, protocol: TCP}
    endpoints:
      - {address: 10.9.1.1, labels: {role: primary}, serviceAccount: db}
    subsets:
      - {name: primary, labels: {role: primary}}
      - {name: replica, labels: {role: replica}}
"""


def _checked(text: str, layers: tuple[str, ...]) -> list:
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": ENV, "environments/base/a.yaml": text}))
    assert result.ok, [str(d) for d in result.diagnostics]
    return run_checks(result, CheckOptions(layers=layers, crds=CRDS))


def test_example_estate_is_clean() -> None:
    outcome = api.check(REPO, layers=("schema", "istio", "envoy"), today=dt.date(2026, 11, 25))
    assert not outcome.input_error
    errors = [f"{d.position} {d.code} {d.message}" for d in outcome.diagnostics if d.severity.label == "error"]
    assert errors == []


def test_crd_violation_points_at_the_declaration() -> None:
    """A value the CRD refuses in an emitted object is placed at the declaration that made it. (A
    70-character selector value is refused at the declaration since V028, so the object is edited
    after the compile, as a template override could.)"""
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": ENV, "environments/base/a.yaml": VM}))
    assert result.ok, [str(d) for d in result.diagnostics]
    se = next(a for a in result.envs["dev"].artifacts if a.identity.kind == "ServiceEntry")
    se.body["spec"]["workloadSelector"]["labels"]["app"] = "x" * 70
    diags = run_checks(result, CheckOptions(layers=("schema",), crds=CRDS))
    hits = [d for d in diags if d.code.startswith("S")]
    assert hits, diags
    assert all(d.position is not None and d.position.file == "environments/base/a.yaml" for d in hits)
    assert {d.position.line for d in hits} == {9}
    assert all(str(d.object) == "ServiceEntry/egress/db" for d in hits)


def test_analyzer_finding_points_at_the_subset() -> None:
    diags = _checked(VM.replace("SELECTOR", "db"), ("istio",))
    a406 = [d for d in diags if d.code == "A406"]
    assert len(a406) == 1 and a406[0].position.line == 16 and a406[0].istio_code == "IST0173"


def _break_db_clusters(monkeypatch: pytest.MonkeyPatch, **fields: str) -> None:
    """Make the emitted bootstrap wrong on purpose: `fields` set on every db.example.com cluster."""
    from meshc.proxy.envoy import bootstrap as envoy

    real = envoy.build_bootstrap

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        bootstrap, sources = real(*args, **kwargs)
        for cluster in bootstrap["static_resources"]["clusters"]:
            if cluster["name"].endswith("|db.example.com"):
                cluster.update(fields)
        return bootstrap, sources

    monkeypatch.setattr(pipeline, "build_bootstrap", broken)


def test_wrong_envoy_field_is_reported_against_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_db_clusters(monkeypatch, lb_policy="ROUND_ROBINN")
    diags = _checked(VM.replace("SELECTOR", "db"), ("envoy",))
    e001 = [d for d in diags if d.code == "E001"]
    assert e001 and all(d.position is not None and d.position.file == "environments/base/a.yaml" for d in e001)
    assert "lb_policy" in e001[0].path


def test_envoy_layer_in_forked_workers_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large estates validate each environment's bootstrap in a forked worker: same findings, and
    the per-item results the workers computed reach the parent's cache."""
    from meshc.check.envoy import layer as check_envoy

    _break_db_clusters(monkeypatch, lb_policy="ROUND_ROBINN", connect_timeout="-1s")
    files = {"environments/dev/env.yaml": ENV, "environments/prod/env.yaml": "name: prod\nnamespace: egress\n",
             "environments/base/a.yaml": VM.replace("SELECTOR", "db")}
    result = compile_estate(MemoryTree(files))
    assert result.ok
    serial_run = check_run(result, CheckOptions(layers=("envoy",), cache={}))
    serial, serial_cache = serial_run.diagnostics, serial_run.learned
    monkeypatch.setattr(check_envoy, "FORK_ARTIFACTS", 0)
    forked_run = check_run(result, CheckOptions(layers=("envoy",), cache={}))
    forked, forked_cache = forked_run.diagnostics, forked_run.learned
    assert [str(d) for d in forked] == [str(d) for d in serial]
    assert {d.env for d in forked} == {"dev", "prod"} and any(d.code == "E001" for d in forked)
    assert forked_cache == serial_cache and len(forked_cache) > 2


def test_envoy_layer_run_by_the_proxy_worker_equals_the_layer(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """With ProxyOptions(check_envoy=True) the worker that built a bootstrap validates it and the
    layer only places the findings: the same diagnostics and cache entries, no second validation;
    with a spool directory the bootstrap reaches the bundle as a file of the same bytes."""
    from meshc.emit import bundle as emit
    from meshc.check.envoy import layer as check_envoy
    from meshc.runtime.cache import BuildCache

    _break_db_clusters(monkeypatch, lb_policy="ROUND_ROBINN", connect_timeout="-1s")
    files = {"environments/dev/env.yaml": ENV, "environments/prod/env.yaml": "name: prod\nnamespace: egress\n",
             "environments/base/a.yaml": VM.replace("SELECTOR", "db")}
    plain = compile_estate(MemoryTree(files))
    plain_run = check_run(plain, CheckOptions(layers=("envoy",), cache={}))
    expected, plain_cache = plain_run.diagnostics, plain_run.learned
    assert any(d.code == "E001" for d in expected) and {d.env for d in expected} == {"dev", "prod"}

    spool = tmp_path / "spool"
    spool.mkdir()
    cache = BuildCache(tmp_path, "stamp")
    fused = compile_estate(MemoryTree(files), cache=cache,
                           proxy=pipeline.ProxyOptions(spool=spool, check_envoy=True))
    calls: list[int] = []
    real = check_envoy.validate_bootstrap
    monkeypatch.setattr(check_envoy, "validate_bootstrap", lambda *a: calls.append(1) or real(*a))
    got = run_checks(fused, CheckOptions(layers=("envoy",), cache=cache.checks))
    assert calls == [] and [str(d) for d in got] == [str(d) for d in expected]
    assert cache.checks == plain_cache
    for name, env in fused.envs.items():
        spooled = env.bundle.files[emit.ENVOY_FILE]  # type: ignore[union-attr]
        assert isinstance(spooled, emit.Spooled) and Path(spooled.path).parent == spool
        assert spooled.read() == plain.envs[name].bundle.files[emit.ENVOY_FILE]  # type: ignore[union-attr]
        out = emit.write_bundle(tmp_path / "out", env.bundle)  # type: ignore[arg-type]
        assert emit.read_bundle(out).files == plain.envs[name].bundle.files  # type: ignore[union-attr]


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


def test_the_check_pass_changes_neither_its_options_nor_the_cache_it_reads() -> None:
    """Passes return new values: what the check pass learned comes back in `CheckRun.learned`;
    the cache it read (the last build's) and its frozen options are as they were."""
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": ENV, "environments/base/a.yaml": VM}))
    previous: dict = {("istio", "0" * 64): []}
    opts = CheckOptions(layers=("schema", "istio"), crds=CRDS, cache=previous)
    run = check_run(result, opts)
    assert previous == {("istio", "0" * 64): []} and opts == CheckOptions(layers=("schema", "istio"), crds=CRDS)
    assert run.learned and all(key[0] in ("schema", "istio") or key[0].startswith("schema:") for key in run.learned)
    again = check_run(result, CheckOptions(layers=("schema", "istio"), crds=CRDS, cache=run.learned))
    assert again.learned == {} and [str(d) for d in again.diagnostics] == [str(d) for d in run.diagnostics]


def test_an_envoy_finding_points_at_the_policy_field_that_made_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """lb_policy comes from trafficPolicy.loadBalancer, connect_timeout from
    connectionPool.tcp.connectTimeout: the finding is placed at that line of the declaration, in
    the subset's policy when the subset sets it (istiod's merge order), not at the service."""
    text = VM.replace("SELECTOR", "db").replace(
        "      - {name: replica, labels: {role: replica}}\n",
        "      - name: replica\n"
        "        labels: {role: replica}\n"
        "        trafficPolicy:\n"
        "          loadBalancer: {simple: LEAST_REQUEST}\n"     # line 19
        "    trafficPolicy:\n"
        "      loadBalancer: {simple: ROUND_ROBIN}\n"         # line 21
        "      connectionPool:\n"
        "        tcp: {connectTimeout: 2s}\n")                # line 23

    def lines(**fields: str) -> set[int]:
        with monkeypatch.context() as patch:
            _break_db_clusters(patch, **fields)
            diags = [d for d in _checked(text, ("envoy",)) if d.code in ("E001", "E002")]
        assert diags and all(d.position is not None and d.position.file.endswith("environments/base/a.yaml")
                             for d in diags)
        return {d.position.line for d in diags if d.position is not None}

    assert lines(lb_policy="ROUND_ROBINN") == {19, 21}  # the replica subset's own, everyone else's
    assert lines(connect_timeout="-1s") == {23}
