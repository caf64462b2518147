"""The benchmark suite: one function per measured step (see README.md for what each one means).

Every function takes the `Bench` and returns `StepResult`s; none raises (see steps.guarded).
Order matters only for speed: `build` leaves a bundle that floor and the rebuilds use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import floor
import generate
import kapitan_bench
from steps import (BENCH, Bench, StepResult, bundle_stats, check_layers, clean, edit_one_file,
                   ensure_built, guarded, help_text, python, timed)

EDITED_FILE = "environments/base/svc-0000.yaml"


def build(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        if timed(b, res, b.meshc_cmd("build", "-C", str(b.estate)), before=lambda _: clean(b.estate)):
            res.extra.update(bundle_stats(b.estate / "out"))
    return [guarded("build", "meshc build, clean (out/, .meshc-cache/ and the per-user build cache removed)", body)]


def build_nocheck(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        timed(b, res, b.meshc_cmd("build", "--skip-checks", "-C", str(b.estate)),
              before=lambda _: clean(b.estate))
        res.note = "compile + write only: what the check layers add is build minus this"
    return [guarded("build-nocheck", "meshc build --skip-checks, clean", body)]


def floor_step(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        if not (b.estate / "out").is_dir():
            ensure_built(b)
        objects, out = b.work / "floor-objects.marshal", b.work / "floor-out"
        res.extra.update(floor.prepare(b.estate / "out", objects))
        cmd = [python(), str(BENCH / "floor.py"), "--estate", str(b.estate), "--objects", str(objects),
               "--out", str(out)]
        timed(b, res, cmd, before=lambda _: shutil.rmtree(out, ignore_errors=True))
        res.extra["floor_bytes"] = bundle_stats(out)["output_bytes"] if out.is_dir() else None
        shutil.rmtree(out, ignore_errors=True)
    return [guarded("floor", "floor: C-YAML load + orjson dump + write, same files", body)]


def rebuild(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        ensure_built(b)
        timed(b, res, b.meshc_cmd("build", "-C", str(b.estate)))
    return [guarded("rebuild", "meshc build again, nothing changed", body)]


def rebuild_one(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        ensure_built(b)
        path = b.estate / EDITED_FILE
        original = path.read_text()
        try:
            timed(b, res, b.meshc_cmd("build", "-C", str(b.estate)),
                  before=lambda i: edit_one_file(path, original, i))
        finally:
            path.write_text(original)
        res.note = f"one value changed in {EDITED_FILE} before each run"
    return [guarded("rebuild-one", "meshc build after changing one base file", body)]


def _check_cmd(b: Bench, *layers: str) -> list[str]:
    return b.meshc_cmd("check", "-C", str(b.estate), "--format", "json",
                       *[a for layer in layers for a in ("--layer", layer)])


def _findings(res: StepResult, stdout: Path) -> None:
    try:
        summary = json.loads(stdout.read_text()).get("summary", {})
    except (OSError, ValueError, AttributeError):
        return
    res.extra["findings"] = "/".join(f"{summary.get(k)} {k}" for k in ("errors", "warnings", "info"))
    if summary.get("errors"):
        res.note = f"{summary['errors']} error finding(s): the estate should be clean"


def check(b: Bench) -> list[StepResult]:
    def cold(res: StepResult) -> None:
        out = b.work / "check.json"
        if timed(b, res, _check_cmd(b), before=lambda _: clean(b.estate, out=False), ok=(0, 1), stdout=out):
            _findings(res, out)

    def warm(res: StepResult) -> None:
        ensure_built(b)
        timed(b, res, _check_cmd(b), ok=(0, 1))
    return [guarded("check", "meshc check, all layers, no cache", cold),
            guarded("check-warm", "meshc check, all layers, cache of the last build", warm)]


def check_per_layer(b: Bench) -> list[StepResult]:
    layers = check_layers(b)
    if not layers:
        return [StepResult("check-layers", "meshc check --layer X", "n/a",
                           note="`meshc check --help` shows no --layer option")]

    def body_for(layer: str) -> Callable[[StepResult], None]:
        def body(res: StepResult) -> None:
            timed(b, res, _check_cmd(b, layer), before=lambda _: clean(b.estate, out=False), ok=(0, 1))
        return body
    return [guarded(f"check-{layer}", f"meshc check --layer {layer}, no cache", body_for(layer))
            for layer in layers]


def diff(b: Bench) -> list[StepResult]:
    if help_text(b, "diff") is None:
        return [StepResult("diff", "meshc diff --format json (1% of services changed)", "n/a",
                           note="meshc has no `diff` command yet")]

    def body(res: StepResult) -> None:
        out = b.work / "diff.json"
        cmd = b.meshc_cmd("diff", "--base", str(b.estate), "--head", str(b.head), "--format", "json",
                          "-C", str(b.head))

        def before(_: int) -> None:
            clean(b.estate, out=False)
            clean(b.head, out=False)
        if timed(b, res, cmd, before=before, ok=(0, 1), stdout=out):
            res.extra["output_bytes"] = out.stat().st_size
            res.extra["summary"] = json.loads(out.read_text()).get("summary")
    return [guarded("diff", "meshc diff --format json, base vs head (1% changed), no cache", body)]


def kapitan(b: Bench) -> list[StepResult]:
    def body(res: StepResult) -> None:
        binary, problem = kapitan_bench.ensure_installed(b.work / "kapitan-venv")
        if binary is None:
            res.fail(f"kapitan {kapitan_bench.KAPITAN_VERSION} could not be installed", problem)
            return
        project = b.work / "kapitan"
        res.extra.update(kapitan_bench.prepare_project(b.estate, project, template_dirs()))
        compiled = project / "compiled"
        if timed(b, res, kapitan_bench.compile_command(binary), cwd=project,
                 before=lambda _: shutil.rmtree(compiled, ignore_errors=True)):
            res.extra.update(kapitan_bench.compare(b.estate / "out", compiled))
        res.note = f"kapitan {kapitan_bench.KAPITAN_VERSION}, jinja2 input, reclass inventory"
    return [guarded("kapitan", "kapitan compile, same objects (jinja2)", body)]


def template_dirs() -> list[Path]:
    """meshc's template lookup: the project's templates/ first, then meshc's own."""
    configured = generate.project_settings().get("templates")
    return ([generate.REPO / configured] if configured else []) + [generate.REPO / "compiler/meshc/templates"]


