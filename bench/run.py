"""meshc benchmark runner (bench/README.md): generate an estate, time meshc against a floor,
itself and kapitan, print a markdown table of steps and ratios (JSON with --json).

Usage: run.py --services 1000 --envs 3 [--seed 1] [--repeat 3] [--warmup 1] [--json]
              [--only build,build-nocheck,floor,rebuild,rebuild-one,check,check-layers,diff,kapitan]
              [--growth [--growth-sizes 10000,50000]]
Work files (estates, kapitan venv, results) live in bench/.work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import generate
import measure
import report
import suite
from steps import BENCH, Bench, StepResult, guarded

STEPS: dict[str, Callable[[Bench], list[StepResult]]] = {
    "build": suite.build, "build-nocheck": suite.build_nocheck, "floor": suite.floor_step, "rebuild": suite.rebuild,
    "rebuild-one": suite.rebuild_one, "check": suite.check, "check-layers": suite.check_per_layer,
    "diff": suite.diff, "kapitan": suite.kapitan}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="measured runs per step (median, min, max)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs before them")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma list of: {', '.join(STEPS)}")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--growth", action="store_true", help="also time clean builds of larger estates")
    ap.add_argument("--growth-sizes", default="10000,50000",
                    help="sizes; one equal to --services reuses that run's build steps")
    ap.add_argument("--growth-steps", default="build",
                    help="with --growth: build (full), build-nocheck (--skip-checks), or both, comma-separated")
    ap.add_argument("--mutate-percent", type=float, default=1.0, help="services changed on the diff head")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per command")
    args = ap.parse_args(argv)
    unknown = set(args.only.split(",")) - set(STEPS)
    if unknown:
        ap.error(f"unknown step(s) {sorted(unknown)}; known: {', '.join(STEPS)}")
    return args


def meshc_binary() -> str:
    local = Path(sys.executable).parent / "meshc"
    return str(local) if local.exists() else "meshc"


def _output(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def meta(args: argparse.Namespace, b: Bench) -> dict[str, Any]:
    dirty = _output(["git", "status", "--porcelain", "--untracked-files=no"], generate.REPO)
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "services": args.services, "envs": args.envs, "seed": args.seed,
            "repeat": args.repeat, "warmup": args.warmup, "nproc": os.cpu_count(),
            "cpu": cpu_model(), "python": platform.python_version(),
            "meshc_version": (_output([b.meshc, "--version"]).split() or ["unknown"])[-1],
            "commit": _output(["git", "rev-parse", "--short", "HEAD"], generate.REPO) + ("+dirty" if dirty else ""),
            "rss_method": measure.method(), "load_before": _load(), "code_before": code_state()}


def code_state() -> str:
    """Short hash of meshc's code, templates and policies: a run during which it changes mixes
    versions (other people edit the working tree), and the table says so."""
    h = hashlib.sha256()
    for part in ("compiler", "templates", "policies", "tools"):
        for path in sorted((generate.REPO / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def prepare(args: argparse.Namespace, work: Path) -> tuple[Bench, StepResult]:
    """Generate (or reuse) the estate and its diff head; timed for information only."""
    tag = f"{args.services}x{args.envs}-s{args.seed}"
    b = Bench(work / f"estate-{tag}", work / f"estate-{tag}-head", work, meshc_binary(),
              args.repeat, args.warmup, args.timeout, args.services)

    def body(res: StepResult) -> None:
        start = time.perf_counter()
        fresh = generate.ensure_generated(b.estate, args.services, args.envs, args.seed)
        fresh |= generate.ensure_generated(b.head, args.services, args.envs, args.seed,
                                           args.mutate_percent)
        res.walls.append(time.perf_counter() - start)
        res.note = "generated" if fresh else "reused (same parameters and generator)"
        res.extra["declaration_files"] = sum(1 for _ in (b.estate / "environments").rglob("*.yaml"))
    return b, guarded("generate", "generate estate + diff head (not a meshc step)", body)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    work = BENCH / ".work"
    work.mkdir(exist_ok=True)
    b, gen = prepare(args, work)
    info = meta(args, b)
    results = [gen]
    partial = work / f"results-{args.services}x{args.envs}-s{args.seed}.partial.json"

    def keep() -> None:  # what is measured so far survives a crash or an interrupted run
        partial.write_text(json.dumps({"meta": info, "steps": {r.name: r.summary() for r in results}}, indent=2))

    if gen.status == "ok":
        for name in [n for n in STEPS if n in args.only.split(",")]:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            results.extend(STEPS[name](b))
            keep()
        if args.growth:
            sizes = [int(x) for x in args.growth_sizes.split(",") if x]
            suite.note_growth(b, results, sizes)
            print("[bench] growth ...", file=sys.stderr, flush=True)
            results.extend(suite.growth(b, sizes, args.envs, args.seed, tuple(args.growth_steps.split(","))))
            keep()
    info["load_after"] = _load()
    info["code_after"] = code_state()
    steps = {r.name: r.summary() for r in results}
    return {"meta": info, "steps": steps, "ratios": report.ratios(steps)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = run_all(args)
    table = report.markdown(data["meta"], data["steps"], data["ratios"])
    tag = f"{args.services}x{args.envs}-s{args.seed}"
    (BENCH / ".work" / f"results-{tag}.json").write_text(json.dumps(data, indent=2))
    (BENCH / ".work" / f"results-{tag}.md").write_text(table)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(data, indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
