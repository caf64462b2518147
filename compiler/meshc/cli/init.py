"""`meshc init`: scaffold an estate repository that builds at once.

Input: a folder (created when missing). Output: the files of scaffold/ (meshc.yaml, environments
base + dev + prod, one example policy, waivers.yaml, .meshc-diffignore, .gitignore, the CI
workflows) plus the editor schemas (.meshc/schemas/*.schema.json, which the YAML files name in
their `yaml-language-server` comment). Invariants: nothing is written into a folder that holds
anything but `.git` (exit 2 naming what is there, with the files that would be overwritten);
a failure while writing removes what this run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SCAFFOLD = Path(__file__).resolve().parents[1] / "scaffold"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
IGNORED = {".git"}


@dataclass(frozen=True)
class InitError(Exception):
    message: str
    hint: str


def scaffold_files() -> dict[str, bytes]:
    """Relative path -> bytes of every file `meshc init` writes, in a stable order."""
    files: dict[str, bytes] = {}
    for path in sorted(SCAFFOLD.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(SCAFFOLD).as_posix()] = path.read_bytes()
    for name in ("declarations", "env"):
        text = resources.files("meshc.schemas").joinpath(f"{name}.schema.json").read_bytes()
        files[f".meshc/schemas/{name}.schema.json"] = text
    return dict(sorted(files.items()))


def init_estate(target: Path) -> list[str]:
    """Write a new estate into `target`; the relative paths written, or InitError."""
    files = scaffold_files()
    if target.exists() and not target.is_dir():
        raise InitError(f"{target} exists and is not a folder", "name a new or empty folder")
    present = sorted(p.name for p in target.iterdir() if p.name not in IGNORED) if target.is_dir() else []
    if present:
        clashes = [rel for rel in files if (target / rel).exists() or (target / rel).is_symlink()]
        shown = clashes or present
        listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
        what = "would overwrite" if clashes else "is not empty; it holds"
        raise InitError(f"{target} {what}: {listed}; nothing was written",
                        "run `meshc init` in a new or empty folder (a fresh `git clone` is fine)")
    written: list[Path] = []
    made_target = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as fh:
                written.append(path)
                fh.write(data)
    except OSError as exc:
        for path in reversed(written):
            path.unlink(missing_ok=True)
        _remove_empty_dirs(target, remove_target=made_target)
        raise InitError(f"cannot write {target}: {exc.strerror or exc}; nothing was kept",
                        "check the folder's permissions and free space") from None
    return list(files)


def _remove_empty_dirs(target: Path, remove_target: bool) -> None:
    for path in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            path.rmdir()
        except OSError:
            pass
    if remove_target:
        try:
            target.rmdir()
        except OSError:
            pass
