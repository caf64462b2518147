"""Pass `check` (meshc.check.layers.check_run): a CompileResult -> diagnostics, layer by layer, each
placed at the declaration behind the finding.

The layers' own engines have their own modules: tests/test_crd.py (schema: CRDs and CEL),
tests/test_rules.py (istio: webhook rules and analyzers), tests/test_cue.py, test_cue_split.py and
test_cue_strings.py (cue policies). `meshc check` and `meshc lint` as commands: tests/test_check.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc import pipeline
from meshc.check.layers import CheckInputError, CheckOptions, check_run, run_checks
from meshc.files.tree import MemoryTree
from meshc.model.bundle import ENVOY_CLUSTERS
from meshc.pipeline import compile_estate

from ..conftest import CRDS
from .estates import ENV, VM, estate, upto


def _checked(text: str, layers: tuple[str, ...]) -> list:
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": ENV, "environments/base/a.yaml": text}))
    assert result.ok, [str(d) for d in result.diagnostics]
    return run_checks(result, CheckOptions(layers=layers, crds=CRDS))


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
    from meshc.proxy.envoy import proxies

    real = proxies.build_proxy_files

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        built = real(*args, **kwargs)
        docs = [built.bootstrap, *built.files.values()]
        clusters = [c for doc in docs for c in [*doc.get("resources", []),
                                                 *doc.get("static_resources", {}).get("clusters", [])]]
        for cluster in clusters:
            if cluster["name"].endswith("|db.example.com"):
                cluster.update(fields)
        return built

    monkeypatch.setattr(pipeline, "build_proxy_files", broken)


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
    from meshc.check.envoy import layer as check_envoy
    from meshc.emit import bundle as emit
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
        spooled = env.bundle.files[ENVOY_CLUSTERS]  # type: ignore[union-attr]
        assert isinstance(spooled, emit.Spooled) and Path(spooled.path).parent == spool
        assert spooled.read() == plain.envs[name].bundle.files[ENVOY_CLUSTERS]  # type: ignore[union-attr]
        out = emit.write_bundle(tmp_path / "out", env.bundle)  # type: ignore[arg-type]
        assert emit.read_bundle(out).files == plain.envs[name].bundle.files  # type: ignore[union-attr]


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

# --- the pass's contract (new) -------------------------------------------------------------------


def test_check_run_gives_one_diagnostic_per_finding_and_a_time_per_layer() -> None:
    result = upto("bundle", estate(a=VM.replace("SELECTOR", "db")))
    run = check_run(result, CheckOptions(layers=("schema", "istio"), crds=CRDS))
    assert set(run.timings) == {"schema", "istio"}
    assert [d.code for d in run.diagnostics] == ["A406"]  # the replica subset selects no endpoint
    assert run.diagnostics[0].env == "dev" and str(run.diagnostics[0].object) == "DestinationRule/egress/db"


def test_no_crd_file_is_a_warning_and_the_schema_layer_does_not_run() -> None:
    result = upto("bundle", estate(a=VM.replace("SELECTOR", "db")))
    run = check_run(result, CheckOptions(layers=("schema",), crds=None))
    assert [(d.code, d.severity.label) for d in run.diagnostics] == [("C004", "warning")]


def test_an_unusable_crd_file_is_an_input_error(tmp_path: Path) -> None:
    result = upto("bundle", estate(a=VM.replace("SELECTOR", "db")))
    bad = tmp_path / "crds.yaml"
    bad.write_text("kind: [\n")
    with pytest.raises(CheckInputError) as caught:
        check_run(result, CheckOptions(layers=("schema",), crds=bad))
    assert [d.code for d in caught.value.diags] == ["C002"]
