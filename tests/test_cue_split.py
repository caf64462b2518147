"""The cue layer cuts an environment into one document per service when the policies allow it:
same findings as one whole document, and a change to one service re-vets that service only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from meshc import api
from meshc.check.cue import layer as cue_layer
from meshc.check.cue.policy import CueEngine
from meshc.check.cue.scope import per_service, reads_objects

from .conftest import REPO

# ---------------------------------------------------------------- the scope scan (no engine)


def test_shipped_policies_look_at_one_service_at_a_time() -> None:
    texts = [p.read_text() for p in sorted((REPO / "policies").rglob("*.cue"))]
    assert texts and per_service(texts)


@pytest.mark.parametrize("text", [
    "services: [_]: owner: =~\"\\\\S\"\n",
    "objects: [string]: {...}\nservices?: [_]: {a: int}\n",
    "// len(services) in a comment is not a reference\nservices: [_]: {}\n",
    "env: policyProfile: string\nservices: [_]: {if env.policyProfile == \"x\" {a: 1}}\n",
    "_note: \"services are checked one by one\"\nservices: [_]: {}\n",
])
def test_declarations_only(text: str) -> None:
    assert per_service([text])


@pytest.mark.parametrize("text", [
    "_n: len(services)\n_n: <=3\n",
    "services: [N=_]: {_others: [for k, _ in services if k != N {k}]}\n",
    "_all: [for k, v in objects {k}]\n",
    "services: [_]: {msg: \"\\(len(services)) services\"}\n",
    "X=services: [_]: {}\n",
    "nested: {services: [_]: {}}\n",
    "a: 1, services: [_]: {}\n",
    "services: [_]: {raw: #\"services\"#}\n",
])
def test_references_keep_the_environment_whole(text: str) -> None:
    assert not per_service([text])


def test_one_referring_file_keeps_all_whole() -> None:
    assert not per_service(["services: [_]: {}\n", "_n: len(services)\n"])


# ---------------------------------------------------------------- with the engine

ENV = "name: {name}\nnamespace: egress\npolicyProfile: {profile}\nnetworks: [net-a]\n"
SERVICE = """  - name: {name}
    owner: {owner}
    hosts: [{host}]
    resolution: {resolution}
    ports:
      - {{number: 443, protocol: HTTPS}}
    exportTo: [{export}]
"""


def _repo(tmp_path: Path, services: list[dict[str, str]], extra_policy: str = "") -> Path:
    root = tmp_path / "repo"
    for env, profile in (("dev", "relaxed"), ("prod", "strict")):
        (root / "environments" / env).mkdir(parents=True)
        (root / "environments" / env / "env.yaml").write_text(ENV.format(name=env, profile=profile))
    (root / "environments/base").mkdir(parents=True)
    _write_services(root, services)
    shutil.copytree(REPO / "policies", root / "policies")
    if extra_policy:
        (root / "policies/extra.cue").write_text(extra_policy)
    return root


def _write_services(root: Path, services: list[dict[str, str]]) -> None:
    text = "services:\n" + "".join(SERVICE.format(**s) for s in services)
    (root / "environments/base/all.yaml").write_text(text)


def _svc(name: str, owner: str = "team", host: str = "", export: str = '"."',
         resolution: str = "dns") -> dict[str, str]:
    return {"name": name, "owner": owner, "host": host or f"{name}.example.com", "export": export,
            "resolution": resolution}


def _findings(outcome: api.CheckOutcome) -> list[str]:
    return [f"{d.env} {d.code} {d.object} {d.position} {d.path} {d.message}" for d in outcome.diagnostics]


class _Recorder:
    """Wraps CueEngine.vet_report (under vet_groups too) to record the document keys each engine
    call received."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        self.services: list[str] = []  # the services in those documents
        original = CueEngine.vet_report

        def vet_report(engine: CueEngine, groups: Any, *args: Any) -> Any:
            self.keys.extend(key for _, docs in groups for key in docs)
            self.services.extend(name for _, docs in groups for doc in docs.values() for name in doc["services"])
            return original(engine, groups, *args)

        monkeypatch.setattr(CueEngine, "vet_report", vet_report)


ESTATE = [
    _svc("api"),
    _svc("noowner", owner='" "'),
    _svc("wild", host='"*.wild.example.com"', resolution="none"),
    _svc("everyone", export='"*"'),
    _svc("fine"),
]
ENV_POLICY = "// rule env-networks: network names start with net-b.\nenv: networks: [...=~\"^net-b\"]\n"


