"""What keeps a `meshc build` small, checked by inspection (no timing, no RSS figures).

`meshc build` compiles, checks and stages one environment at a time (pipeline.compile_streamed,
api._Stager): an environment is released before the next one is compiled; a failure anywhere
leaves every out/<env> as it was (what was staged is removed); the build gives the bytes and the
diagnostics of the whole-estate driver (compile_estate + check_compiled). The large pieces never
reach the build process whole: an environment's Envoy configuration is made in a process of the
fork server (started before the estate is loaded), its large files are spooled, and what the
passes learn for the cache is spilled to the state folder. The example estate is small, so the
thresholds are lowered to make every environment "large".
"""

from __future__ import annotations

import gc
import os
import pickle
import random
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from meshc import api, pipeline
from meshc.emit import bundle as emit
from meshc.emit.bundle import json_bytes, json_pieces, read_bundle
from meshc.model.bundle import SpooledFiles
from meshc.model.results import EnvResult
from meshc.runtime import cache as cache_mod
from meshc.runtime import workers
from meshc.runtime.cache import BuildCache, Spilled
from meshc.runtime.executor import Executor
from meshc.runtime.userstate import repo_state

from .conftest import REPO, check_golden_dir, copy_example_estate

ENVS = ["dev", "edge", "prod", "staging"]
STAGING = "environments/staging/services.yaml"


@pytest.fixture
def streamed_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every environment of the example estate handled as a large one: compiled alone, checked on
    its own (object layers while its Envoy configuration is made), its Envoy configuration made
    by the fork server, every Envoy file spooled."""
    monkeypatch.setattr(pipeline, "BATCH_SERVICES", 1)
    monkeypatch.setattr(api, "BATCH_OBJECTS", 1)
    monkeypatch.setattr(pipeline, "ISOLATE_FROM", 0)
    monkeypatch.setattr(pipeline, "SPOOL_FROM", 1)


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    return copy_example_estate(tmp_path / "estate")


def _tree(out: Path) -> dict[str, dict[str, tuple[bytes, int]]]:
    """Every bundle folder under out: relative path -> (bytes, inode)."""
    found: dict[str, dict[str, tuple[bytes, int]]] = {}
    for env in sorted(out.iterdir()):
        found[env.name] = {p.relative_to(env).as_posix(): (p.read_bytes(), p.stat().st_ino)
                           for p in sorted(env.rglob("*")) if p.is_file()}
    return found


class _Recorder:
    """Events of a build in order: ("units", env) when an environment's compile starts,
    ("staged", env) when its bundle is staged; with, at each compile's start, the environments
    whose values are still alive and the staged folders on disk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
        self.events: list[tuple[str, str]] = []
        self.alive_at_units: dict[str, list[str]] = {}
        self.staged_at_units: dict[str, list[str]] = {}
        self.refs: dict[str, weakref.ref[EnvResult]] = {}
        self.out = out
        units_pass, stage, assembled = pipeline.units_pass, api._Stager._stage, api._Stager.assembled

        def recording_units(ctx: pipeline.Context, prepared: pipeline.Prepared) -> Any:
            (name,) = prepared.merged.decls
            self.events.append(("units", name))
            self.alive_at_units[name] = sorted(n for n, ref in self.refs.items() if ref() is not None)
            self.staged_at_units[name] = sorted(p.name for p in out.glob(".*.new-*")) if out.is_dir() else []
            return units_pass(ctx, prepared)

        def recording_stage(stager: Any, name: str, env: EnvResult) -> None:
            stage(stager, name, env)
            self.events.append(("staged", name))
            self.refs[name] = weakref.ref(env)

        def recording_assembled(stager: Any, name: str, env: EnvResult) -> None:
            assembled(stager, name, env)  # the environment without its Envoy files, while they are made
            self.refs[f"{name} (assembled)"] = weakref.ref(env)

        monkeypatch.setattr(pipeline, "units_pass", recording_units)
        monkeypatch.setattr(api._Stager, "_stage", recording_stage)
        monkeypatch.setattr(api._Stager, "assembled", recording_assembled)


