"""The golden helpers of tests/conftest.py: Envoy bootstraps stored as pieces, readable mismatch
reports, and MESHC_UPDATE_GOLDENS rewriting everything or only the goldens it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from meshc.emit.bundle import json_bytes

from . import conftest
from .conftest import (
    GOLDENS,
    REPO,
    UPDATE_VAR,
    GoldenLog,
    GoldenSplitError,
    check_golden,
    check_golden_dir,
    join_envoy_bootstrap,
    join_pieces_on_disk,
    piece_files,
    split_envoy_bootstrap,
    update_patterns,
    updating,
)

Failed = pytest.fail.Exception


@pytest.fixture(autouse=True)
def _no_update(monkeypatch: pytest.MonkeyPatch) -> GoldenLog:
    """Each test starts comparing (whatever this run was started with) and with its own log."""
    monkeypatch.delenv(UPDATE_VAR, raising=False)
    log = GoldenLog()
    monkeypatch.setattr(conftest, "LOG", log)
    return log


def bootstrap(clusters: dict[str, str], listeners: tuple[str, ...] = ("0.0.0.0_80", "virtualOutbound")) -> bytes:
    """A bootstrap as meshc writes it (meshc.emit.bundle.json_bytes), cluster name -> timeout."""
    doc: dict[str, Any] = {"static_resources": {
        "clusters": [{"name": name, "connect_timeout": timeout, "type": "STATIC"}
                     for name, timeout in clusters.items()],
        "listeners": [{"name": name, "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}}}
                      for name in listeners]},
        "node": {"id": "sidecar", "cluster": "vm"}}
    return json_bytes(doc)


CLUSTERS = {"BlackHoleCluster": "10s", "outbound|80||a.example.com": "10s", "outbound|443||*.b.example.com": "2s"}


def bundle(timeout: str = "10s", **more: str) -> dict[str, bytes]:
    return {"kustomization.yaml": b"resources: []\n", "envoy/bootstrap.json":
            bootstrap({**CLUSTERS, "outbound|80||a.example.com": timeout, **more})}


def write(directory: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, value: str = "1") -> None:
    monkeypatch.setenv(UPDATE_VAR, value)
    check_golden_dir(directory, files)
    monkeypatch.delenv(UPDATE_VAR)


def on_disk(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --- pieces ----------------------------------------------------------------------------------

def test_piece_file_names_are_readable_safe_and_one_to_one() -> None:
    assert piece_files(["outbound|80||a.example.com", "outbound|443||*.b.example.com", "0.0.0.0_80",
                        "a,b", "50%", ".hidden", "a/b", "con", "café"]) == [
        "outbound,80,,a.example.com.json", "outbound,443,,%2A.b.example.com.json", "0.0.0.0_80.json",
        "a%2Cb.json", "50%25.json", "%2Ehidden.json", "a%2Fb.json", "%63on.json", "caf%C3%A9.json"]
    # names equal but for case: both marked with a hash of the name (case-insensitive file systems)
    upper, lower = piece_files(["Api", "api"])
    assert upper.startswith("Api~") and lower.startswith("api~") and upper.lower() != lower.lower()
    assert piece_files(["Api"]) == ["Api.json"]  # stable: only the name decides, when nothing collides
    long_a, long_b = piece_files(["x" * 300 + "a", "x" * 300 + "b"])
    assert len(long_a) <= 110 and long_a != long_b


def test_split_reassembles_byte_for_byte() -> None:
    data = bootstrap({**CLUSTERS, "Api": "1s", "api": "1s", "x" * 300: "1s", "ünï|cödé": "1s"})
    pieces = split_envoy_bootstrap(data)
    assert join_envoy_bootstrap(pieces.get) == data
    rest = orjson.loads(pieces["rest.json"])
    assert rest["static_resources"]["clusters"][:3] == list(CLUSTERS)  # the order is kept in rest.json
    assert rest["node"] == {"cluster": "vm", "id": "sidecar"}
    assert orjson.loads(pieces["clusters/outbound,80,,a.example.com.json"])["name"] == "outbound|80||a.example.com"
    assert len([p for p in pieces if p.startswith("listeners/")]) == 2


@pytest.mark.parametrize("data, reason", [
    (b"not json", "not JSON"),
    (json_bytes({"static_resources": {"clusters": [{"name": "a"}, {"name": "a"}]}}), "more than once"),
    (json_bytes({"static_resources": {"clusters": [{"type": "STATIC"}]}}), "list of named objects"),
    (orjson.dumps({"static_resources": {"clusters": []}}), "do not reassemble"),  # not meshc's format
])
def test_what_does_not_split_losslessly_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(GoldenSplitError, match=reason):
        split_envoy_bootstrap(data)


def test_a_bootstrap_that_does_not_split_fails_the_check(tmp_path: Path) -> None:
    with pytest.raises(Failed, match="cannot store it as pieces: .*more than once"):
        check_golden_dir(tmp_path, {"envoy/bootstrap.json": json_bytes(
            {"static_resources": {"clusters": [{"name": "a"}, {"name": "a"}]}})})


def test_the_envoy_bootstrap_is_stored_as_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    assert sorted(on_disk(tmp_path / "case-a")) == [
        "envoy/bootstrap/clusters/BlackHoleCluster.json",
        "envoy/bootstrap/clusters/outbound,443,,%2A.b.example.com.json",
        "envoy/bootstrap/clusters/outbound,80,,a.example.com.json", "envoy/bootstrap/listeners/0.0.0.0_80.json",
        "envoy/bootstrap/listeners/virtualOutbound.json", "envoy/bootstrap/rest.json", "kustomization.yaml"]
    check_golden_dir(tmp_path / "case-a", bundle())  # and compares equal


def test_check_golden_of_one_file_splits_a_bootstrap_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPDATE_VAR, "1")
    check_golden(tmp_path / "envoy" / "bootstrap.json", bundle()["envoy/bootstrap.json"])
    check_golden(tmp_path / "report.json", b"{}\n")
    monkeypatch.delenv(UPDATE_VAR)
    assert (tmp_path / "envoy/bootstrap/rest.json").is_file() and not (tmp_path / "envoy/bootstrap.json").exists()
    assert (tmp_path / "report.json").read_bytes() == b"{}\n"
    check_golden(tmp_path / "envoy" / "bootstrap.json", bundle()["envoy/bootstrap.json"])
    with pytest.raises(Failed, match="differs: .*clusters/outbound,80,,a.example.com.json"):
        check_golden(tmp_path / "envoy" / "bootstrap.json", bundle("5s")["envoy/bootstrap.json"])
    with pytest.raises(Failed, match=r"(?s)differs: .*report.json.*-\{\}.*\+\[\]"):
        check_golden(tmp_path / "report.json", b"[]\n")


# --- mismatches --------------------------------------------------------------------------------

def test_a_mismatch_shows_the_diff_of_the_differing_piece_only(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    with pytest.raises(Failed) as failure:
        check_golden_dir(tmp_path / "case-a", bundle("5s"))
    message = str(failure.value)
    assert "differs: " in message and "envoy/bootstrap/clusters/outbound,80,,a.example.com.json" in message
    assert '-  "connect_timeout": "10s",' in message and '+  "connect_timeout": "5s",' in message
    assert message.count("differs: ") == 1 and "BlackHoleCluster" not in message
    assert "make goldens CASE=" in message


def test_a_new_cluster_shows_as_missing_piece_and_changed_order(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    with pytest.raises(Failed) as failure:
        check_golden_dir(tmp_path / "case-a", bundle(**{"outbound|80||new.example.com": "1s"}))
    message = str(failure.value)
    assert "missing: " in message and "clusters/outbound,80,,new.example.com.json" in message
    assert 'differs: ' in message and 'rest.json' in message and '+      "outbound|80||new.example.com"' in message


def test_a_missing_piece_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    (tmp_path / "case-a/envoy/bootstrap/listeners/virtualOutbound.json").unlink()
    with pytest.raises(Failed, match="missing: .*listeners/virtualOutbound.json"):
        check_golden_dir(tmp_path / "case-a", bundle())


def test_a_stale_piece_or_whole_file_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    (tmp_path / "case-a/envoy/bootstrap/clusters/gone.json").write_bytes(b"{}\n")
    (tmp_path / "case-a/envoy/bootstrap.json").write_bytes(bundle()["envoy/bootstrap.json"])
    with pytest.raises(Failed) as failure:
        check_golden_dir(tmp_path / "case-a", bundle())
    assert str(failure.value).count("stale (meshc does not write it): ") == 2


def test_reassembly_from_the_pieces_on_disk_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces equal to meshc's but joining to other bytes (the helper's join changed, say) fail."""
    write(tmp_path / "case-a", bundle(), monkeypatch)
    real = conftest.join_envoy_bootstrap

    def join_pieces_on_disk_wrongly(read: Any) -> bytes:
        from_split = isinstance(getattr(read, "__self__", None), dict)  # split's own check: pieces.get
        return real(read) if from_split else b"{}\n"

    monkeypatch.setattr(conftest, "join_envoy_bootstrap", join_pieces_on_disk_wrongly)
    with pytest.raises(Failed, match="is not meshc's file"):
        check_golden_dir(tmp_path / "case-a", bundle())


