"""Where declarations are read from: a small filesystem interface, so passes never touch the disk.

`DiskTree` reads a repository on disk; `MemoryTree` holds files in a dict (tests, git blobs).
Paths are POSIX, relative to the repository root.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from meshc.files.confine import list_files, read_file


class SourceTree(Protocol):
    def list(self, directory: str) -> list[str]:
        """Relative paths of the regular files below `directory` (recursive), sorted."""

    def read(self, path: str) -> bytes:
        """File bytes; raises OSError when unreadable."""

    def is_dir(self, path: str) -> bool: ...


class DiskTree:
    """A repository on disk, confined (meshc.confine): links are followed only inside the root,
    files are regular and size-limited; a link out or a name with control characters raises
    ConfinementError (an OSError) from `list` or `read`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def list(self, directory: str) -> list[str]:
        base = self.root / directory
        if not (base.is_dir() or base.is_symlink()):
            return []
        return [p.relative_to(self.root).as_posix() for p in list_files(self.root, base)]

    def read(self, path: str) -> bytes:
        return read_file(self.root, self.root / path, shown=path)

    def is_dir(self, path: str) -> bool:
        return (self.root / path).is_dir()


class MemoryTree:
    def __init__(self, files: Mapping[str, bytes | str]) -> None:
        self.files = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}

    def list(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def read(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def is_dir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self.files)
