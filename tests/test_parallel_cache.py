"""Parallel and cached builds write exactly the bytes of a serial clean build.

A synthetic estate (bench/generate.py) large enough that meshc forks workers for the compile units
and for the Envoy configuration is built serially without a cache (MESHC_WORKERS=1), then on two
workers with a cache, then again with nothing changed, then after editing one declaration file;
every bundle is compared byte for byte with a serial clean build of the same input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from meshc import api, pipeline
from meshc.runtime import workers
from meshc.emit.bundle import read_bundle

from .conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402  (bench/generate.py: the benchmark's estate generator)

SERVICES, ENVS = 700, 2  # > workers.MIN_PARALLEL units and > 3,000 objects: both fork paths run


def _bundles(out: Path) -> dict[str, dict[str, bytes]]:
    return {env.name: read_bundle(env).files for env in sorted(out.iterdir()) if env.is_dir()}


def _build(root: Path, out: Path, workers_env: str, use_cache: bool, monkeypatch: pytest.MonkeyPatch
           ) -> dict[str, dict[str, bytes]]:
    monkeypatch.setenv("MESHC_WORKERS", workers_env)
    outcome = api.build(root, out=out, checks=False, use_cache=use_cache)
    assert outcome.ok, [str(d) for d in outcome.diagnostics][:5]
    return _bundles(out)


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("estate")
    generate.write_estate(generate.estate_files(SERVICES, ENVS, seed=7), root)
    return root


def test_parallel_and_cached_builds_equal_serial_clean(estate: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    forks: list[int] = []
    real_run_all = workers.run_all

    def counting(fn, items, workers_=None, min_items=workers.MIN_PARALLEL):  # type: ignore[no-untyped-def]
        n = min(workers.worker_count() if workers_ is None else workers_, len(items))
        if n > 1 and len(items) >= min_items:
            forks.append(len(items))
        return real_run_all(fn, items, workers_, min_items)

    monkeypatch.setattr(workers, "run_all", counting)
    serial = _build(estate, tmp_path / "serial", "1", False, monkeypatch)
    assert forks == [] and sum(len(files) for files in serial.values()) > 2 * SERVICES // 2

    parallel = _build(estate, tmp_path / "parallel", "2", True, monkeypatch)
    assert len(forks) == 2, forks  # the compile units and the Envoy configuration both forked
    assert parallel == serial

    again = _build(estate, tmp_path / "parallel", "2", True, monkeypatch)  # nothing changed
    assert again == serial

    first = estate / "environments/base/svc-0000.yaml"
    text = first.read_text()
    assert "description: '" in text
    first.write_text(text.replace("description: '", "description: 'changed ", 1))
    try:
        cached = _build(estate, tmp_path / "parallel", "2", True, monkeypatch)
        clean = _build(estate, tmp_path / "serial-changed", "1", False, monkeypatch)
        assert cached == clean and cached != serial
    finally:
        first.write_text(text)


def test_cache_round_trips_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache file is a sequence of small pickles: everything comes back, across chunk
    boundaries and environments; another fingerprint, or a cut-off file, gives an empty cache."""
    from meshc.runtime import cache as cache_mod

    monkeypatch.setattr(cache_mod, "CHUNK", 7)
    shared = {"kind": "ServiceEntry"}
    saved = cache_mod.BuildCache.open(tmp_path, b"fp")
    saved.parse = {f"sha{i}": [("services", 0, i, 1, 1, {"name": f"svc{i}"})] for i in range(30)}
    saved.units = {env: {f"k{i}": (env, i, shared) for i in range(17)} for env in ("dev", "prod")}
    saved.checks = {("schema", f"h{i}"): [] for i in range(8)}
    saved.envoy = {"c": b"blob"}
    saved.save()
    back = cache_mod.BuildCache.open(tmp_path, b"fp")
    assert (back.parse, back.units, back.checks, back.written, back.envoy) == (
        saved.parse, saved.units, saved.checks, {}, saved.envoy)
    assert back.units["dev"]["k3"][2] is back.units["dev"]["k4"][2]  # shared within a chunk
    assert cache_mod.BuildCache.open(tmp_path, b"other").units == {}
    data = saved.path.read_bytes()
    saved.path.write_bytes(data[: len(data) // 2])
    cut = cache_mod.BuildCache.open(tmp_path, b"fp")
    assert cut.parse == {} and cut.units == {}
