"""`meshc import`: Istio YAML in, layered declarations and pass-through out, the round trip proven.

The inputs are YAML nobody here wrote: Istio's own samples and test data (tests/corpus/istio/,
SOURCES.md names each file's origin), and a generated estate of three environments drifted apart
at random (bench/live_estate.py, fixed seeds). For every input the round trip is empty: `meshc
build` of what import wrote reproduces the input, object for object, field for field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import api
from meshc.adopt import importer
from meshc.adopt.importer import ImportOutcome, run_import
from meshc.adopt.live import read_objects

from .conftest import REPO, copy_example_estate

sys.path.insert(0, str(REPO / "bench"))
from live_estate import live_estate, write  # noqa: E402

CORPUS = REPO / "tests" / "corpus" / "istio"
MESHC = [sys.executable, "-m", "meshc"]


def _import(root: Path, inputs: dict[str, list[Path]], **kw: Any) -> ImportOutcome:
    return run_import(root, [(env, [str(p) for p in paths]) for env, paths in inputs.items()], **kw)


# ----------------------------------------------------------------------------- the corpus

CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 40
    assert (CORPUS / "SOURCES.md").is_file() and (CORPUS / "LICENSE").is_file()


# the files SOURCES.md marks "deliberately invalid": Istio's own negative test inputs
INVALID = {line.split("`")[1].removesuffix(".yaml") for line in (CORPUS / "SOURCES.md").read_text().splitlines()
           if line.startswith("| `") and "deliberately invalid" in line}


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_every_corpus_file_round_trips(path: Path, tmp_path: Path) -> None:
    """Every file of the corpus round trips, except where Istio's own schema refuses an object
    (the negative test inputs): such an object is kept verbatim, the build's schema check refuses
    it at its line, and the round trip lists it as missing, never as something else."""
    outcome = _import(tmp_path, {"prod": [path]}, dry_run=True)
    got = read_objects([str(path)])
    read = got.objects
    if not read or any(d.severity.name == "ERROR" for d in got.diagnostics):
        # nothing to import, or input errors (an object defined twice): nothing is imported
        assert outcome.changes is None and not outcome.files
        assert any(d.code == "F008" for d in outcome.diagnostics)
        return
    assert outcome.changes is not None
    if not outcome.proven:
        assert path.stem in INVALID, outcome.changes
        env = outcome.changes.envs["prod"]
        assert env.removed and not env.added and not env.modified, env
        refused = {n.split(": ")[1].split()[0] for n in outcome.changes.notes}
        assert refused <= {"S001", "S002", "S003", "S004", "S005"}, outcome.changes.notes
        kept = {k.obj.id for k in outcome.kept}
        assert {r.id for r in env.removed} <= kept
    unserved = {d.object for d in outcome.diagnostics if d.code == "F009"}  # a kind no shipped CRD serves
    declared = {oid for oid in read if oid not in {k.obj.id for k in outcome.kept} | unserved}
    # every object is declared or kept verbatim, none both
    assert {k.obj.id for k in outcome.kept} <= set(read)
    assert all(oid.kind in ("ServiceEntry", "WorkloadEntry", "DestinationRule") for oid in declared)
    assert all(k.reason for k in outcome.kept)


def test_the_corpus_declares_most_service_entries(tmp_path: Path) -> None:
    """Import is worth it only if it declares what it can: of the corpus's valid ServiceEntries,
    most become declarations (the rest have a reason each)."""
    declared = total = 0
    for path in CORPUS_FILES:
        outcome = _import(tmp_path / path.stem, {"prod": [path]}, dry_run=True)
        kept = {k.obj.id for k in outcome.kept}
        for oid in read_objects([str(path)]).objects:
            if oid.kind == "ServiceEntry":
                total += 1
                declared += oid not in kept
    assert total >= 80
    assert declared / total >= 0.6, (declared, total)


def test_a_sample_becomes_a_clean_estate(tmp_path: Path) -> None:
    """Istio's egress sample (samples/external/github.yaml): into an empty folder, a complete
    estate that builds with every check, and says where each service came from."""
    src = CORPUS / "samples__external__github.yaml"
    outcome = _import(tmp_path, {"prod": [src]})
    assert outcome.written and outcome.proven
    # github-tcp says `protocol: tcp`: Istio reads protocols case-insensitively, meshc writes TCP
    assert outcome.services == {"prod": ["github-https", "github-tcp"]} and not outcome.kept
    assert (tmp_path / "meshc.yaml").is_file()
    assert yaml.safe_load((tmp_path / "environments/prod/env.yaml").read_text()) == {
        "name": "prod", "namespace": "default"}
    decl = (tmp_path / "environments/prod/default.yaml").read_text()
    assert f"# imported from {src}:" in decl
    built = api.build(tmp_path, use_cache=False)
    assert built.ok, built.diagnostics
    assert (tmp_path / "out/prod/default/github-https.yaml").is_file()
    assert "protocol: TCP" in (tmp_path / "out/prod/default/github-tcp.yaml").read_text()


# ----------------------------------------------------------------------------- a drifted estate

@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[Path]], Path, ImportOutcome]:
    live = tmp_path_factory.mktemp("live")
    paths = write(live, live_estate(120, seed=11, drift=0.35))
    inputs = {env: [p] for env, p in paths.items()}
    root = tmp_path_factory.mktemp("estate")
    return inputs, root, _import(root, inputs)


def test_a_drifted_estate_round_trips(drifted: tuple[dict[str, list[Path]], Path, ImportOutcome]) -> None:
    inputs, root, outcome = drifted
    assert outcome.written and outcome.proven
    for env, paths in inputs.items():
        read = read_objects([str(p) for p in paths]).objects
        kept = {k.obj.id for k in outcome.kept if k.env == env}
        assert kept <= set(read)
        # what is kept is exactly what meshc cannot declare in this generator: VirtualServices,
        # the ServiceEntry with subjectAltNames, the DestinationRule of an in-cluster host
        assert {o.kind for o in kept} == {"VirtualService", "ServiceEntry", "DestinationRule"}
        assert {o.name for o in kept if o.kind != "VirtualService"} == {"pinned-cert", "reviews"}


def test_a_thousand_services_in_three_environments_round_trip(tmp_path: Path) -> None:
    """The size the issue names: 1,000 services x 3 environments drifted apart at random."""
    paths = write(tmp_path / "live", live_estate(1000, seed=7))
    outcome = _import(tmp_path / "estate", {env: [p] for env, p in paths.items()}, dry_run=True)
    assert outcome.proven, outcome.changes
    assert sum(len(v) for v in outcome.services.values()) > 2700


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_drift_round_trips(seed: int, tmp_path: Path) -> None:
    paths = write(tmp_path / "live", live_estate(40, envs=("a", "b", "c", "d"), seed=seed, drift=0.6))
    outcome = _import(tmp_path / "estate", {env: [p] for env, p in paths.items()})
    assert outcome.proven, outcome.changes


def test_common_values_go_to_base_and_differences_to_overlays(
        drifted: tuple[dict[str, list[Path]], Path, ImportOutcome]) -> None:
    _, root, _ = drifted
    base = [s for f in sorted((root / "environments/base").glob("*.yaml"))
            for s in yaml.safe_load(f.read_text()).get("services") or []]
    assert len(base) > 80  # services of every environment
    overrides = [o for env in ("dev", "staging", "prod") for f in sorted((root / "environments" / env).glob("*.yaml"))
                 if f.name != "env.yaml" for o in (yaml.safe_load(f.read_text()) or {}).get("overrides") or []]
    assert overrides, "the generator drifts 35% of the services per environment"
    # an overlay says only what differs: never the hosts of a service whose hosts do not drift
    assert not [o for o in overrides if "hosts" in o]
    assert all(set(o) - {"name"} for o in overrides)


def test_import_is_deterministic(drifted: tuple[dict[str, list[Path]], Path, ImportOutcome], tmp_path: Path) -> None:
    inputs, _, first = drifted
    again = _import(tmp_path, inputs, dry_run=True)
    assert again.files == first.files


def test_the_imported_estate_builds_with_every_check(drifted: tuple[dict[str, list[Path]], Path, ImportOutcome]
                                                     ) -> None:
    _, root, _ = drifted
    outcome = api.build(root, use_cache=False)
    assert outcome.ok, [str(d) for d in outcome.diagnostics if d.severity.name == "ERROR"][:5]


def test_meshcs_own_bundle_imports_back(tmp_path: Path) -> None:
    """The example estate's bundles (what meshc wrote) import back into declarations that build
    the same objects: owner and description come back from meshc's annotations."""
    built = copy_example_estate(tmp_path / "example")
    assert api.build(built, use_cache=False, checks=False).ok
    inputs = {env: [p for p in sorted((built / "out" / env).rglob("*.yaml")) if p.name != "kustomization.yaml"]
              for env in ("dev", "staging", "prod")}
    outcome = _import(tmp_path / "back", inputs)
    assert outcome.proven, outcome.changes
    assert "payments-stripe" in outcome.services["prod"]
    stripe = next(s for f in (tmp_path / "back/environments/base").glob("*.yaml")
                  for s in yaml.safe_load(f.read_text()).get("services") or [] if s["name"] == "payments-stripe")
    assert stripe["owner"] == "team-payments"


