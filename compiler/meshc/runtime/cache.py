"""Content-hash caches, kept per user outside the working tree (meshc.userstate: never part of a
bundle, safe to delete at any time, authenticated before anything in them is loaded).

* parse: sha256 of a declaration file -> its service entries (clean files only), so unchanged
  files are not parsed again;
* units: per environment, a key made of the merged declaration, its layers' positions, the
  environment's settings, the templates and meshc's version -> that service's compiled output
  (objects, file bytes, index entries, diagnostics);
* checks: (layer fingerprint, object sha256) -> findings, so unchanged objects are not re-checked;
* envoy: content hash of one service's Envoy inputs -> its clusters;
* builds/<hash of an output directory>.json: the record of the last build written there (key of
  every input, sha256 of every bundle file), so a rebuild with nothing changed stops after
  hashing the inputs and the bundle files (`outdir.py` writes, verifies and invalidates it).
A cache from another meshc version or other templates is discarded as a whole.

The state file (`<state home>/repos/<hash of the repository's real path>/state.pickle`) is
`MAGIC`, an HMAC-SHA256 tag under the per-user key, then the pickles; the tag is checked over the
whole file before a single pickle is loaded, so a file meshc did not write itself is ignored (a
note says so), and nothing a repository holds is ever unpickled: an old or planted
`.meshc-cache/state.pickle` in the working tree is never read. It is replaced by rename, never
written in place; a temporary file left by a killed build (`state.tmp-<pid>`) is removed by the
next build (`outdir.clean_cache`).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshc import __version__
from meshc.files.confine import CRD_LIMIT, read_file
from meshc.runtime import faults
from meshc.runtime.userstate import TAG_BYTES, new_mac, repo_state, same, state_home

CACHE_DIR = ".meshc-cache"


@dataclass
class BuildCache:
    root: Path
    stamp: str
    parse: dict[str, Any] = field(default_factory=dict)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, ...], Any] = field(default_factory=dict)  # meshc.check.common.CheckKey
    written: dict[str, dict[str, str]] = field(default_factory=dict)  # unused since the record (outdir.py)
    envoy: dict[str, Any] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (what happened, what to do)

    @property
    def path(self) -> Path:
        return repo_state(self.root) / "state.pickle"

    @classmethod
    def open(cls, root: Path, fingerprint: bytes) -> BuildCache:
        stamp = hashlib.sha256(__version__.encode() + b"\0" + fingerprint).hexdigest()
        cache = cls(root, stamp)
        planted = root / CACHE_DIR / "state.pickle"
        if planted.exists() or planted.is_symlink():
            cache.notes.append((f"{planted} is not read: meshc keeps its cache outside the repository, in "
                                f"{cache.path.parent}", f"delete {planted}"))
        try:
            with open(cache.path, "rb") as fh:
                if not _authentic(fh):
                    cache.notes.append((f"{cache.path} is not a cache this user's meshc wrote (no valid "
                                        "tag): ignored, everything is built anew", ""))
                    return cache
                fh.seek(len(MAGIC) + TAG_BYTES)
                head = pickle.load(fh)
                if head != ("meshc-cache", FORMAT, stamp):
                    return cache
                loaded = _read_parts(fh)
        except FileNotFoundError:
            return cache
        except Exception:  # noqa: BLE001 - unreadable or cut off (yet authentic): start empty
            return cache
        for key, value in loaded.items():
            setattr(cache, key, value)
        return cache

    def save(self) -> None:
        """Written as a sequence of pickles of at most CHUNK entries each: pickling the whole state
        at once held a memo entry for every object in it (~190 MB at 10,000 services, the build's
        peak)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.path.parent / "root").write_text(os.path.realpath(self.root) + "\n")  # for pruning
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        faults.point("cache.tmp")
        try:
            with open(tmp, "wb") as fh:
                _hold(fh.fileno())
                mac = new_mac()
                fh.write(MAGIC + bytes(TAG_BYTES))  # the tag, once known, goes in its place
                for part in itertools.chain([("meshc-cache", FORMAT, self.stamp)], self._parts(), [None]):
                    data = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
                    mac.update(data)
                    fh.write(data)
                    faults.point("cache.chunk")
                fh.seek(len(MAGIC))
                fh.write(mac.digest())
            faults.point("cache.written")
            tmp.replace(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        faults.point("cache.renamed")
        prune()

    def _parts(self) -> Iterator[tuple[str, str | None, list[tuple[Any, Any]]]]:
        """(section, environment or None, up to CHUNK of its items)."""
        flat: dict[str, dict[Any, Any]] = {"parse": self.parse, "checks": self.checks,
                                           "written": self.written, "envoy": self.envoy}
        sections: list[tuple[str, str | None, dict[Any, Any]]] = [(name, None, d) for name, d in flat.items()]
        sections += [("units", env, d) for env, d in sorted(self.units.items())]
        for name, env, d in sections:
            items = list(d.items())
            for start in range(0, max(len(items), 1), CHUNK):
                yield name, env, items[start:start + CHUNK]


def _hold(fd: int) -> None:
    """A shared flock on the temporary file while it is written: a build cleaning leftovers
    (`outdir.clean_cache`) never deletes it, even when it cannot see this process."""

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        pass


MAGIC = b"meshc-state\0v3\n"


def _authentic(fh: Any) -> bool:
    """The file's tag is the HMAC of everything after it under this user's key (streamed)."""
    if fh.read(len(MAGIC)) != MAGIC:
        return False
    tag = fh.read(TAG_BYTES)
    mac = new_mac()
    while chunk := fh.read(1 << 20):
        mac.update(chunk)
    return len(tag) == TAG_BYTES and same(mac.digest(), tag)


def prune() -> None:
    """Remove the state folders of repositories that no longer exist (temporary checkouts,
    deleted clones); each folder names its repository in `root`."""


    repos = state_home() / "repos"
    try:
        folders = list(os.scandir(repos))
    except OSError:
        return
    for entry in folders:
        try:
            where = Path(entry.path, "root").read_text().strip()
        except OSError:
            continue
        if where and not os.path.isdir(where):
            shutil.rmtree(entry.path, ignore_errors=True)


FORMAT = 3
CHUNK = 5000
_SECTIONS = ("parse", "units", "checks", "written", "envoy")


def _read_parts(fh: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: {} for name in _SECTIONS}
    while (part := pickle.load(fh)) is not None:
        name, env, items = part
        target = out[name] if env is None else out[name].setdefault(env, {})
        target.update(items)
    return out


def inputs_key(root: Path, paths: list[str], extra: bytes) -> str:
    """Hash of every input file's path and bytes plus `extra` (settings of this build)."""
    h = hashlib.sha256(extra)
    for rel in paths:
        h.update(rel.encode() + b"\0")
        try:  # confined: a link out, a device or an oversized file is not read (the build reports it)
            h.update(hashlib.sha256(read_file(root, root / rel, CRD_LIMIT)).digest())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()
