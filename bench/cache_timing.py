"""Cache load and save of an estate that has been built once, with and without authentication.

Usage: python bench/cache_timing.py ESTATE [--repeat N]

Measures, in one process and one run, the state file meshc keeps for ESTATE (meshc.userstate):
* load: check the HMAC tag over the whole file, then unpickle (what `BuildCache.open` does), and
  the unpickling alone (what loading cost before the tag, when the file sat in the repository);
* save: pickle, tag and write (what `BuildCache.save` does), and pickle and write alone.
Prints the medians and the ratios; nothing is timed in the tests.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshc.api import code_fingerprint
from meshc.runtime.cache import MAGIC, BuildCache, _authentic, _read_parts
from meshc.front.project import load_project
from meshc.expand.templating import template_fingerprint
from meshc.runtime.userstate import TAG_BYTES


def _median(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("estate", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    project, _ = load_project(args.estate)
    templates = [p for p in [project.resolve(project.templates)] if p is not None]
    cache = BuildCache.open(args.estate, code_fingerprint() + template_fingerprint(templates, args.estate))
    path = cache.path
    if not path.is_file():
        print(f"no cache for {args.estate} at {path}: build it first", file=sys.stderr)
        return 2
    with open(path, "rb") as fh:  # the saved state, whatever meshc version wrote it (no stamp check)
        fh.seek(len(MAGIC) + TAG_BYTES)
        pickle.load(fh)
        for key, value in _read_parts(fh).items():
            setattr(cache, key, value)
    size = path.stat().st_size

    def load_checked() -> None:
        with open(path, "rb") as fh:
            assert _authentic(fh)
            fh.seek(len(MAGIC) + TAG_BYTES)
            pickle.load(fh)
            _read_parts(fh)

    def load_plain() -> None:
        with open(path, "rb") as fh:
            fh.seek(len(MAGIC) + TAG_BYTES)
            pickle.load(fh)
            _read_parts(fh)

    def save_plain() -> None:
        with tempfile.NamedTemporaryFile(dir=path.parent) as fh:
            for part in [("meshc-cache", 3, cache.stamp), *cache._parts(), None]:
                pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()

    rows = {
        "load, tag checked": _median(load_checked, args.repeat),
        "load, unpickle only (before)": _median(load_plain, args.repeat),
        "save, tagged": _median(cache.save, args.repeat),
        "save, pickle only (before)": _median(save_plain, args.repeat),
    }
    print(f"state file {size / 1e6:.1f} MB, {sum(len(u) for u in cache.units.values()):,} units; "
          f"median of {args.repeat}; {os.cpu_count()} cores")
    for name, seconds in rows.items():
        print(f"  {name:32s} {seconds:7.3f} s")
    print(f"  load ratio (after / before)      {rows['load, tag checked'] / rows['load, unpickle only (before)']:.2f}")
    print(f"  save ratio (after / before)      {rows['save, tagged'] / rows['save, pickle only (before)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