# --- updating ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, patterns", [
    ("", []), ("0", []), ("1", None), ("tls-modes", ["tls-modes"]),
    ("estate/prod/, cases/resolution-*", ["estate/prod", "cases/resolution-*"]),
])
def test_update_switch_values(value: str, patterns: list[str] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPDATE_VAR, value)
    assert update_patterns() == patterns


@pytest.mark.parametrize("pattern, path, hit", [
    ("tls-modes", GOLDENS / "cases/tls-modes/dev/index.json", True),
    ("tls-modes", GOLDENS / "cases/tls-modes-2/dev/index.json", False),
    ("tls", GOLDENS / "cases/tls-modes/dev/index.json", False),  # whole path components only
    ("estate/prod", GOLDENS / "estate/prod/envoy/bootstrap.json", True),
    ("estate/prod", GOLDENS / "estate/production/index.json", False),
    ("cases/resolution-*", GOLDENS / "cases/resolution-dns/dev/index.json", True),
    ("envoy", GOLDENS / "cases/resolution-dns/dev/envoy/bootstrap/rest.json", True),
    ("diff/realistic.*", GOLDENS / "diff/realistic.md", True),
    ("tls_modes", REPO / "tests/fixtures/envoy/tls_modes/bootstrap.json", True),
    ("tests/goldens/estate", GOLDENS / "estate/dev/index.json", True),
])
def test_update_patterns_match_runs_of_path_components(pattern: str, path: Path, hit: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPDATE_VAR, pattern)
    assert updating(path) is hit