# ----------------------------------------------------------------------------- layering rules

@pytest.mark.parametrize(("values", "base"), [
    # a key every environment has, with the value most have
    ([{"a": 1}, {"a": 1}, {"a": 2}], {"a": 1}),
    # a key one environment lacks stays out of base (an overlay cannot delete it)
    ([{"a": 1, "b": 2}, {"a": 1}], {"a": 1}),
    # a tie: the first environment's value
    ([{"a": [1]}, {"a": [2]}], {"a": [1]}),
    # keyed list: the items every environment has, merged item by item
    ([{"ports": [{"number": 80, "protocol": "HTTP"}, {"number": 443, "protocol": "HTTPS"}]},
      {"ports": [{"number": 443, "protocol": "HTTPS"}, {"number": 80, "protocol": "TCP"}]},
      {"ports": [{"number": 80, "protocol": "HTTP"}, {"number": 443, "protocol": "HTTPS"}]}],
     {"ports": [{"number": 80, "protocol": "HTTP"}, {"number": 443, "protocol": "HTTPS"}]}),
])
def test_consensus(values: list[Any], base: Any) -> None:
    assert importer._consensus(values, ()) == base


def test_overlay_is_what_the_merge_needs() -> None:
    base = {"name": "s", "hosts": ["a.example.com"], "ports": [{"number": 80, "protocol": "HTTP"}],
            "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100, "connectTimeout": "1s"}}}}
    env = {"name": "s", "hosts": ["a.example.com"], "ports": [{"number": 80, "protocol": "HTTP", "targetPort": 443},
                                                               {"number": 443, "protocol": "HTTPS"}],
           "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 500, "connectTimeout": "1s"}}}}
    assert importer._overlay(base, env, ()) == {
        "ports": [{"number": 80, "targetPort": 443}, {"number": 443, "protocol": "HTTPS"}],
        "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 500}}}}
    assert importer._overlay(base, base, ()) is importer._MISSING


# ----------------------------------------------------------------------------- an existing estate

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
"""


def test_import_adds_to_an_estate_and_never_overwrites(tmp_path: Path) -> None:
    root = tmp_path / "estate"
    (root / "environments/dev").mkdir(parents=True)
    (root / "environments/dev/env.yaml").write_text("name: dev\nnamespace: egress\n")
    live = tmp_path / "live.yaml"
    live.write_text(SE)
    first = _import(root, {"dev": [live]})
    assert first.written and first.proven
    written = (root / "environments/dev/egress.yaml").read_bytes()
    assert b"name: api" in written
    assert (root / "environments/dev/env.yaml").read_text() == "name: dev\nnamespace: egress\n"  # kept
    # again: the service is declared already (F006); the file would be rewritten: F005, nothing written
    live.write_text(SE.replace("name: api,", "name: api2,").replace("api.example.com", "api2.example.com"))
    second = _import(root, {"dev": [live]})
    assert not second.written
    assert [d.code for d in second.diagnostics if d.code == "F005"] == ["F005"]
    assert (root / "environments/dev/egress.yaml").read_bytes() == written
    third = _import(root, {"dev": [live]}, force=True)
    assert third.written and third.proven
    assert b"name: api2" in (root / "environments/dev/egress.yaml").read_bytes()


def test_an_existing_declaration_is_kept_and_compared(tmp_path: Path) -> None:
    root = tmp_path / "estate"
    (root / "environments/dev").mkdir(parents=True)
    (root / "environments/dev/env.yaml").write_text("name: dev\nnamespace: egress\n")
    (root / "environments/dev/mine.yaml").write_text(
        "services:\n- name: api\n  hosts: [api.example.com]\n  resolution: dns\n"
        "  ports: [{number: 443, protocol: HTTPS, name: https}]\n")
    live = tmp_path / "live.yaml"
    live.write_text(SE)
    same = _import(root, {"dev": [live]}, dry_run=True)
    assert [d.code for d in same.diagnostics] == ["F006"] and same.proven
    live.write_text(SE.replace("resolution: DNS", "resolution: STATIC"))
    differs = _import(root, {"dev": [live]}, dry_run=True)
    assert not differs.proven
    (change,) = differs.changes.envs["dev"].modified  # type: ignore[union-attr]
    assert [c.path for c in change.changes] == [("spec", "resolution")]


# ----------------------------------------------------------------------------- hostile values

def test_values_cannot_change_the_structure_of_the_declarations(tmp_path: Path) -> None:
    """An annotation written to break out of its YAML string stays one string, and the round trip
    holds it byte for byte."""
    hostile = "x\nservices:\n- name: evil\n# '\"{{ 7*7 }}"
    se = yaml.safe_load(SE)
    se["metadata"]["annotations"] = {"meshc.dev/description": hostile, "meshc.dev/owner": "a: b"}
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump(se))
    outcome = _import(tmp_path / "estate", {"dev": [live]})
    assert outcome.proven
    (decl,) = yaml.safe_load((tmp_path / "estate/environments/dev/egress.yaml").read_text())["services"]
    assert decl["description"] == hostile and decl["owner"] == "a: b"


# ----------------------------------------------------------------------------- the command

def _cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MESHC, "import", *args], cwd=cwd, capture_output=True, text=True, input=stdin,
                          check=False)


def test_cli_exit_codes_and_stdin(tmp_path: Path) -> None:
    ok = _cli("-", "--env", "dev", "-C", str(tmp_path / "a"), cwd=tmp_path, stdin=SE)
    assert ok.returncode == 0, ok.stderr
    assert "round trip: meshc build of the imported estate reproduces the input" in ok.stdout
    nothing = _cli("-", "--env", "dev", "-C", str(tmp_path / "b"), cwd=tmp_path,
                   stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert nothing.returncode == 2 and "F008" in nothing.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    broken = _cli("-", "--env", "dev", "-C", str(tmp_path / "c"), cwd=tmp_path, stdin="a: [\n")
    assert broken.returncode == 2 and "<stdin>:" in broken.stderr and "Y003" in broken.stderr
    usage = _cli("x.yaml", "y.yaml", "z.yaml", "--env", "a", "--env", "b", cwd=tmp_path)
    assert usage.returncode == 2 and "give --env once" in usage.stderr
    bad = _cli("-", "--env", "base", cwd=tmp_path, stdin=SE)
    assert bad.returncode == 2 and "cannot name an environment" in bad.stderr
    assert "Traceback" not in usage.stderr + bad.stderr + broken.stderr + nothing.stderr


def test_every_profile_of_the_bench_estate_round_trips(tmp_path: Path) -> None:
    """bench/generate.py's seven service profiles (mutual TLS with credentialName and clientSelector,
    dns-round-robin, VMs with WorkloadEntries and subsets, CIDR passthrough...), compiled by meshc,
    import back into declarations that reproduce every object: no profile falls back to pass-through."""
    subprocess.run([sys.executable, str(REPO / "bench/generate.py"), "--services", "120", "--envs", "3",
                    "--seed", "5", "--out", str(tmp_path / "gen")], check=True, capture_output=True)
    assert api.build(tmp_path / "gen", checks=False, use_cache=False).ok
    out = tmp_path / "gen" / "out"
    outcome = _import(tmp_path / "back", {env: [out / env] for env in ("dev", "staging", "prod")})
    assert outcome.proven, outcome.changes
    assert not outcome.kept, [(k.obj.id, k.reason) for k in outcome.kept][:5]
    assert [d.code for d in outcome.diagnostics] == ["F003"] * 3  # each bundle's kustomization.yaml


HOSTILE: list[Any] = ["../../etc/passwd", "a\nb: c", "x: [1", 12, -1, 2.5, [], {}, None, True, "", "*", "{{ 7*7 }}",
                      "ünïcode", "x" * 300, {"$patch": "delete"}, ["a", 1], "DNS", "MESH_INTERNAL", "0.0.0.0/0"]


def _mutate(rng: Any, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and depth < 6:
        key = rng.choice(sorted(value))
        out = dict(value)
        if rng.random() < 0.15:
            out[rng.choice(["bogus", "$patch", "subjectAltNames", "0"])] = rng.choice(HOSTILE)
        else:
            out[key] = _mutate(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 6:
        i = rng.randrange(len(value))
        return [*value[:i], _mutate(rng, value[i], depth + 1), *value[i + 1:]]
    return rng.choice(HOSTILE)


@pytest.mark.parametrize("seed", range(12))
def test_hostile_input_never_crashes_nor_escapes(seed: int, tmp_path: Path) -> None:
    """Random values of random types anywhere in otherwise real objects: import reports, keeps
    verbatim or declares, never raises, never writes outside the repository, and a written
    estate holds every object it read."""
    import random
    rng = random.Random(seed)
    objects = [o for env in live_estate(12, envs=("a",), seed=seed).values() for o in env]
    for _ in range(6):
        i = rng.randrange(len(objects))
        objects[i] = _mutate(rng, objects[i])
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump_all(objects))
    root = tmp_path / "estate"
    outcome = _import(root, {"a": [live]})
    for rel in outcome.files:
        assert (root / rel).resolve().is_relative_to(root.resolve()), rel
    if outcome.written:
        read = read_objects([str(live)]).objects
        assert outcome.changes is not None
        kept = {k.obj.id for k in outcome.kept}
        assert kept <= set(read)
        if not outcome.proven:
            assert any(d.code == "F007" for d in outcome.diagnostics)


# ----------------------------------------------------------------------------- found by a new user's trial

def _se(name: str, host: str, protocol: str = "HTTPS", extra_meta: str = "") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: egress"
            f"{extra_meta}}}\nspec: {{hosts: [{host}], resolution: DNS, ports: [{{number: 443, name: https, "
            f"protocol: {protocol}}}]}}\n")


def test_an_input_error_imports_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.yaml").write_text(_se("a", "a.example.com"))
    (tmp_path / "in/b.yaml").write_text("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b\n")
    outcome = _import(tmp_path / "estate", {"prod": [tmp_path / "in"]})
    assert not outcome.written and not outcome.files and outcome.changes is None
    assert [d.code for d in outcome.diagnostics if d.severity.name == "ERROR"] == ["Y003", "F008"]
    assert not (tmp_path / "estate").exists()
    cli = _cli(str(tmp_path / "in"), "--env", "prod", "-C", str(tmp_path / "estate"), cwd=tmp_path)
    assert cli.returncode == 2 and "reproduces" not in cli.stdout


def test_a_new_environment_does_not_inherit_base_services(tmp_path: Path) -> None:
    for env, names in (("prod", "ab"), ("staging", "ab"), ("dev", "b")):
        (tmp_path / f"{env}.yaml").write_text("---\n".join(_se(n, f"{n}.example.com") for n in names))
    root = tmp_path / "estate"
    first = _import(root, {"prod": [tmp_path / "prod.yaml"], "staging": [tmp_path / "staging.yaml"]})
    assert first.proven and (root / "environments/base/egress.yaml").is_file()
    second = _import(root, {"dev": [tmp_path / "dev.yaml"]})
    assert second.proven, second.changes
    deletes = yaml.safe_load((root / "environments/dev/not-in-this-environment.yaml").read_text())["overrides"]
    assert deletes == [{"name": "a", "$patch": "delete"}]
    _, result = api.compile_repo(root, ["dev"], use_cache=False)
    assert sorted(a.identity.name for a in result.envs["dev"].artifacts) == ["b"]


def test_gitops_bookkeeping_does_not_block_a_declaration(tmp_path: Path) -> None:
    """Argo CD and Flux write tracking labels and annotations; they re-add them when they apply."""
    meta = (", labels: {app.kubernetes.io/instance: egress, kustomize.toolkit.fluxcd.io/name: infra}, "
            "annotations: {argocd.argoproj.io/tracking-id: 'egress:networking.istio.io/ServiceEntry:egress/a'}")
    (tmp_path / "live.yaml").write_text(_se("a", "a.example.com", extra_meta=meta))
    outcome = _import(tmp_path / "estate", {"prod": [tmp_path / "live.yaml"]})
    assert outcome.services == {"prod": ["a"]} and not outcome.kept


def test_protocol_case_makes_no_overlay(tmp_path: Path) -> None:
    (tmp_path / "prod.yaml").write_text(_se("a", "a.example.com", "https"))
    (tmp_path / "staging.yaml").write_text(_se("a", "a.example.com", "HTTPS"))
    outcome = _import(tmp_path / "estate", {"prod": [tmp_path / "prod.yaml"], "staging": [tmp_path / "staging.yaml"]})
    assert outcome.proven
    assert not [p for p in outcome.files if p.startswith(("environments/prod/", "environments/staging/"))
                and not p.endswith("env.yaml")]


def test_dry_run_proves_what_it_would_overwrite(tmp_path: Path) -> None:
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: egress}\n"
          "spec: {hosts: [a.example.com], http: [{timeout: 10s, route: [{destination: {host: a.example.com}}]}]}\n")
    (tmp_path / "live.yaml").write_text(_se("a", "a.example.com") + "---\n" + vs)
    root = tmp_path / "estate"
    assert _import(root, {"prod": [tmp_path / "live.yaml"]}).proven
    (tmp_path / "live.yaml").write_text(_se("a", "a.example.com") + "---\n" + vs.replace("10s", "15s"))
    before = (root / "environments/prod/passthrough/egress.yaml").read_bytes()
    check = _import(root, {"prod": [tmp_path / "live.yaml"]}, dry_run=True)
    assert not check.written and check.proven
    assert [str(d.position) for d in check.diagnostics if d.code == "F005"] == [
        "./environments/prod/passthrough/egress.yaml"]
    assert (root / "environments/prod/passthrough/egress.yaml").read_bytes() == before


def test_an_estate_that_does_not_load_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "estate"
    (root / "environments/prod").mkdir(parents=True)
    (root / "environments/prod/env.yaml").write_text("name: prod\nnamespace: egress\n")
    (root / "environments/base").mkdir()
    (root / "environments/base/broken.yaml").write_text("services: [\n")
    (tmp_path / "live.yaml").write_text(_se("a", "a.example.com"))
    outcome = _import(root, {"prod": [tmp_path / "live.yaml"]})
    assert not outcome.written and outcome.changes is None
    assert {d.code for d in outcome.diagnostics if d.severity.name == "ERROR"} == {"Y003", "F008"}
    assert sorted(p.name for p in (root / "environments").rglob("*.yaml")) == ["broken.yaml", "env.yaml"]


def test_an_object_kept_alike_everywhere_goes_to_base(tmp_path: Path) -> None:
    pa = ("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, "
          "namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
    for env in ("prod", "staging"):
        (tmp_path / f"{env}.yaml").write_text(_se("a", "a.example.com") + "---\n" + pa)
    outcome = _import(tmp_path / "estate", {e: [tmp_path / f"{e}.yaml"] for e in ("prod", "staging")})
    assert outcome.proven
    assert [p for p in outcome.files if "/passthrough/" in p] == ["environments/base/passthrough/istio-system.yaml"]
