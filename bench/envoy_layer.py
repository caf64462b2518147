"""Micro-bench of the envoy check layer: the reference path against the fast path, on the same items
in the same process.

It compiles a generated estate (bench/generate.py; default 1,000 services x 3 environments, seed
1, written to --out unless it is there already) without the cache and validates every
configuration the envoy layer checks (each environment's egress proxy whole, each workload file's
static part), as the layer does: one memo per environment (`validate_bootstrap(b, memo)`), and
without a memo (every item validated). Timed rounds, alternating:

* reference: `validate_bootstrap(b, fast=False)`: json_format.ParseDict + PGV on every item;
* fast, cold per environment: `validate_bootstrap(b)` with `fast.forget()` before each
  environment, as a build runs the layer (one forked worker per environment: nothing learned in
  one environment helps another): each shape's first item is walked and its new node shapes
  checked;
* fast, cold: `fast.forget()` once, then every environment (what one process learns is shared);
* fast, warm: the same again with every plan made (the per-item cost of the leaf checks).

Before the rounds, one untimed reference pass builds the PGV package's checkers (seconds, the same
for both paths). Each round's findings must be the same list, or the bench stops. Prints times per
item (milliseconds) and the ratios reference / fast, the best of --repeat rounds of each.

Usage: bench/envoy_layer.py [--services 1000] [--envs 3] [--seed 1] [--out /tmp/meshc-envoy-bench]
                            [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "compiler"))

import generate  # noqa: E402
import orjson  # noqa: E402

from meshc import api  # noqa: E402
from meshc.check.envoy import fast  # noqa: E402
from meshc.check.envoy.validate import validate_bootstrap  # noqa: E402
from meshc.model.bundle import ENVOY_GATEWAY  # noqa: E402

Configs = list[list[dict[str, Any]]]  # per environment: the egress bootstrap, then each static part


def configs(root: Path) -> Configs:
    _, result = api.compile_repo(root, use_cache=False)
    if not result.envs:
        raise SystemExit(f"the estate did not compile: {[str(d) for d in result.diagnostics][:5]}")
    out: Configs = []
    for name in sorted(result.envs):
        envoy = result.envs[name].envoy
        assert envoy is not None
        out.append([envoy.bootstrap()] + [orjson.loads(envoy.files[rel]) if rel == ENVOY_GATEWAY  # as the layer does
                                          else {"static_resources": envoy.static_part(rel)}
                                          for rel in sorted(envoy.workload_sources)])
    return out


def count_items(envs: Configs) -> int:
    return sum(len((b.get("static_resources") or {}).get(key) or []) for env in envs for b in env
               for key in ("clusters", "listeners"))


def run(envs: Configs, use_fast: bool, memo: bool, cold_each: bool = False) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    found = []
    for env in envs:
        if cold_each:
            fast.forget()
        shared: dict[tuple[str, ...], Any] | None = {} if memo else None  # one memo per environment
        found += [validate_bootstrap(b, shared, fast=use_fast) for b in env]
    return time.perf_counter() - start, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--envs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/meshc-envoy-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root: Path = args.out / f"{args.services}x{args.envs}-s{args.seed}"
    if not (root / "meshc.yaml").exists():
        generate.write_estate(generate.estate_files(args.services, args.envs, seed=args.seed), root)
    gc.disable()  # as meshc's command line runs
    envs = configs(root)
    items = count_items(envs)
    run(envs[:1], use_fast=False, memo=False)  # the PGV package's checkers, built once per process

    results: dict[tuple[str, str], float] = {}  # (path, memo) -> best seconds
    for memo in (False, True):
        label = "memo" if memo else "no memo"
        times: dict[str, list[float]] = {"reference": [], "fast cold per environment": [], "fast cold": [],
                                         "fast warm": []}
        expected: list[Any] | None = None
        for _ in range(args.repeat):  # alternating, so a slower moment of the machine hits all of them
            for name in times:
                if name == "fast cold":
                    fast.forget()
                seconds, found = run(envs, use_fast=name != "reference", memo=memo,
                                     cold_each=name == "fast cold per environment")
                if expected is None:
                    expected = found
                elif found != expected:
                    raise SystemExit(f"{name} ({label}): findings differ from the reference path's")
                times[name].append(seconds)
        for name, seconds in times.items():
            results[(name, label)] = min(seconds)

    fast.COUNTS.reset()
    run(envs, use_fast=True, memo=True, cold_each=True)
    counts = {"fast": fast.COUNTS.fast, "reference": fast.COUNTS.reference, "plans": fast.COUNTS.plans,
              "nodes": fast.COUNTS.nodes}
    rows = [{"path": name, "memo": label, "seconds": seconds, "ms_per_item": seconds / items * 1e3,
             "reference_over_path": results[("reference", label)] / seconds}
            for (name, label), seconds in results.items()]
    report = {"estate": f"{args.services} services x {args.envs} environments, seed {args.seed}",
              "items": items, "configurations": sum(len(e) for e in envs), "rows": rows,
              "cold per environment, with a memo": counts}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['estate']}: {items} clusters and listeners in {report['configurations']} configurations")
    print("| path | memo | seconds | ms per item | reference / path |")
    print("| --- | --- | --: | --: | --: |")
    for row in rows:
        print(f"| {row['path']} | {row['memo']} | {row['seconds']:.2f} | {row['ms_per_item']:.3f} | "
              f"{row['reference_over_path']:.1f} |")
    print(f"cold per environment, with a memo: {counts['fast']} items answered by the fast path, "
          f"{counts['reference']} by the reference path; {counts['plans']} item shapes given a plan, "
          f"{counts['nodes']} node shapes checked")


if __name__ == "__main__":
    main()