def test_update_rewrites_only_the_targeted_goldens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   _no_update: GoldenLog) -> None:
    for case in ("case-a", "case-b"):
        write(tmp_path / case, bundle(), monkeypatch)
    before_b = on_disk(tmp_path / "case-b")
    _no_update.written.clear()
    monkeypatch.setenv(UPDATE_VAR, "case-a")
    check_golden_dir(tmp_path / "case-a", bundle("5s"))  # targeted: rewritten, passes
    with pytest.raises(Failed, match="differs: "):
        check_golden_dir(tmp_path / "case-b", bundle("5s"))  # not targeted: compared, fails
    assert on_disk(tmp_path / "case-b") == before_b
    assert [p.relative_to(tmp_path).as_posix() for p in _no_update.written] == [
        "case-a/envoy/bootstrap/clusters/outbound,80,,a.example.com.json"]  # unchanged pieces left alone
    monkeypatch.delenv(UPDATE_VAR)
    check_golden_dir(tmp_path / "case-a", bundle("5s"))


def test_update_can_target_one_bundle_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "case-a", bundle(), monkeypatch)
    changed = {**bundle("5s"), "kustomization.yaml": b"resources: [x]\n"}
    monkeypatch.setenv(UPDATE_VAR, "case-a/envoy/bootstrap.json")
    with pytest.raises(Failed) as failure:
        check_golden_dir(tmp_path / "case-a", changed)
    assert "kustomization.yaml" in str(failure.value) and "bootstrap/" not in str(failure.value)
    monkeypatch.setenv(UPDATE_VAR, "case-a/kustomization.yaml")
    check_golden_dir(tmp_path / "case-a", changed)


def test_update_removes_stale_pieces_and_the_old_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            _no_update: GoldenLog) -> None:
    old = bundle()
    (tmp_path / "case-a/envoy").mkdir(parents=True)
    (tmp_path / "case-a/envoy/bootstrap.json").write_bytes(old["envoy/bootstrap.json"])  # stored whole, as before
    write(tmp_path / "case-a", old, monkeypatch, "case-a")
    assert not (tmp_path / "case-a/envoy/bootstrap.json").exists()
    fewer = {"envoy/bootstrap.json": bootstrap({"BlackHoleCluster": "10s"}, listeners=())}
    write(tmp_path / "case-a", fewer, monkeypatch, "case-a")
    assert sorted(on_disk(tmp_path / "case-a")) == ["envoy/bootstrap/clusters/BlackHoleCluster.json",
                                                    "envoy/bootstrap/rest.json"]
    assert not (tmp_path / "case-a/envoy/bootstrap/listeners").exists()  # emptied folders go too
    removed = {p.relative_to(tmp_path).as_posix() for p in _no_update.removed}
    assert "case-a/envoy/bootstrap.json" in removed and "case-a/kustomization.yaml" in removed
    check_golden_dir(tmp_path / "case-a", fewer)


def test_update_of_everything_with_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for case in ("case-a", "case-b"):
        write(tmp_path / case, bundle(), monkeypatch)
    monkeypatch.setenv(UPDATE_VAR, "1")
    for case in ("case-a", "case-b"):
        check_golden_dir(tmp_path / case, bundle("5s"))
    monkeypatch.delenv(UPDATE_VAR)
    for case in ("case-a", "case-b"):
        check_golden_dir(tmp_path / case, bundle("5s"))


# --- the repository's goldens ----------------------------------------------------------------------

def test_repository_envoy_goldens_are_pieces_that_reassemble() -> None:
    assert not sorted(GOLDENS.rglob("envoy/bootstrap.json")), "Envoy bootstraps are stored as pieces"
    folders = sorted(GOLDENS.rglob("envoy/bootstrap"))
    assert len(folders) >= 10
    for folder in folders:
        joined = join_pieces_on_disk(folder)
        assert split_envoy_bootstrap(joined) == on_disk(folder)
