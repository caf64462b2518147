"""`meshc drift` (docs/drift.md): the example estate's bundle against "live" objects made from it
as the API server returns them, with seeded random edits that the report must show exactly.

The server's view of an applied object (`as_served`) adds what `kubectl get -A -o yaml` prints
and the bundle lacks: metadata the server sets (resourceVersion, uid, generation,
creationTimestamp, managedFields; kubernetes.io "ObjectMeta" reference), `status`, kubectl's
last-applied annotation, Argo CD's tracking annotation (argo-cd.readthedocs.io
"Resource Tracking") and Flux's owner labels (fluxcd/kustomize-controller "sets owner labels"),
the CRDs' structural-schema defaults (KEP-575), and another served version of the same API
group for some objects (the CRDs serve v1, v1beta1 and v1alpha3 of Istio's networking kinds with
one schema: `test_istio_versions_of_a_kind_share_one_schema`); the whole wrapped in `kind: List`.
None of it is drift. The edits (`EDITS`) are: a changed value, a deleted object, an added
meshc-labelled object, an added unmanaged object, an added list item, a new label; each case's
report must be exactly its edits, with `meshc diff`'s paths (docs/diff.md, "Matching and list
semantics"), computed here independently from that table.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
import yaml
from click.testing import CliRunner, Result

from meshc.adopt.compare import BOOKKEEPING, compare_objects, normalise_live
from meshc.check.schema.defaults import Defaults
from meshc.adopt.drift import RESOURCES, DriftRequest, Expected, compile_expected, drift_against, kubectl_command
from meshc.adopt.live import SERVER_METADATA
from meshc.cli.drift import DRIFT_MARKER, drift_command
from meshc.diff.model import ChangeSet, Masked, ObjectDiff
from meshc.model.ids import ObjectId
from meshc.model.release import shipped_crds

from .conftest import REPO, check_golden

SEEDS = range(20)


# --- the server's view of the bundle ---------------------------------------------------------------

DEFAULTS = Defaults.shipped()
_OLDER = {"networking.istio.io": "v1beta1", "security.istio.io": "v1beta1", "gateway.networking.k8s.io": "v1beta1"}


def as_served(body: dict[str, Any], n: int) -> dict[str, Any]:
    """`body` as `kubectl get -o yaml` prints it once applied (by Argo CD or Flux) and reconciled."""
    out = DEFAULTS.apply(copy.deepcopy(body))
    meta = out["metadata"]
    last = json.dumps(body, sort_keys=True)
    meta.update({"resourceVersion": str(1000 + n), "uid": f"00000000-0000-4000-8000-{n:012d}",
                 "generation": 1 + n % 3, "creationTimestamp": "2026-01-02T03:04:05Z",
                 "managedFields": [{"apiVersion": out["apiVersion"], "fieldsType": "FieldsV1",
                                    "manager": "kubectl-client-side-apply", "operation": "Update",
                                    "time": "2026-01-02T03:04:05Z", "fieldsV1": {"f:spec": {}}}]})
    meta["annotations"] = {**meta.get("annotations", {}), "kubectl.kubernetes.io/last-applied-configuration": last,
                           "argocd.argoproj.io/tracking-id": f"mesh:{out['kind']}:{meta['namespace']}/{meta['name']}"}
    meta["labels"] = {**meta.get("labels", {}), "kustomize.toolkit.fluxcd.io/name": "mesh",
                      "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
    if out["apiVersion"].startswith("gateway.networking.k8s.io/") and out["kind"] == "Gateway":
        meta["annotations"]["gateway.istio.io/controller-version"] = "5"
    out["status"] = {"validationMessages": [], "observedGeneration": meta["generation"]}
    group = out["apiVersion"].rpartition("/")[0]
    if n % 3 == 1 and group in _OLDER:
        out["apiVersion"] = f"{group}/{_OLDER[group]}"
    return out


def served_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}}


def write_live(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(served_list(objects), sort_keys=True))
    return path


@pytest.fixture(scope="module")
def bundles() -> dict[str, Expected]:
    return {env: compile_expected(REPO, env) for env in ("prod", "edge")}


def served(expected: Expected) -> list[dict[str, Any]]:
    return [as_served(body, n) for n, (_, body) in enumerate(sorted(expected.objects.items()))]


def run(expected: Expected, path: Path, env: str, **more: Any) -> ChangeSet:
    return drift_against(expected, DriftRequest(env, (str(path),), REPO, **more)).changes


def test_the_served_bundle_is_no_drift(bundles: dict[str, Expected], tmp_path: Path) -> None:
    for env, expected in bundles.items():
        live = served(expected)
        assert any(o["apiVersion"].endswith("/v1beta1") for o in live)
        assert any("gateway.istio.io/controller-version" in o["metadata"]["annotations"] for o in live) == (
            env == "edge")
        changes = run(expected, write_live(tmp_path / f"{env}.yaml", live), env)
        assert changes.empty, changes
        assert changes.notes == ()
        assert changes.risks == ()


def test_bundle_objects_are_the_index_objects_only(bundles: dict[str, Expected]) -> None:
    """Envoy clusters and listeners and iptables chains are the proxies' files, never applied."""
    prod = bundles["prod"]
    kinds = {oid.kind for oid in prod.objects}
    assert kinds <= {"ServiceEntry", "WorkloadEntry", "DestinationRule", "Gateway", "VirtualService",
                     "AuthorizationPolicy", "Sidecar", "BackendTLSPolicy"}
    assert all(prod.sources[oid].startswith("environments/") for oid in prod.objects)
    assert prod.production and prod.env_source == "environments/prod/env.yaml:1:1"


