"""Content-hash caches in .meshc-cache/ (never part of a bundle; safe to delete at any time).

* parse: sha256 of a declaration file -> its service entries (clean files only), so unchanged
  files are not parsed again;
* units: per environment, a key made of the merged declaration, its layers' positions, the
  environment's settings, the templates and meshc's version -> that service's compiled output
  (objects, file bytes, index entries, diagnostics);
* checks: (layer fingerprint, object sha256) -> findings, so unchanged objects are not re-checked;
* envoy: content hash of one service's Envoy inputs -> its clusters;
* builds.json: output directory -> key of every input of the last build written there, so a
  rebuild with nothing changed stops after hashing the inputs.
A cache from another meshc version or other templates is discarded as a whole.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import __version__

CACHE_DIR = ".meshc-cache"


@dataclass
class BuildCache:
    root: Path
    stamp: str
    parse: dict[str, Any] = field(default_factory=dict)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, str], Any] = field(default_factory=dict)
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    envoy: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / CACHE_DIR / "state.pickle"

    @classmethod
    def open(cls, root: Path, fingerprint: bytes) -> "BuildCache":
        stamp = hashlib.sha256(__version__.encode() + b"\0" + fingerprint).hexdigest()
        cache = cls(root, stamp)
        try:
            with open(cache.path, "rb") as fh:
                head = pickle.load(fh)
                if head != ("meshc-cache", FORMAT, stamp):
                    return cache
                loaded = _read_parts(fh)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError,
                TypeError, KeyError):
            return cache
        for key, value in loaded.items():
            setattr(cache, key, value)
        return cache

    def save(self) -> None:
        """Written as a sequence of pickles of at most CHUNK entries each: pickling the whole state
        at once held a memo entry for every object in it (~190 MB at 10,000 services, the build's
        peak)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            for part in itertools.chain([("meshc-cache", FORMAT, self.stamp)], self._parts(), [None]):
                pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.path)
        gitignore = self.path.parent / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")

    def _parts(self) -> Iterator[tuple[str, str | None, list[tuple[Any, Any]]]]:
        """(section, environment or None, up to CHUNK of its items)."""
        flat: dict[str, dict[Any, Any]] = {"parse": self.parse, "checks": self.checks,
                                           "written": self.written, "envoy": self.envoy}
        sections = [(name, None, d) for name, d in flat.items()]
        sections += [("units", env, d) for env, d in sorted(self.units.items())]
        for name, env, d in sections:
            items = list(d.items())
            for start in range(0, max(len(items), 1), CHUNK):
                yield name, env, items[start:start + CHUNK]


FORMAT = 2
CHUNK = 5000
_SECTIONS = ("parse", "units", "checks", "written", "envoy")


def _read_parts(fh: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: {} for name in _SECTIONS}
    while (part := pickle.load(fh)) is not None:
        name, env, items = part
        target = out[name] if env is None else out[name].setdefault(env, {})
        target.update(items)
    return out


def _builds_path(root: Path) -> Path:
    return root / CACHE_DIR / "builds.json"


def last_build(root: Path, out_dir: Path) -> str | None:
    """Key of the last build written to out_dir (a small file: read without the big cache)."""
    try:
        return dict(json.loads(_builds_path(root).read_text())).get(str(out_dir.resolve()))
    except (OSError, ValueError):
        return None


def record_build(root: Path, out_dir: Path, key: str) -> None:
    path = _builds_path(root)
    try:
        data = dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        data = {}
    data[str(out_dir.resolve())] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    tmp.replace(path)


def inputs_key(root: Path, paths: list[str], extra: bytes) -> str:
    """Hash of every input file's path and bytes plus `extra` (settings of this build)."""
    h = hashlib.sha256(extra)
    for rel in paths:
        h.update(rel.encode() + b"\0")
        try:
            h.update(hashlib.sha256((root / rel).read_bytes()).digest())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()