def _build(root: Path, out: Path, **kw: Any) -> api.BuildOutcome:
    """A build as the command line runs it: without the cyclic garbage collector (cli.main), so
    what is released is released by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return api.build(root, out=out, **kw)
    finally:
        if enabled:
            gc.enable()


# ----------------------------------------------------------------------------- one environment at a time

def test_each_environment_is_staged_and_released_before_the_next_is_compiled(
        estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed_small: None) -> None:
    out = tmp_path / "out"
    rec = _Recorder(monkeypatch, out)
    outcome = _build(estate, out)
    assert outcome.ok, [str(d) for d in outcome.diagnostics]
    assert rec.events == [(what, env) for env in ENVS for what in ("units", "staged")]
    for number, env in enumerate(ENVS[1:], start=1):
        assert rec.alive_at_units[env] == [], (env, rec.alive_at_units[env])  # the previous ones are gone
        assert rec.staged_at_units[env] == [f".{e}.new-{os.getpid()}" for e in ENVS[:number]]
    assert sorted(p.name for p in out.iterdir()) == ENVS  # swapped in at the end, nothing else left
    for env in ENVS:  # byte for byte the example estate's goldens (Envoy files spooled and linked)
        check_golden_dir(REPO / "tests" / "goldens" / "estate" / env, read_bundle(out / env).files)


def test_without_checks_the_next_environment_is_compiled_while_a_proxy_pass_runs(
        estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed_small: None) -> None:
    """Nothing else runs beside a proxy pass when the checks are skipped: the next environment is
    compiled meanwhile (two held at most), and the bytes are the goldens'."""
    out = tmp_path / "out"
    rec = _Recorder(monkeypatch, out)
    assert _build(estate, out, checks=False).ok
    assert rec.events == [("units", "dev"), ("units", "edge"), ("staged", "dev"), ("units", "prod"),
                          ("staged", "edge"), ("units", "staging"), ("staged", "prod"), ("staged", "staging")]
    for env in ENVS:
        check_golden_dir(REPO / "tests" / "goldens" / "estate" / env, read_bundle(out / env).files)


