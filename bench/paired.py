"""Paired clean builds of two versions of meshc on one generated estate, alternating A and B.

    bench/paired.py --base REF [--head REF] [--services 1000] [--envs 3] [--pairs 5] [--args "build"]
                    [--gateway-percent 30 [--base-estate-gateway-percent 0]] [--one-file]

Each version is a `git worktree` of its ref under bench/.work/paired/ (HEAD: this working tree),
run as `python -m meshc` with its own compiler/ first on sys.path and the same Python packages.
Every run starts clean (fresh per-user state folder, no .meshc-cache/, no out/), so it measures
a CI runner's build. Prints each pair's wall times and the ratios head ÷ base, and their median,
and the bytes of out/ each version wrote (the bundles) with their ratio.

With `--one-file`, each version builds its own copy of the estate once (its own state folder),
then every run changes one value in environments/base/svc-0000.yaml (the same change for both
versions in a pair, as bench/run.py's rebuild-one step) and times the rebuild with the last
build's cache. A ref is resolved to its commit first, so a worktree of a branch name is never a
stale one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "paired"
sys.path.insert(0, str(REPO / "bench"))

import generate  # noqa: E402
from steps import edit_one_file  # noqa: E402
from suite import EDITED_FILE  # noqa: E402


def _checkout(ref: str) -> Path:
    if ref == "WORKTREE":
        return REPO
    ref = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", f"{ref}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    target = WORK / f"src-{ref}"
    if not target.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(target), ref],
                       check=True, capture_output=True)
    return target


def _out_bytes(estate: Path) -> int:
    out = estate / "out"
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else 0


def _run(src: Path, estate: Path, args: list[str], state: Path | None = None) -> float:
    """One run of meshc from `src` on `estate`: clean (fresh state folder, no out/ or cache), or
    with the state folder `state` and what the last run left."""
    if state is not None:
        return _timed(src, estate, args, state)
    for leftover in (estate / "out", estate / ".meshc-cache"):
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="meshc-state-") as fresh:
        return _timed(src, estate, args, Path(fresh))


def _timed(src: Path, estate: Path, args: list[str], state: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(src / "compiler"), MESHC_STATE_DIR=str(state))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "meshc", *args, "-C", str(estate)], env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{src}: meshc {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def _one_file(base: Path, head: Path, estate: Path, args: list[str], pairs: int) -> list[tuple[float, float]]:
    """Rebuilds after one changed value, each version on its own copy of `estate` and state."""
    copies = []
    for tag, src in (("base", base), ("head", head)):
        copy, state = WORK / f"one-file-{tag}", WORK / f"one-file-{tag}-state"
        for old in (copy, state):
            shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(estate, copy, ignore=shutil.ignore_patterns("out", ".meshc-cache"))
        state.mkdir()
        _run(src, copy, args, state)  # the build whose cache the rebuilds use
        copies.append((src, copy, state, (copy / EDITED_FILE).read_text()))
    times = []
    for i in range(pairs):
        order = copies if i % 2 == 0 else copies[::-1]
        got = {}
        for src, copy, state, original in order:
            edit_one_file(copy / EDITED_FILE, original, i)
            got[src] = _run(src, copy, args, state)
        times.append((got[base], got[head]))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--head", default="WORKTREE")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--args", default="build")
    ap.add_argument("--gateway-percent", type=float, default=0.0,
                    help="the share of services through the egress gateway (generate.py)")
    ap.add_argument("--base-estate-gateway-percent", type=float, default=None,
                    help="run the base on an estate with this gateway share instead (same code "
                         "on two estates: --base and --head the same ref)")
    ap.add_argument("--one-file", action="store_true",
                    help="time rebuilds after one changed value instead of clean builds")
    opts = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    def estate_for(percent: float) -> Path:
        path = WORK / (f"estate-{opts.services}x{opts.envs}" + (f"-gw{percent:g}" if percent else ""))
        if not path.exists():
            generate.write_estate(generate.estate_files(opts.services, opts.envs, seed=1,
                                                        gateway_percent=percent), path)
        return path

    estate = estate_for(opts.gateway_percent)
    base_estate = estate if opts.base_estate_gateway_percent is None else estate_for(opts.base_estate_gateway_percent)
    base, head = _checkout(opts.base), _checkout(opts.head)
    args = opts.args.split()
    if opts.one_file:
        times = _one_file(base, head, estate, args, opts.pairs)
        print(f"meshc {opts.args} after one changed value at {opts.services} x {opts.envs}, {opts.pairs} pairs: "
              f"base {opts.base}, head {opts.head}")
        for i, (tb, th) in enumerate(times):
            print(f"pair {i + 1}: base {tb:.2f} s, head {th:.2f} s, head/base {th / tb:.3f}")
        ratios = [th / tb for tb, th in times]
        print(f"median head/base {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
        return
    _run(base, base_estate, args)  # warm the page cache and the CUE engine install for both
    base_bytes = _out_bytes(base_estate)
    _run(head, estate, args)
    head_bytes = _out_bytes(estate)
    ratios = []
    print(f"meshc {opts.args} at {opts.services} x {opts.envs}, {opts.pairs} pairs: base {opts.base}, head {opts.head}")
    for i in range(opts.pairs):
        runs = [(base, base_estate), (head, estate)]
        first, second = runs if i % 2 == 0 else runs[::-1]
        t1 = _run(*first, args)
        t2 = _run(*second, args)
        tb, th = (t1, t2) if first == runs[0] else (t2, t1)
        ratios.append(th / tb)
        print(f"pair {i + 1}: base {tb:.2f} s, head {th:.2f} s, head/base {th / tb:.3f}")
    print(f"median head/base {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    if base_bytes and head_bytes:
        print(f"out/ bytes: base {base_bytes:,}, head {head_bytes:,}, head/base {head_bytes / base_bytes:.3f}")


if __name__ == "__main__":
    main()
