"""Pass `write`: the bundles of one build into the output folder, and the record of the build.

Input: each environment's bundle, staged beside its out/<env> (`bundle.stage_bundle`: `meshc
build` stages each environment as soon as it is compiled and checked, then releases it), the
output folder, the build's inputs key (None: no record, as with --no-cache). Output: the folders
written and the diagnostics (B001 output folder not writable, B003 cache folder not writable,
B004 build not recorded, B006 a folder meshc did not make). Order, so that a kill anywhere leaves
either bundle whole and no record of a bundle that is not there: refuse foreign folders, delete
the record, swap each staged bundle in (`bundle.swap_staged`), write the record. Until the first
swap nothing of any environment has changed: an error in any environment (or a failed staging)
leaves every out/<env> as it was, and the staged folders are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from meshc.emit.bundle import Staged, discard_staged, stage_bundle, swap_staged
from meshc.model.bundle import Bundle
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.runtime import faults, outdir
from meshc.runtime.cache import CACHE_DIR


def write_bundles(root: Path, out_root: Path, bundles: dict[str, Bundle | None], key: str | None,
                  progress: Callable[[str], None] | None = None) -> tuple[list[Path], list[Diagnostic]]:
    """Every bundle staged, then swapped into out_root/<env>; with a key, the build recorded
    under it."""
    foreign = outdir.not_ours(out_root, bundles)
    if foreign:
        return [], [foreign_error(foreign[0])]
    if progress:
        progress("writing bundles")
    staged: dict[str, Staged] = {}
    try:
        for env in sorted(bundles):
            bundle = bundles[env]
            assert bundle is not None
            staged[env] = stage_bundle(out_root, bundle)
    except OSError as exc:
        discard(staged.values())
        return [], [write_error(out_root, exc, [])]
    return write_staged(root, out_root, staged, key)


def write_staged(root: Path, out_root: Path, staged: Mapping[str, Staged], key: str | None,
                 progress: Callable[[str], None] | None = None) -> tuple[list[Path], list[Diagnostic]]:
    """Swap every staged bundle into out_root/<env> (environment names in order); with a key, the
    build recorded under it. On B006 or an unusable record nothing is swapped; every staged
    folder not swapped in is removed."""
    written: list[Path] = []
    problems: list[Diagnostic] = []
    foreign = outdir.not_ours(out_root, staged)
    if foreign:
        discard(staged.values())
        return written, [foreign_error(foreign[0])]
    try:
        outdir.invalidate(root, out_root)
    except OSError as exc:
        discard(staged.values())
        return written, [cache_error(root, exc)]
    if progress:
        progress("swapping the bundles in")
    files: dict[str, dict[str, str]] = {}
    order = sorted(staged)
    try:
        for env in order:
            written.append(swap_staged(staged[env]))
            files[env] = staged[env].shas
            faults.point("build.env.written", env)
    except OSError as exc:
        discard(staged[env] for env in order[len(written):])
        problems.append(write_error(out_root, exc, written))
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


def discard(staged: Iterable[Staged]) -> None:
    """Remove staged bundles that will not be swapped in."""
    for item in staged:
        discard_staged(item.folder)


def foreign_error(folder: Path) -> Diagnostic:
    return Diagnostic(
        "B006", Severity.ERROR, f"{folder} exists and is not a bundle meshc wrote (no index.json with "
        "the meshcBundle marker): meshc replaces only folders it made", Position(str(folder)),
        hint="move that folder away, or write bundles elsewhere (meshc.yaml's out:, or --out)")


def write_error(out_root: Path, exc: OSError, written: Sequence[Path]) -> Diagnostic:
    """B001: the output folder could not be written; `written`: the environments swapped in before."""
    done = ", ".join(p.name for p in written)
    return Diagnostic(
        "B001", Severity.ERROR, f"cannot write the output folder {out_root}: {why(exc)}",
        hint="make it (or meshc.yaml's out:, or --out) a folder meshc can write; "
             + (f"written before the failure: {done}; " if done else "")
             + "every other out/<env> is its previous bundle, unchanged")


def why(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def cache_error(root: Path, exc: OSError) -> Diagnostic:
    """The folder that failed: .meshc-cache/ (spool, record) or the per-user state folder (cache)."""
    folder = Path(exc.filename).parent if isinstance(exc.filename, str) else root / CACHE_DIR
    return Diagnostic("B003", Severity.ERROR, f"cannot write the cache folder {folder}: {why(exc)}",
                      hint=f"make {folder} a folder meshc can write (what meshc keeps there is safe to "
                           "delete); the bundles were not changed")
