"""Confinement: every file meshc reads because of a repository stays inside that repository.

Declarations, env.yaml, templates (and their includes), policies, waivers, the ignore file and the
CRD file named by meshc.yaml must resolve (links followed) inside the repository root, be regular
files and stay under a size limit. A path outside is read only when the person running meshc
allows it by name (`meshc --allow-outside PATH`, or MESHC_ALLOW_OUTSIDE=PATH[:PATH...]): never
because of anything in the repository, whose meshc.yaml may be a stranger's pull request.

Invariants: nothing here follows a link before checking where it leads; a FIFO, device or socket
is never opened for reading in a way that blocks; names with control characters are refused (they
could forge lines in logs and CI annotations). Errors are `ConfinementError` (an OSError whose
strerror says what is wrong and names the path), so readers that report OSError report these too.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

ALLOW_ENV = "MESHC_ALLOW_OUTSIDE"
FILE_LIMIT = 8 * 1024 * 1024        # a declaration, env.yaml, template, policy, waivers or ignore file
CRD_LIMIT = 64 * 1024 * 1024        # a CRD file (`kubectl get crd -o yaml` of a whole cluster)
FILES_LIMIT = 100_000               # files below one folder (environments/, policies/, templates/)


class ConfinementError(OSError):
    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.strerror = message
        self.path = path

    def __str__(self) -> str:
        return self.strerror or ""  # always `message`; OSError types it str | None


PACKAGE = Path(__file__).resolve().parents[1]  # meshc's own files (shipped schemas, templates): never secret


def allowed_outside() -> list[Path]:
    """The outside paths meshc may read: its own package, and what the person running meshc
    allowed by name (never anything the repository says)."""
    raw = os.environ.get(ALLOW_ENV, "")
    return [PACKAGE, *(Path(p).resolve() for p in raw.split(os.pathsep) if p.strip())]


def bad_name(name: str) -> bool:
    """A file name with control, format (bidi) or separator characters."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name)


def _inside(real: Path, roots: Iterable[Path]) -> bool:
    return any(real == r or real.is_relative_to(r) for r in roots)


def resolve_inside(root: Path, path: Path, shown: str | None = None) -> Path:
    """`path` with every link resolved, when that lies inside `root` (or an allowed outside path);
    ConfinementError naming the link and its target otherwise."""
    shown = shown or str(path)
    if bad_name(str(path)):
        raise ConfinementError(f"{shown!r}: the name holds control or bidi characters; rename it", repr(shown))
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(root)), *allowed_outside()]
    if not _inside(real, roots):
        how = "is a link that resolves to" if real != Path(os.path.normpath(path.absolute())) else "is"
        raise ConfinementError(f"{shown} {how} {real}, outside the repository: meshc reads only files inside "
                               f"it (allow a path explicitly with `meshc --allow-outside PATH`)", shown)
    return real


def read_file(root: Path, path: Path, limit: int = FILE_LIMIT, shown: str | None = None) -> bytes:
    """The bytes of a regular file inside the repository, at most `limit` of them."""
    shown = shown or str(path)
    real = resolve_inside(root, path, shown)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfinementError(f"{shown}: cannot read ({exc.strerror or exc})", shown) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfinementError(f"{shown} is not a regular file (a device, pipe or socket); meshc reads "
                                   "only regular files", shown)
        if info.st_size > limit:
            raise ConfinementError(f"{shown} is {info.st_size:,} bytes, over meshc's limit of {limit:,} for "
                                   "one file; split it", shown)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ConfinementError(f"{shown} grew past meshc's limit of {limit:,} bytes while being read", shown)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular(path: Path, limit: int = FILE_LIMIT) -> bytes:
    """A file the person running meshc named (a flag), or one meshc.yaml named and project
    loading already confined: a regular file under `limit` bytes, links followed."""
    real = Path(os.path.realpath(path))
    return read_file(real.parent, real, limit, shown=str(path))


def list_files(root: Path, directory: Path, hidden: bool = False, limit: int = FILES_LIMIT) -> list[Path]:
    """Regular files below `directory` (itself inside the repository), sorted, following links only
    where they lead inside; a link out, a name with control characters or more than `limit` files
    is a ConfinementError. Hidden entries are skipped unless `hidden`."""
    top = resolve_inside(root, directory)
    if not top.is_dir():
        return []
    out: list[Path] = []
    seen: set[Path] = set()

    def walk(shown: Path, real: Path) -> None:
        if real in seen:  # a link cycle
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(real), key=lambda e: e.name)
        except OSError as exc:
            raise ConfinementError(f"{shown}: cannot list ({exc.strerror or exc})", str(shown)) from None
        for entry in entries:
            if entry.name.startswith(".") and not hidden:
                continue
            here = shown / entry.name
            target = resolve_inside(root, Path(entry.path), str(here))
            if target.is_dir():
                walk(here, target)
                continue
            # files, and what only looks like one (a dangling link, a pipe, a device): listed, so that
            # reading it reports what it is instead of it being left out without a word
            out.append(here)
            if len(out) > limit:
                raise ConfinementError(f"{directory} holds more than {limit:,} files; meshc stops there",
                                       str(directory))
    walk(directory, top)
    return sorted(out)
