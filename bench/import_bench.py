"""`meshc import` against a full build of what it imported, both timed in the same run.

    python bench/import_bench.py [--services 1000] [--envs 3] [--seed 7] [--repeat 3]

Generates the input with bench/live_estate.py (a hand-written-looking estate, per environment a
`kubectl get -o yaml` List, drifted apart at random), then, `--repeat` times, each time into a
fresh empty folder: `meshc import` of every environment (read, verify, layer, write, prove the round
trip) and `meshc build` of the imported estate (every check layer, no cache: a fresh folder).
Prints the medians, the ratio import / build and peak RSS; the import must prove its round trip
(exit 0) or the bench stops. Everything goes to bench/.work/import-<N>x<E>-s<S>/.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from live_estate import live_estate, write  # noqa: E402
from measure import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    names = ("dev", "staging", "prod") if args.envs == 3 else tuple(f"env{i + 1}" for i in range(args.envs))
    work = HERE / ".work" / f"import-{args.services}x{args.envs}-s{args.seed}"
    shutil.rmtree(work, ignore_errors=True)
    paths = write(work / "live", live_estate(args.services, names, args.seed))
    meshc = [sys.executable, "-m", "meshc"]
    imports, builds = [], []
    for k in range(args.repeat):
        root = work / f"estate-{k}"
        cmd = [*meshc, "import", "-C", str(root), *(str(paths[e]) for e in names), *(f"--env={e}" for e in names)]
        got = run(cmd, cwd=work)
        if got.returncode != 0:
            raise SystemExit(f"meshc import exited {got.returncode}: {got.stderr_tail}")
        imports.append(got)
        built = run([*meshc, "build", "-C", str(root)], cwd=work)
        if built.returncode != 0:
            raise SystemExit(f"meshc build exited {built.returncode}: {built.stderr_tail}")
        builds.append(built)
    objects = sum(1 for e in names for line in paths[e].read_text().splitlines() if line.startswith("- apiVersion:"))
    t_import = statistics.median(r.wall for r in imports)
    t_build = statistics.median(r.wall for r in builds)
    rss = [r.rss_kb for r in imports if r.rss_kb]
    brss = [r.rss_kb for r in builds if r.rss_kb]
    print(f"| import bench | {args.services} services x {args.envs} environments, {objects} objects, "
          f"median of {args.repeat} |")
    print("| --- | --: |")
    print(f"| meshc import (read, verify, layer, write, prove) | {t_import:.2f} s |")
    print(f"| meshc build of the imported estate (every check, no cache) | {t_build:.2f} s |")
    print(f"| **import / build** | **{t_import / t_build:.2f}** |")
    if rss and brss:
        print(f"| peak RSS import / build | {max(rss) / 1e6:.2f} GB / {max(brss) / 1e6:.2f} GB |")


if __name__ == "__main__":
    main()