def test_small_environments_are_checked_together(estate: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the batch size, environments are held and checked in one run (the CUE engines start
    once), then staged; a large one is checked on its own, the object layers first."""
    runs: list[list[tuple[tuple[str, ...], tuple[str, ...]]]] = []
    stager_init = api._Stager.__init__

    def keep(self: Any, *a: Any, **kw: Any) -> None:
        stager_init(self, *a, **kw)
        runs.append(self.runs)

    monkeypatch.setattr(api._Stager, "__init__", keep)
    assert _build(estate, tmp_path / "together").ok
    assert runs[-1] == [(tuple(ENVS), api.LAYERS)]
    monkeypatch.setattr(api, "BATCH_OBJECTS", 1)
    monkeypatch.setattr(pipeline, "BATCH_SERVICES", 1)
    assert _build(estate, tmp_path / "alone", use_cache=False).ok
    objects = tuple(layer for layer in api.LAYERS if layer != "envoy")
    assert runs[-1] == [run for env in ENVS for run in (((env,), objects), ((env,), ("envoy",)))]


def test_environments_are_compiled_in_batches_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive environments go through the passes together while their services add up to at
    most BATCH_SERVICES; a larger one goes alone."""
    monkeypatch.setattr(pipeline, "BATCH_SERVICES", 10)
    sizes = {"a": 4, "b": 5, "c": 2, "d": 30, "e": 1, "f": 10}
    prepared: Any = SimpleNamespace(merged=SimpleNamespace(decls={n: [None] * k for n, k in sizes.items()}))
    assert list(pipeline._batches(prepared, list(sizes))) == [["a", "b"], ["c"], ["d"], ["e"], ["f"]]


@pytest.mark.parametrize("failure", ["compile", "check"])
def test_a_failure_in_a_later_environment_leaves_every_bundle_as_it_was(
        estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed_small: None, failure: str) -> None:
    out = tmp_path / "out"
    assert _build(estate, out).ok
    before = _tree(out)
    text = (estate / STAGING).read_text()
    if failure == "compile":  # not a host name: the service fails to validate (V001)
        broken = text.replace("hosts: [sink.loadtest.example.com]", "hosts: [sink]")
        code = "V001"
    else:  # a blank owner: the owner policy of the cue layer (P001)
        broken = text.replace("owner: team-sre", "owner: ' '")
        code = "P001"
        if shutil.which("node") is None and shutil.which("cue") is None:
            pytest.skip("no CUE engine")
    assert broken != text
    (estate / STAGING).write_text(broken)
    (estate / "environments/base/saas.yaml").write_text(
        (estate / "environments/base/saas.yaml").read_text().replace("Stripe", "Stripe (edited)", 1))
    rec = _Recorder(monkeypatch, out)
    outcome = _build(estate, out)
    assert not outcome.ok and code in {d.code for d in outcome.diagnostics}, [str(d) for d in outcome.diagnostics]
    # staged before the failure was known: a failed compile stops at staging's assemble, while
    # prod's proxy pass runs (a rebuild); a policy violation is known only once staging is staged
    staged = ["dev", "edge"] if failure == "compile" else ENVS
    assert [env for what, env in rec.events if what == "staged"] == staged
    assert _tree(out) == before  # same bytes, same inodes: no out/<env> was touched
    assert sorted(p.name for p in out.iterdir()) == ENVS  # and what was staged is gone
    assert not [p for p in repo_state(estate).iterdir() if p.name.startswith("spill")]


def test_a_streamed_build_gives_the_whole_estate_drivers_diagnostics(
        estate: Path, tmp_path: Path, streamed_small: None) -> None:
    (estate / "waivers.yaml").write_text("waivers: []\n")  # the example estate's findings, unwaived
    env_yaml = estate / "environments/staging/env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("  dnsServers:", "  # dnsServers:"))  # T015, proxy pass
    clean = _build(estate, tmp_path / "a", use_cache=False)
    assert clean.ok
    assert {"T015", "I351"} <= {d.code for d in clean.diagnostics}
    assert len({d.env for d in clean.diagnostics}) > 2  # findings of several environments, in their order
    assert clean.diagnostics == api.check(estate, use_cache=False).diagnostics
    text = (estate / STAGING).read_text()
    (estate / STAGING).write_text(text.replace("hosts: [sink.loadtest.example.com]", "hosts: [sink]"))
    failed = _build(estate, tmp_path / "b", use_cache=False)
    assert not failed.ok
    assert failed.diagnostics == api.compile_repo(estate, use_cache=False)[1].diagnostics


def test_a_rebuild_compiles_the_next_environment_while_a_proxy_pass_runs_and_agrees(
        estate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed_small: None) -> None:
    """A second build with nothing changed is up to date. After an edit, the cache answers most
    units: while an environment's proxy pass runs, the next environment is compiled (two at
    most are held: the one before is staged first), and the bytes are the clean build's (units
    and Envoy memo spilled, saved, then read back from the cache file)."""
    out = tmp_path / "out"
    assert _build(estate, out).ok
    assert _build(estate, out).up_to_date
    saas = estate / "environments/base/saas.yaml"
    saas.write_text(saas.read_text().replace("Stripe", "Stripe (edited)", 1))
    rec = _Recorder(monkeypatch, out)
    assert _build(estate, out).ok
    assert rec.events == [("units", "dev"), ("units", "edge"), ("staged", "dev"), ("units", "prod"),
                          ("staged", "edge"), ("units", "staging"), ("staged", "prod"), ("staged", "staging")]
    for number, env in enumerate(ENVS[1:], start=1):
        # alive: the one whose proxy pass runs; every staged one is released
        assert rec.alive_at_units[env] == [f"{ENVS[number - 1]} (assembled)"], env
        assert rec.staged_at_units[env] == [f".{e}.new-{os.getpid()}" for e in ENVS[:number - 1]]
    clean = tmp_path / "clean"
    assert _build(estate, clean, use_cache=False).ok
    assert {env: read_bundle(out / env).files for env in ENVS} == {env: read_bundle(clean / env).files
                                                                   for env in ENVS}


# ----------------------------------------------------------------------------- the fork server

_SET_AFTER_START: dict[str, bytes] = {}


def _job_view(pipe_fds: tuple[int, int]) -> dict[str, Any]:
    """What a fork-server job sees: its parent, whether a value the build made after the server
    started is there, and whether the build's descriptors are open in it."""
    return {"pid": os.getpid(), "ppid": os.getppid(), "late": "late" in _SET_AFTER_START,
            "fds": [fd for fd in pipe_fds if _open(fd)]}


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _fails(_: object) -> None:
    raise ValueError("the job's own error")


def test_a_fork_server_job_holds_the_server_image_not_the_build(tmp_path: Path) -> None:
    pipe = os.pipe()
    try:
        with workers.Forkserver() as server:
            _SET_AFTER_START["late"] = b"x" * 1000
            seen = server.submit(_job_view, pipe).result()
            with pytest.raises(RuntimeError, match="the job's own error"):
                server.submit(_fails, None).result()
            assert server.jobs == 2
        assert seen["pid"] != os.getpid() and seen["ppid"] not in (os.getpid(), seen["pid"])
        assert seen["late"] is False  # forked from the server: the build's later heap is not there
        assert seen["fds"] == []  # nor its descriptors (the output folder's lock among them)
    finally:
        _SET_AFTER_START.clear()
        for fd in pipe:
            os.close(fd)


def test_without_a_server_a_job_runs_here() -> None:
    pending = Executor().isolated(_job_view, (-1, -1))
    assert pending.result()["pid"] == os.getpid()


# ----------------------------------------------------------------------------- spill and spool

def test_spilled_cache_entries_are_saved_as_they_were_pickled(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    cache = BuildCache(root, "stamp")
    with workers.Forkserver() as server:
        executor = Executor(cache, server=server)
        table = {f"k{i}": ("unit", i, {"shared": True}) for i in range(12)}
        spilled = executor.spill("units", "dev", table)
        assert isinstance(spilled, Spilled) and dict(spilled) == table
        memo = executor.spill("envoy", None, {"m": b"blob"})
    other = Spilled.write(cache.spill_path("envoy"), "envoy", None, {"n": b"other"}.items())
    assert isinstance(memo, Spilled)
    cache.units = {"dev": spilled}
    cache.envoy = pipeline.merged_memo([memo, other])
    folder = cache.path.parent
    assert [p.name for p in folder.iterdir()] == [f"spill.tmp-{os.getpid()}"]
    cache.save()
    assert sorted(p.name for p in folder.iterdir()) == ["root", "state.pickle"]  # the spills are in it now
    back = _reopen(root, "stamp")
    assert back.units == {"dev": table} and back.envoy == {"m": b"blob", "n": b"other"}


def _reopen(root: Path, stamp: str) -> BuildCache:
    """The saved cache read back with the stamp it was written with (BuildCache.open derives the
    stamp from a fingerprint)."""
    opened = BuildCache(root, stamp)
    with open(opened.path, "rb") as fh:
        assert cache_mod._authentic(fh)
        fh.seek(len(cache_mod.MAGIC) + cache_mod.TAG_BYTES)
        assert pickle.load(fh) == ("meshc-cache", cache_mod.FORMAT, stamp)
        for key, value in cache_mod._read_parts(fh).items():
            setattr(opened, key, value)
    return opened


def test_an_unwritable_state_folder_keeps_what_is_learned_in_memory(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MESHC_STATE_DIR", str(blocker / "state"))
    with workers.Forkserver() as server:
        table = {"k": 1}
        assert Executor(BuildCache(tmp_path, "s"), server=server).spill("units", "dev", table) is table


def test_spooled_envoy_files_read_back_as_bytes(tmp_path: Path) -> None:
    files = SpooledFiles({"a.json": emit.spool(tmp_path, "a", b"{}\n", "sha"), "b.json": b"[]\n"})
    assert dict(files) == {"a.json": b"{}\n", "b.json": b"[]\n"}
    assert isinstance(files.entries()["a.json"], emit.Spooled)


def _values(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice([0, 1, -2.5, 1e20, 2**63 - 1, "", "a\nb", "é\u2028\"", True, False, None])
    if roll < 0.6:
        return [_values(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["b", "a", "é", "Z", "@type", "x y", "\n"]) + str(rng.randint(0, 3)): _values(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def _samples() -> Iterator[Any]:
    rng = random.Random(7)
    for _ in range(3000):
        yield _values(rng)
    yield {"resources": [{"@type": "t", "name": f"c{i}", "n": {"x": [i, {"y": None}]}} for i in range(50)]}
    yield {"resources": []}


def test_json_pieces_are_the_bytes_of_json_bytes() -> None:
    for value in _samples():
        for depth in (0, 1, 2, 4):
            assert b"".join(json_pieces(value, depth)) == json_bytes(value), (value, depth)