@pytest.mark.cue
def test_split_finds_exactly_what_the_whole_document_finds(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path, ESTATE, ENV_POLICY)
    recorder = _Recorder(monkeypatch)
    split = api.check(root, layers=("cue",), use_cache=False)
    assert not split.input_error, _findings(split)
    assert any("/" in key for key in recorder.keys)  # it was cut per service
    recorder.keys.clear()
    monkeypatch.setattr(cue_layer, "per_service", lambda texts: False)
    whole = api.check(root, layers=("cue",), use_cache=False)
    assert sorted(recorder.keys) == ["dev", "prod"]  # one document per environment
    found = _findings(split)
    assert found == _findings(whole)
    # every kind of violation is there: per service in both profiles, strict-only, and on `env`
    assert any(f.startswith("dev P001") and "noowner" in f for f in found), found
    assert any(f.startswith("prod P001") and "wild" in f for f in found), found
    assert any(f.startswith("prod P001") and "exportTo" in f for f in found), found
    assert sum("net-b" in f for f in found) == 2, found  # once per environment, not per service


@pytest.mark.cue
def test_one_service_changed_re_vets_that_service_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path, ESTATE)
    first = api.check(root, layers=("cue",))
    recorder = _Recorder(monkeypatch)
    changed = [*ESTATE[:-1], _svc("fine", owner='" "')]
    _write_services(root, changed)
    second = api.check(root, layers=("cue",))
    # one document per environment (each the service's own, or a pack of it), checked lean,
    # then whole since it fails (meshc.check.cue.fast)
    assert set(recorder.services) == {"fine"} and all("/" in key for key in recorder.keys), recorder.keys
    new = set(_findings(second)) - set(_findings(first))
    assert new and all("fine" in f or "all.yaml" in f for f in new), new
    recorder.keys.clear()
    recorder.services.clear()
    assert _findings(api.check(root, layers=("cue",))) == _findings(second)
    assert recorder.keys == []  # all answered from the cache: the engine did not run


@pytest.mark.cue
def test_a_cross_service_policy_sees_the_whole_environment(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    policy = ("// rule one-api: at most one service per environment is named like an API.\n"
              "_apis: [for k, _ in services if k =~ \"^api\" {k}]\n"
              "services: [_]: {}\n"
              "env: _apiCount: len(_apis) & <=1\n")
    root = _repo(tmp_path, [_svc("api"), _svc("api2"), _svc("fine")], policy)
    recorder = _Recorder(monkeypatch)
    outcome = api.check(root, layers=("cue",), use_cache=False)
    assert sorted(recorder.keys) == ["dev", "prod"]
    assert not outcome.input_error
    assert [d.env for d in outcome.diagnostics if d.code == "P001"] == ["dev", "prod"], _findings(outcome)


@pytest.mark.parametrize("text, reads", [
    ("objects: [string]: {...} // the shape\n", False),
    ("objects: [_]: {...}\nservices: [_]: {}\n", False),
    ("// objects: [string]: metadata: name: \"x\"\nservices: [_]: {}\n", False),
    ("objects: [string]: metadata: namespace: \"egress\"\n", True),
    ("objects: [string]: {...}\nobjects: [string]: spec: hosts: [...string]\n", True),
    ("_n: len(objects)\n", True),
    ("nested: {objects: [string]: {...}}\n", True),
])
def test_objects_are_sent_only_when_a_policy_constrains_them(text: str, reads: bool) -> None:
    assert reads_objects([text]) is reads


def test_shipped_policies_do_not_read_objects() -> None:
    assert not reads_objects([p.read_text() for p in sorted((REPO / "policies").rglob("*.cue"))])


@pytest.mark.cue
def test_object_policies_get_the_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    original = CueEngine.vet_report

    def vet_report(engine: CueEngine, groups: Any, *args: Any) -> Any:
        sent.extend(doc for _, docs in groups for doc in docs.values())
        return original(engine, groups, *args)

    monkeypatch.setattr(CueEngine, "vet_report", vet_report)
    root = _repo(tmp_path, [_svc("api"), _svc("fine")])
    clean = api.check(root, layers=("cue",), use_cache=False)
    assert not clean.input_error and not [d for d in clean.diagnostics if d.code == "P001"]
    assert sent and all(doc["objects"] == {} for doc in sent)  # no policy reads them
    sent.clear()
    (root / "policies/objects.cue").write_text(
        "// rule ns-elsewhere: objects live in namespace mesh-external.\n"
        "objects: [string]: metadata: namespace: \"mesh-external\"\n")
    found = api.check(root, layers=("cue",), use_cache=False)
    hits = [d for d in found.diagnostics if d.code == "P001"]
    assert any(doc["objects"] for doc in sent)
    assert hits and {d.env for d in hits} == {"dev", "prod"}
    assert all(d.position is not None and d.position.file == "environments/base/all.yaml" for d in hits)
    flagged = sorted((d.env, str(d.object)) for d in hits)
    assert flagged == sorted((env, f"ServiceEntry/egress/{name}") for env in ("dev", "prod")
                             for name in ("api", "fine")), flagged
