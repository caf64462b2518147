"""Micro-bench of the cue check layer: the reference path against the fast path, on the same compiled
estate in the same process.

It compiles a generated estate (bench/generate.py; default 1,000 services x 3 environments, seed
1, written to --out unless it is there already) without the cache, then runs the cue layer
(`meshc.check.cue.layer.run_cue`, no cache) in timed rounds, alternating:

* reference: `run_cue(..., reference=True)`: every per-service document on its own, engines
  started inside the layer (what the layer did before the fast path);
* fast: `run_cue(..., reference=False)`, engines started inside the layer (what `meshc check`
  does when nothing starts them earlier);
* fast, prestarted: `cue_layer.prestart(...)` right before a compile of the same estate (what a
  build does when api.py calls it before compiling), then the layer; the compile is timed too,
  to show what the engines starting beside it cost it.

Each round also times a plain compile (the yardstick of the issue: all check layers at most 1.5x
its cost). The cyclic garbage collector is off, as in meshc's command line. Wall time, the CPU
time of the engines (children's rusage: the Node helpers, reaped when the layer closes them; for
the compile, its forked workers) and of this process are shown; the findings of every run must be
the same list, or the bench stops. The machine's load average is printed with every line: on a shared
machine, compare only ratios measured in the same run. Prints the median of --repeat rounds and
the ratios reference / fast.

Usage: bench/cue_layer.py [--services 1000] [--envs 3] [--seed 1] [--out /tmp/meshc-cue-bench]
                          [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "compiler"))

import generate  # noqa: E402

from meshc import api  # noqa: E402
from meshc.check.common import CheckRun  # noqa: E402
from meshc.check.cue import fast  # noqa: E402
from meshc.check.cue import layer as cue_layer  # noqa: E402
from meshc.model.diagnostics import Diagnostic  # noqa: E402


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime, own.ru_utime + own.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    engine0, own0 = _cpu()
    start = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - start
    engine1, own1 = _cpu()
    return value, {"wall": wall, "engine_cpu": engine1 - engine0, "python_cpu": own1 - own0,
                   "load": os.getloadavg()[0]}


def _text(diags: list[Diagnostic]) -> list[str]:
    return [f"{d.env} {d.code} {d.object} {d.position} {d.path} {d.message} {d.related}" for d in diags]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/meshc-cue-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = ap.parse_args(argv)
    gc.disable()  # as meshc's command line does (cli/main.py): reference counting frees everything
    root = args.out / f"estate-{args.services}x{args.envs}-s{args.seed}"
    generate.ensure_generated(root, args.services, args.envs, args.seed)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))

    project, result = api.compile_repo(root, use_cache=False)
    if not result.envs or any(d.severity >= 2 for d in result.diagnostics):
        raise SystemExit(f"the estate did not compile: {[str(d) for d in result.diagnostics][:5]}")
    opts = api.check_options(project, ("cue",))
    documents = sum(1 + len(env.services) for env in result.envs.values())
    say(f"estate {root}: {len(result.envs)} environments, {documents} per-service and environment documents; "
        f"{os.cpu_count()} cores")

    def layer(reference: bool) -> list[Diagnostic]:
        return cue_layer.run_cue(result, CheckRun(opts), reference=reference)

    def prestarted() -> tuple[list[Diagnostic], dict[str, float]]:
        started = cue_layer.prestart(opts, None)
        _, compiled = timed(lambda: api.compile_repo(root, use_cache=False))
        compiled["engines"] = started
        found, took = timed(lambda: layer(False))
        return found, {**took, "compile_beside": compiled["wall"], "compile_beside_cpu": compiled["python_cpu"]}

    runs: dict[str, list[dict[str, float]]] = {"compile": [], "reference": [], "fast": [], "fast_prestarted": []}
    want: list[str] | None = None
    for round_ in range(args.repeat):
        _, took = timed(lambda: api.compile_repo(root, use_cache=False))
        runs["compile"].append(took)
        for name, run in (("reference", lambda: timed(lambda: layer(True))),
                          ("fast", lambda: timed(lambda: layer(False))), ("fast_prestarted", prestarted)):
            found, took = run()
            text = _text(found)
            if want is None:
                want = text
            elif text != want:
                raise SystemExit(f"{name} found something else than the reference path: "
                                 f"{sorted(set(text) ^ set(want))[:5]}")
            runs[name].append(took)
            say(f"round {round_ + 1} {name:16s} " + " ".join(f"{k}={v:.2f}" for k, v in took.items()))
        fast.discard()

    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    ref, quick, pre, comp = median["reference"], median["fast"], median["fast_prestarted"], median["compile"]
    ratios = {
        "reference/fast wall": ref["wall"] / quick["wall"],
        "reference/fast cpu": (ref["engine_cpu"] + ref["python_cpu"])
        / (quick["engine_cpu"] + quick["python_cpu"]),
        "reference/fast-prestarted wall": ref["wall"] / pre["wall"],
        "reference layer / compile": ref["wall"] / comp["wall"],
        "fast layer / compile": quick["wall"] / comp["wall"],
        "fast-prestarted layer / compile": pre["wall"] / comp["wall"],
        "compile beside prestarting engines / compile": pre["compile_beside"] / comp["wall"],
    }
    say("")
    say(f"median of {args.repeat} rounds (seconds; findings: {len(want or [])}, the same on every path)")
    for name, values in median.items():
        say(f"  {name:16s} " + " ".join(f"{k}={v:.2f}" for k, v in values.items()))
    for name, value in ratios.items():
        say(f"  {name:46s} {value:5.2f}")
    if args.json:
        print(json.dumps({"estate": str(root), "services": args.services, "envs": args.envs, "seed": args.seed,
                          "findings": len(want or []), "median": median, "ratios": ratios, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