def growth(b: Bench, sizes: list[int], envs: int, seed: int, kinds: tuple[str, ...] = ("build",)
           ) -> list[StepResult]:
    """Clean builds of larger estates (one run each, no warm-up): time per service. A size equal
    to the main estate's is not run again: `note_growth` marks the main steps instead."""
    results = []
    variants = [v for v in (("build", (), "meshc build, clean"),
                            ("build-nocheck", ("--skip-checks",), "meshc build --skip-checks, clean"))
                if v[0] in kinds]
    for size in sizes:
        if size == b.services:
            continue
        estate = b.work / f"estate-{size}x{envs}-s{seed}"
        for step, flags, label in variants:
            def body(res: StepResult, estate: Path = estate, size: int = size,
                     flags: tuple[str, ...] = flags) -> None:
                generate.ensure_generated(estate, size, envs, seed)
                if timed(b, res, b.meshc_cmd("build", *flags, "-C", str(estate)),
                         before=lambda _: clean(estate), repeat=1, warmup=0):
                    res.extra["services"] = size
                    res.extra["seconds_per_service"] = res.walls[0] / size
                shutil.rmtree(estate / "out", ignore_errors=True)
            results.append(guarded(f"{step}-{size}", f"{label}, {size:,} services", body))
    return results


def note_growth(b: Bench, results: list[StepResult], sizes: list[int]) -> None:
    """The main estate's own build steps count as the growth point of its size."""
    if b.services not in sizes:
        return
    for res in results:
        if res.name in ("build", "build-nocheck") and res.status == "ok" and res.walls:
            res.extra["services"] = b.services
            res.extra["seconds_per_service"] = res.median / b.services