# --- the edits, and the paths meshc diff prints for them -------------------------------------------

SET = ""
LIST_RULES: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {   # docs/diff.md's table
    "ServiceEntry": ((("spec", "hosts"), SET), (("spec", "addresses"), SET), (("spec", "exportTo"), SET),
                     (("spec", "ports"), "number"), (("spec", "endpoints"), "address")),
    "DestinationRule": ((("spec", "subsets"), "name"), (("spec", "exportTo"), SET),
                        (("spec", "trafficPolicy", "portLevelSettings"), "port.number"),
                        (("spec", "subsets", "*", "trafficPolicy", "portLevelSettings"), "port.number")),
}


def _rule(kind: str, names: tuple[str, ...]) -> str | None:
    for pattern, key in LIST_RULES.get(kind, ()):
        if len(pattern) == len(names) and all(p in ("*", n) for p, n in zip(pattern, names, strict=True)):
            return key
    return None


def _dig(item: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        item = item[part]
    return item


def _quoted(key: str) -> str:
    return f'["{key}"]' if any(c in key for c in '.[]" ') else f".{key}"


def printed(kind: str, body: dict[str, Any], raw: tuple[Any, ...]) -> str:
    """The path meshc diff prints for `raw` (keys and list positions in `body`)."""
    out, names, value = "", (), body
    for seg in raw:
        if isinstance(seg, int):
            key = _rule(kind, names)
            item = value[seg]
            if key is None:
                out += f"[{seg}]"
                names += (str(seg),)
            else:
                label = str(item) if key == SET else f"{key}={_dig(item, key)}"
                out += f"[{label}]"
                names += ("*",)
            value = item
        else:
            out += _quoted(seg) if out else seg
            names += (seg,)
            value = value[seg]
    return out


def leaves(kind: str, value: Any, raw: tuple[Any, ...] = (), names: tuple[str, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Scalar leaves whose change is one field change: not a set item, not a keyed item's key."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(kind, v, (*raw, k), (*names, k))
    elif isinstance(value, list):
        key = _rule(kind, names)
        if key == SET:
            return
        for i, item in enumerate(value):
            inner = leaves(kind, item, (*raw, i), (*names, "*" if key else str(i)))
            if key is None:
                yield from inner
            else:
                skip = len(raw) + 1 + len(key.split("."))
                yield from (p for p in inner if tuple(map(str, p[len(raw) + 1:skip])) != tuple(key.split(".")))
    elif value is not None:
        yield raw


def _get(body: Any, raw: tuple[Any, ...]) -> Any:
    for seg in raw:
        body = body[seg]
    return body


def _set(body: Any, raw: tuple[Any, ...], value: Any) -> None:
    _get(body, raw[:-1])[raw[-1]] = value


def _other(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    return f"{value}-drifted"


@dataclass(frozen=True)
class Want:
    """What a report must hold: added and removed identities, field changes per modified object."""

    added: frozenset[ObjectId] = frozenset()
    removed: frozenset[ObjectId] = frozenset()
    changed: frozenset[tuple[ObjectId, str, str]] = frozenset()   # (object, printed path, change kind)
    values: frozenset[tuple[ObjectId, str, str]] = frozenset()    # (object, path, repr(before, after))
    unmanaged: int = 0

    def __add__(self, other: Want) -> Want:
        return Want(self.added | other.added, self.removed | other.removed, self.changed | other.changed,
                    self.values | other.values, self.unmanaged + other.unmanaged)


Edit = Callable[[random.Random, dict[ObjectId, dict[str, Any]], ObjectId, int], Want]


def change_value(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    body = live[oid]
    choices = sorted(leaves(oid.kind, body["spec"], ("spec",), ("spec",)), key=repr)
    raw = rng.choice(choices)
    before = _get(body, raw)
    after = _other(before)
    _set(body, raw, after)
    where = printed(oid.kind, body, raw)
    return Want(changed=frozenset({(oid, where, "changed")}), values=frozenset({(oid, where, repr((before, after)))}))


def delete_object(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    del live[oid]
    return Want(removed=frozenset({oid}))


def _copy_as(live: dict[ObjectId, dict[str, Any]], oid: ObjectId, name: str) -> tuple[ObjectId, dict[str, Any]]:
    body = copy.deepcopy(live[oid])
    body["metadata"]["name"] = name
    for key in ("uid", "resourceVersion"):
        body["metadata"][key] += "-copy"
    new = ObjectId(oid.kind, oid.namespace, name)
    live[new] = body
    return new, body


def add_meshc_object(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    new, _ = _copy_as(live, oid, f"left-behind-{n}")
    return Want(added=frozenset({new}))


def add_unmanaged(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    _, body = _copy_as(live, oid, f"hand-made-{n}")
    body["metadata"]["labels"] = {"team": "platform"}
    return Want(unmanaged=1)


def add_list_item(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    body = live[oid]
    spec = body["spec"]
    if oid.kind == "ServiceEntry" and rng.random() < 0.5:
        host = f"extra-{n}.drift.example.com"
        spec["hosts"].append(host)
        return Want(changed=frozenset({(oid, f"spec.hosts[{host}]", "added")}))
    if oid.kind == "ServiceEntry":
        number = 40000 + n
        spec["ports"].append({"name": f"tcp-{number}", "number": number, "protocol": "TCP"})
        return Want(changed=frozenset({(oid, f"spec.ports[number={number}]", "added")}))
    lists = sorted((raw for raw in _lists(spec, ("spec",)) if _rule(oid.kind, tuple(map(str, raw))) is None), key=repr)
    raw = rng.choice(lists)
    items = _get(body, raw)
    items.append(copy.deepcopy(items[-1]) if isinstance(items[-1], dict) else f"added-{n}")
    return Want(changed=frozenset({(oid, printed(oid.kind, body, (*raw, len(items) - 1)), "added")}))


def _lists(value: Any, raw: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _lists(v, (*raw, k))
    elif isinstance(value, list) and value:
        if all(not isinstance(v, (dict, list)) for v in value) or all(isinstance(v, dict) for v in value):
            yield raw
        for i, v in enumerate(value):
            if isinstance(v, (dict, list)):
                yield from _lists(v, (*raw, i))


def change_label(rng: random.Random, live: dict[ObjectId, dict[str, Any]], oid: ObjectId, n: int) -> Want:
    key = f"drift.example.com/edit-{n}"
    live[oid]["metadata"]["labels"][key] = "yes"
    return Want(changed=frozenset({(oid, f'metadata.labels["{key}"]', "added")}))


EDITS: tuple[Edit, ...] = (change_value, delete_object, add_meshc_object, add_unmanaged, add_list_item, change_label)


def edited(expected: Expected, seed: int) -> tuple[list[dict[str, Any]], Want]:
    """The served bundle with 1-4 edits on distinct objects, and what the report must say."""
    rng = random.Random(seed)
    live = {ObjectId.of(b): b for b in served(expected)}
    targets = rng.sample(sorted(live), rng.randint(1, 4))
    want = Want()
    for n, oid in enumerate(targets):
        edit = EDITS[(seed + n) % len(EDITS)] if n == 0 else rng.choice(EDITS)
        if edit is add_list_item and not any(True for _ in _lists(live[oid]["spec"], ("spec",))):
            edit = change_label
        want = want + edit(rng, live, oid, seed * 10 + n)
    return list(live.values()), want


def found(changes: ChangeSet) -> Want:
    (env,) = changes.envs.values()
    changed = {(d.id, c.where, c.kind) for d in env.modified for c in d.changes}
    values = {(d.id, c.where, repr((c.before, c.after))) for d in env.modified for c in d.changes
              if c.kind == "changed"}
    assert not env.renamed
    return Want(frozenset(s.id for s in env.added), frozenset(s.id for s in env.removed),
                frozenset(changed), frozenset(values))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_report_is_exactly_the_edits(bundles: dict[str, Expected], tmp_path: Path, seed: int) -> None:
    env = ("prod", "edge")[seed % 2]
    live, want = edited(bundles[env], seed)
    path = write_live(tmp_path / "live.yaml", live)
    changes = run(bundles[env], path, env)
    assert found(changes) == replace(want, unmanaged=0)
    left_out = [n for n in changes.notes if "not managed by meshc" in n]
    assert left_out == ([f"{want.unmanaged} live object{'s' if want.unmanaged > 1 else ''} not in the bundle and "
                         "not managed by meshc (no app.kubernetes.io/managed-by: meshc label) left out; "
                         "--include-unmanaged lists them"] if want.unmanaged else [])
    if want.unmanaged:
        every = run(bundles[env], path, env, include_unmanaged=True)
        hand_made = {s.id for s in every.envs[env].added if s.id.name.startswith("hand-made-")}
        assert len(hand_made) == want.unmanaged
        assert found(every).added == want.added | hand_made
    # the positions of added objects are their lines in the live file
    text = path.read_text().splitlines()
    for item in changes.envs[env].added:
        file, line, _ = item.source.rsplit(":", 2)
        assert file == str(path) and f"name: {item.id.name}" in "\n".join(text[int(line) - 1:int(line) + 40])


def test_the_seeds_cover_every_edit(bundles: dict[str, Expected]) -> None:
    seen: set[str] = set()
    for seed in SEEDS:
        _, want = edited(bundles[("prod", "edge")[seed % 2]], seed)
        seen |= {"added"} if want.added else set()
        seen |= {"removed"} if want.removed else set()
        seen |= {"unmanaged"} if want.unmanaged else set()
        seen |= {kind for _, _, kind in want.changed}
        seen |= {"label" for _, path, _ in want.changed if path.startswith("metadata.labels")}
        seen |= {"keyed" for _, path, _ in want.changed if "=" in path}
    assert seen == {"added", "removed", "unmanaged", "changed", "label", "keyed"}


# --- normalisation ------------------------------------------------------------------------------

def test_istio_versions_of_a_kind_share_one_schema() -> None:
    """Every served version of Istio's networking and security kinds has the same schema in the
    shipped CRDs (istio/api customresourcedefinitions.gen.yaml): one stored object, any version."""
    data = orjson.loads(shipped_crds().read_bytes())
    for crd in data["items"]:
        if crd["spec"]["group"] in ("networking.istio.io", "security.istio.io"):
            schemas = {orjson.dumps(v["schema"], option=orjson.OPT_SORT_KEYS) for v in crd["spec"]["versions"]}
            assert len(schemas) == 1, crd["spec"]["names"]["kind"]


GATEWAY = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "egress", "namespace": "istio-egress"},
           "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"},
                                  {"name": "tls", "port": 443, "protocol": "TLS", "tls": {"certificateRefs": [
                                      {"name": "cert"}]}}]}}


def test_crd_defaults_are_not_drift() -> None:
    """The Gateway API CRD defaults allowedRoutes, tls.mode and certificateRefs' group and kind;
    the live object holds them, the bundle does not: no drift. A live value other than the
    default is drift, shown against the default."""
    oid = ObjectId.of(GATEWAY)
    served_gw = DEFAULTS.apply(GATEWAY)
    listener = served_gw["spec"]["listeners"][1]
    assert listener["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert listener["tls"] == {"mode": "Terminate",
                               "certificateRefs": [{"group": "", "kind": "Secret", "name": "cert"}]}
    assert "status" not in served_gw   # the schema's status default is the controllers'
    assert compare_objects("e", {oid: GATEWAY}, {oid: served_gw}).empty
    other = copy.deepcopy(served_gw)
    other["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"] = "All"
    (diff,) = compare_objects("e", {oid: GATEWAY}, {oid: other}).envs["e"].modified
    assert [(c.where, c.before, c.after) for c in diff.changes] == [
        ("spec.listeners[0].allowedRoutes.namespaces.from", "Same", "All")]
    assert not compare_objects("e", {oid: GATEWAY}, {oid: served_gw}, defaults=Defaults.none()).empty


def test_nulls_and_numbers_as_the_server_stores_them() -> None:
    we = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": "w", "namespace": "n"},
          "spec": {"address": "10.0.0.1", "weight": 2, "network": None}}
    oid = ObjectId.of(we)
    live = copy.deepcopy(we)
    live["spec"].pop("network")            # a null the schema does not allow is pruned by the server
    live["spec"]["weight"] = 2.0           # JSON 2.0 printed back as 2
    assert compare_objects("e", {oid: we}, {oid: live}).empty


def test_api_versions_of_one_group_are_one_object_and_another_group_is_not() -> None:
    se = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g", "namespace": "n"},
          "spec": {"selector": {"istio": "egressgateway"}}}
    oid = ObjectId.of(se)
    for version in ("v1beta1", "v1alpha3"):
        assert compare_objects("e", {oid: se}, {oid: {**se, "apiVersion": f"networking.istio.io/{version}"}}).empty
    moved = {**se, "apiVersion": "gateway.networking.k8s.io/v1"}
    (diff,) = compare_objects("e", {oid: se}, {oid: moved}).envs["e"].modified
    assert [(c.where, c.after) for c in diff.changes][0] == ("apiVersion", "gateway.networking.k8s.io/v1")


def test_bookkeeping_is_dropped_and_listed_once() -> None:
    body = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "s", "namespace": "n", "labels": {"app.kubernetes.io/managed-by": "meshc"}},
            "spec": {"hosts": ["a.example.com"]}}
    oid = ObjectId.of(body)
    live = copy.deepcopy(body)
    for entry in BOOKKEEPING:
        live["metadata"].setdefault(entry.where, {})[entry.key] = "x"
    assert compare_objects("e", {oid: body}, {oid: live}).empty
    # Argo CD's instance label counts when the bundle sets it itself
    mine = copy.deepcopy(body)
    mine["metadata"]["labels"]["app.kubernetes.io/instance"] = "mesh"
    (diff,) = compare_objects("e", {oid: mine}, {oid: live}).envs["e"].modified
    assert [(c.where, c.before, c.after) for c in diff.changes] == [
        ('metadata.labels["app.kubernetes.io/instance"]', "mesh", "x")]
    assert normalise_live(live)["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "meshc",
                                                          "app.kubernetes.io/instance": "x"}
    assert all(e.reason and e.source for e in BOOKKEEPING)


def test_compare_objects_does_not_mutate_its_input(bundles: dict[str, Expected]) -> None:
    expected = bundles["edge"].objects
    live = {oid: as_served(b, n) for n, (oid, b) in enumerate(sorted(expected.items()))}
    before = copy.deepcopy((expected, live))
    assert compare_objects("edge", expected, live, "bundle", "live").empty
    assert (expected, live) == before


def test_risk_flags_read_the_drift_as_a_change_from_bundle_to_cluster(bundles: dict[str, Expected],
                                                                     tmp_path: Path) -> None:
    """A DestinationRule weakened by hand in prod: tls-weakened and production-touched, at the declaration."""
    expected = bundles["prod"]
    live = {ObjectId.of(b): b for b in served(expected)}
    rule = next(oid for oid, b in sorted(live.items()) if oid.kind == "DestinationRule"
                and "SIMPLE" in json.dumps(b["spec"]))
    text = json.dumps(live[rule]["spec"]).replace('"SIMPLE"', '"DISABLE"')
    live[rule]["spec"] = json.loads(text)
    changes = run(expected, write_live(tmp_path / "live.yaml", list(live.values())), "prod")
    codes = {(r.code, r.source) for r in changes.risks}
    assert ("tls-weakened", expected.sources[rule]) in codes
    assert any(code == "production-touched" for code, _ in codes)


def test_sensitive_values_are_masked(bundles: dict[str, Expected], tmp_path: Path) -> None:
    expected = bundles["prod"]
    live = {ObjectId.of(b): b for b in served(expected)}
    oid = next(o for o in sorted(live) if o.kind == "DestinationRule")
    live[oid]["metadata"]["annotations"]["example.com/api-token"] = "s3cr3t-value"
    changes = run(expected, write_live(tmp_path / "live.yaml", list(live.values())), "prod")
    (diff,) = changes.envs["prod"].modified
    (change,) = diff.changes
    assert change.where == "metadata.annotations" and change.kind == "added"
    assert isinstance(change.after["example.com/api-token"], Masked)
    assert "s3cr3t-value" not in repr(changes)


def test_the_ignore_file_suppresses_accepted_drift(bundles: dict[str, Expected], tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "meshc.yaml").write_text("diff:\n  ignoreFile: accepted.yaml\n")
    (root / "accepted.yaml").write_text("- {env: prod, kind: WorkloadEntry, path: 'metadata.labels*', "
                                        "reason: the SRE bot labels VMs}\n")
    expected = bundles["prod"]
    live = {ObjectId.of(b): b for b in served(expected)}
    oid = next(o for o in sorted(live) if o.kind == "WorkloadEntry")
    live[oid]["metadata"]["labels"]["bot"] = "1"
    changes = drift_against(expected, DriftRequest("prod", (str(write_live(tmp_path / "l.yaml", list(live.values()))),),
                                                   root)).changes
    assert changes.empty
    assert [(i.object, i.path) for i in changes.ignored] == [(oid, "metadata.labels.bot")]


# --- the command --------------------------------------------------------------------------------

def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner(env={"MESHC_DIFF_SALT": None}).invoke(drift_command, ["-C", str(REPO), *args], input=stdin)


@pytest.fixture(scope="module")
def live_files(bundles: dict[str, Expected], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    clean = write_live(folder / "clean.yaml", served(bundles["prod"]))
    live, _ = edited(bundles["prod"], 8)   # seed 8: an object removed, a meshc object left behind
    by_id = {ObjectId.of(b): b for b in live}
    rule = next(oid for oid in sorted(by_id) if oid.kind == "DestinationRule")
    change_value(random.Random(1), by_id, rule, 999)
    return {"clean": clean, "drifted": write_live(folder / "drifted.yaml", list(by_id.values()))}


def test_cli_no_drift_exits_0_even_with_exit_code(live_files: dict[str, Path]) -> None:
    result = invoke("prod", "--live", str(live_files["clean"]), "--exit-code")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [f"meshc drift: prod: bundle prod -> live {live_files['clean']}",
                                              "no drift"]


def test_cli_drift_exit_codes_and_formats(live_files: dict[str, Path], tmp_path: Path) -> None:
    path = str(live_files["drifted"])
    assert invoke("prod", "--live", path).exit_code == 0
    text = invoke("prod", "--live", path, "--exit-code")
    assert text.exit_code == 1
    assert text.stdout.startswith("meshc drift: prod: ") and "== prod (production) ==" in text.stdout
    markdown = invoke("prod", "--live", path, "--format", "markdown")
    assert markdown.stdout.splitlines()[:2] == [DRIFT_MARKER, "## meshc drift"]
    report = json.loads(invoke("prod", "--live", path, "--format", "json").stdout)
    doc = (REPO / "docs" / "diff.md").read_text()
    schema = json.loads(re.search(r"```json\n(\{\n  \"\$schema\".*?)\n```", doc, re.DOTALL).group(1))  # type: ignore[union-attr]
    schema["$defs"]["side"]["properties"]["kind"]["enum"].append("live")   # docs/drift.md: the live side
    jsonschema_rs.validate(schema, report)
    assert report["base"] == {"spec": "bundle prod", "kind": "bundle", "commit": None}
    assert report["head"] == {"spec": f"live {path}", "kind": "live", "commit": None}
    assert report["summary"]["changed"] is True
    out = invoke("prod", "--live", path, "--output", f"json={tmp_path / 'd.json'}",
                 "--output", f"markdown={tmp_path / 'd.md'}")
    assert out.exit_code == 0 and out.stdout == ""
    assert json.loads((tmp_path / "d.json").read_text()) == report
    assert (tmp_path / "d.md").read_text().startswith(DRIFT_MARKER)


def test_cli_reads_stdin(live_files: dict[str, Path]) -> None:
    result = invoke("prod", "--live", "-", "--exit-code", stdin=live_files["drifted"].read_text())
    assert result.exit_code == 1
    assert "live <stdin>" in result.stdout.splitlines()[0]
    assert "[<stdin>:" in result.stdout   # added objects at their stdin line, when there are some


def test_cli_kind_filter(live_files: dict[str, Path]) -> None:
    result = invoke("prod", "--live", str(live_files["drifted"]), "--kind", "sidecar", "--format", "json")
    kinds = {o["kind"] for e in json.loads(result.stdout)["environments"]
             for what in ("added", "removed", "modified") for o in e[what]}
    assert kinds <= {"Sidecar"}


def test_cli_unknown_environment_names_the_known_ones(live_files: dict[str, Path]) -> None:
    result = invoke("nowhere", "--live", str(live_files["clean"]))
    assert result.exit_code == 2
    assert "unknown environment 'nowhere'; known: dev, edge, prod, staging" in result.stderr


def test_cli_bad_live_input_is_reported_at_its_line(live_files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: List\nitems:\n- kind: ServiceEntry\n  spec: {hosts: [a\n")
    result = invoke("prod", "--live", str(broken))
    assert result.exit_code == 2
    assert re.search(rf"{re.escape(str(broken))}:\d+:\d+: error", result.stderr), result.stderr
    assert "nothing usable was read from the live input" in result.stderr
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\nkind: ServiceEntry\n")
    result = invoke("prod", "--live", str(foreign))
    assert result.exit_code == 2
    assert f"{foreign}:1:1: warning[F003]" in result.stderr and f"{foreign}:5:1: warning[F001]" in result.stderr
    # something usable besides: the warnings are printed, the comparison runs
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(live_files["clean"].read_text() + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    result = invoke("prod", "--live", str(mixed), "--exit-code")
    assert result.exit_code == 0, result.output
    assert f"{mixed}:" in result.stderr and "warning[F003]" in result.stderr


def test_cli_duplicates_are_reported_with_both_positions(live_files: dict[str, Path], tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    text = live_files["clean"].read_text()
    twice.write_text(text + "---\n" + text)
    result = invoke("prod", "--live", str(twice), "--exit-code")
    assert result.exit_code == 2  # the report is printed, but an object read twice may hide a change
    assert "error[F002]" in result.stderr


def test_cli_empty_live_input_shows_everything_removed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: \"\"\n")
    result = invoke("edge", "--live", str(empty), "--format", "json", "--exit-code")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["summary"]["removed"] > 0 and report["summary"]["added"] == 0
    assert any("holds no object" in n for n in report["notes"])
    assert any(n.startswith("the live input holds no ServiceEntry at all") for n in report["notes"])


def test_cli_print_command(bundles: dict[str, Expected]) -> None:
    prod = invoke("prod", "--print-command").stdout.strip()
    edge = invoke("edge", "--print-command").stdout.strip()
    assert prod == kubectl_command()
    assert edge == kubectl_command([("gateway.networking.k8s.io", "Gateway")])
    assert edge.endswith(",gateways.gateway.networking.k8s.io -A -o yaml")
    assert invoke("prod").exit_code == 2   # no --live


def test_modified_objects_keep_meshc_diff_sources(bundles: dict[str, Expected], live_files: dict[str, Path]) -> None:
    changes = run(bundles["prod"], live_files["drifted"], "prod")
    assert changes.envs["prod"].modified and changes.envs["prod"].added and changes.envs["prod"].removed
    for diff in changes.envs["prod"].modified:
        assert isinstance(diff, ObjectDiff)
        assert diff.source == bundles["prod"].sources[diff.id]


def test_bundle_namespaces_leave_out_other_environments(bundles: dict[str, Expected], tmp_path: Path) -> None:
    """Two environments in one cluster: dev's meshc objects are not prod's left-behind ones."""
    expected = bundles["prod"]
    live = served(expected)
    other = copy.deepcopy(live[0])
    other["metadata"]["namespace"] = "egress-dev"
    path = write_live(tmp_path / "live.yaml", [*live, other])
    assert found(run(expected, path, "prod")).added == {ObjectId.of(other)}
    changes = run(expected, path, "prod", bundle_namespaces=True)
    assert changes.empty
    assert [n for n in changes.notes if "outside the bundle's namespaces" in n] == [
        "1 live object outside the bundle's namespaces (checkout, egress, istio-system, logistics) left out "
        "(--bundle-namespaces)"]


# --- docs/drift.md ------------------------------------------------------------------------------

DOC = REPO / "docs" / "drift.md"


def _cronjob_manifests() -> list[dict[str, Any]]:
    block = re.search(r"```yaml\n(apiVersion: v1\nkind: Namespace.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    return [d for d in yaml.safe_load_all(block.group(1)) if d]


def test_the_cronjob_reads_exactly_the_kinds_drift_asks_for() -> None:
    docs = {d["kind"]: d for d in _cronjob_manifests()}
    assert set(docs) == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "CronJob"}
    rules = docs["ClusterRole"]["rules"]
    granted = {f"{r}.{rule['apiGroups'][0]}" for rule in rules for r in rule["resources"]}
    assert all(rule["verbs"] == ["get", "list"] and len(rule["apiGroups"]) == 1 for rule in rules)
    assert granted == set(RESOURCES.values())
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshc-drift", "namespace": "meshc-drift"}]
    pod = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "meshc-drift"
    script = " ".join(pod["containers"][0]["args"])
    assert "$$(meshc drift prod -C /work/repo --print-command) > /work/live.yaml" in script
    assert "meshc drift prod -C /work/repo --live /work/live.yaml --exit-code" in script


def test_the_cronjob_manifests_validate() -> None:
    validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate to run it")
    for doc in _cronjob_manifests():
        validate.validate(doc, "1.37.0", strict=True)


def test_the_doc_lists_every_ignored_field() -> None:
    text = DOC.read_text()
    for entry in BOOKKEEPING:
        assert f"`{entry.key}`" in text, entry.key
    for key in SERVER_METADATA:
        assert f"`{key}`" in text or f"`metadata.{key}`" in text, key
    assert "`kubectl.kubernetes.io/last-applied-configuration`" in text
    assert "[`meshc diff`](diff.md)" in text


# --- goldens (tests/goldens/drift/; MESHC_UPDATE_GOLDENS=drift rewrites them) ----------------------

GOLDENS = REPO / "tests" / "goldens" / "drift"


def _edge_drifted(expected: Expected) -> str:
    """edge served back with three hand edits: a DestinationRule's TLS mode, a ServiceEntry deleted,
    a meshc ServiceEntry left behind."""
    live = {ObjectId.of(b): b for b in served(expected)}
    rule = next(o for o in sorted(live) if o.kind == "DestinationRule" and o.name == "payments-stripe")
    live[rule]["spec"] = json.loads(json.dumps(live[rule]["spec"]).replace('"SIMPLE"', '"DISABLE"'))
    gone = next(o for o in sorted(live) if o.kind == "ServiceEntry" and o.name == "legacy-billing")
    del live[gone]
    _copy_as(live, next(o for o in sorted(live) if o.kind == "ServiceEntry" and o.name == "partner-sftp"),
             "partner-sftp-old")
    return yaml.safe_dump(served_list(list(live.values())), sort_keys=True)


@pytest.mark.parametrize("fmt,suffix", [("text", "txt"), ("markdown", "md")])
def test_golden_reports(bundles: dict[str, Expected], fmt: str, suffix: str) -> None:
    result = invoke("edge", "--live", "-", "--format", fmt, stdin=_edge_drifted(bundles["edge"]))
    assert result.exit_code == 0, result.output
    check_golden(GOLDENS / f"edge.{suffix}", result.stdout.encode())
