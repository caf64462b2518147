"""The floor: the least work any compiler of this estate must do, as one timed process.

It reads every declaration file of the estate with PyYAML's C loader, loads the objects meshc
emitted (prepared beforehand, outside the timed process, by `prepare`: the bundle's YAML and JSON
parsed into a marshal file), serialises each object with orjson and writes the bytes grouped into
as many files as meshc's bundle has, under the same relative paths, into a fresh directory.
Files that are neither YAML nor JSON (iptables rules, scripts) are printed text, not objects:
they are kept as bytes and written as they are.
The cyclic garbage collector is off, as in meshc. Nothing else: no merge, no checks, no hashing.

Usage (timed):   floor.py --estate DIR --objects FILE --out DIR
Preparation:     floor.py --prepare BUNDLE_ROOT --objects FILE   (BUNDLE_ROOT holds <env>/ dirs)
"""

from __future__ import annotations

import argparse
import gc
import marshal
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

Grouped = list[tuple[str, "list[Any] | bytes"]]  # relative path -> its objects (or raw text)


def _parse_file(path: Path) -> list[Any] | bytes:
    data = path.read_bytes()
    if path.suffix == ".json":
        return [orjson.loads(data)]
    if path.suffix in (".yaml", ".yml"):
        return [doc for doc in yaml.load_all(data, Loader=yaml.CSafeLoader) if doc is not None]
    return data


def prepare(bundle_root: Path, objects_file: Path) -> dict[str, int]:
    """Parse every file of a built bundle into `objects_file`; returns file/object/byte counts."""
    grouped: Grouped = []
    size = 0
    for path in sorted(p for p in bundle_root.rglob("*") if p.is_file()):
        grouped.append((path.relative_to(bundle_root).as_posix(), _parse_file(path)))
        size += path.stat().st_size
    objects_file.write_bytes(marshal.dumps(grouped))
    objects = sum(len(objs) for _, objs in grouped if isinstance(objs, list))
    return {"files": len(grouped), "objects": objects, "bytes": size}


def read_declarations(estate: Path) -> int:
    """Load every declaration file (environments/**.yaml); returns how many documents were read."""
    count = 0
    for path in sorted((estate / "environments").rglob("*.y*ml")):
        with open(path, "rb") as fh:
            count += yaml.load(fh, Loader=yaml.CSafeLoader) is not None
    return count


def write_objects(grouped: Grouped, out: Path) -> int:
    """Write each file's objects as orjson bytes; returns the bytes written."""
    made: set[str] = set()
    total = 0
    option = orjson.OPT_INDENT_2
    for rel, objs in grouped:
        parent = os.path.dirname(rel)
        if parent not in made:
            (out / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)
        data = objs if isinstance(objs, bytes) else b"".join(
            orjson.dumps(obj, option=option) + b"\n" for obj in objs)
        with open(out / rel, "wb") as fh:
            total += fh.write(data)
    return total


def main(argv: list[str] | None = None) -> int:
    gc.disable()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--estate", type=Path)
    ap.add_argument("--objects", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--prepare", type=Path, metavar="BUNDLE_ROOT")
    args = ap.parse_args(argv)
    if args.prepare is not None:
        print(orjson.dumps(prepare(args.prepare, args.objects)).decode())
        return 0
    if args.estate is None or args.out is None:
        ap.error("--estate and --out are required")
    docs = read_declarations(args.estate)
    grouped: Grouped = marshal.loads(args.objects.read_bytes())
    args.out.mkdir(parents=True, exist_ok=False)
    written = write_objects(grouped, args.out)
    print(f"floor: {docs} declaration files, {len(grouped)} files, {written} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
