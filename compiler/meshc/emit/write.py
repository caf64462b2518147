"""Pass `write`: the bundles of one build into the output folder, and the record of the build.

Input: each environment's `Bundle`, the output folder, the build's inputs key (None: no record,
as with --no-cache). Output: the folders written and the diagnostics (B001 output folder not
writable, B003 cache folder not writable, B004 build not recorded, B006 a folder meshc did not
make). Order, so that a kill anywhere leaves either bundle whole and no record of a bundle that
is not there: refuse foreign folders, delete the record, swap each bundle in
(`bundle.write_bundle_files`), write the record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meshc.emit.bundle import write_bundle_files
from meshc.model.bundle import Bundle
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.runtime import faults, outdir
from meshc.runtime.cache import CACHE_DIR


def write_bundles(root: Path, out_root: Path, bundles: dict[str, Bundle | None], key: str | None,
                  progress: Callable[[str], None] | None = None) -> tuple[list[Path], list[Diagnostic]]:
    """Every bundle swapped into out_root/<env>; with a key, the build recorded under it."""
    written: list[Path] = []
    problems: list[Diagnostic] = []
    foreign = outdir.not_ours(out_root, bundles)
    if foreign:
        problems.append(Diagnostic(
            "B006", Severity.ERROR, f"{foreign[0]} exists and is not a bundle meshc wrote (no index.json with "
            "the meshcBundle marker): meshc replaces only folders it made", Position(str(foreign[0])),
            hint="move that folder away, or write bundles elsewhere (meshc.yaml's out:, or --out)"))
        return written, problems
    try:
        outdir.invalidate(root, out_root)
    except OSError as exc:
        problems.append(cache_error(root, exc))
        return written, problems
    if progress:
        progress("writing bundles")
    files: dict[str, dict[str, str]] = {}
    try:
        for env in sorted(bundles):
            bundle = bundles[env]
            assert bundle is not None
            final, files[env] = write_bundle_files(out_root, bundle)
            written.append(final)
            faults.point("build.env.written", env)
    except OSError as exc:
        done = ", ".join(p.name for p in written)
        problems.append(Diagnostic(
            "B001", Severity.ERROR, f"cannot write the output folder {out_root}: {why(exc)}",
            hint="make it (or meshc.yaml's out:, or --out) a folder meshc can write; "
                 + (f"written before the failure: {done}; " if done else "")
                 + "every other out/<env> is its previous bundle, unchanged"))
        written.clear()
        return written, problems
    if key is not None:
        try:
            outdir.write_record(root, out_root, outdir.Record(key, files))
        except OSError as exc:
            problems.append(Diagnostic(
                "B004", Severity.WARNING,
                f"the bundles are written, but the build could not be recorded in {root / CACHE_DIR}: "
                f"{why(exc)}", hint="the next build rewrites them instead of finding them up to date"))
        faults.point("build.recorded")
    return written, problems


def why(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def cache_error(root: Path, exc: OSError) -> Diagnostic:
    """The folder that failed: .meshc-cache/ (spool, record) or the per-user state folder (cache)."""
    folder = Path(exc.filename).parent if isinstance(exc.filename, str) else root / CACHE_DIR
    return Diagnostic("B003", Severity.ERROR, f"cannot write the cache folder {folder}: {why(exc)}",
                      hint=f"make {folder} a folder meshc can write (what meshc keeps there is safe to "
                           "delete); the bundles were not changed")
