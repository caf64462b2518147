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

The file is a sequence of parts, each a pickled head (section, environment, length) and a pickled
chunk of up to CHUNK entries. The units and the Envoy memo stay in the file when it is read
(`Packed`: where each chunk is, and its sha256) and are unpickled only when a build reads them:
an environment's units when it is compiled (then released), the memo in the process that makes
an Envoy configuration. A build that streams its
environments (meshc.pipeline.compile_streamed) does not hold what it learns for the cache until
the end either: each environment's units and Envoy memo are pickled at once, as parts, to a
folder of the build in the state folder (`Spilled`: `spill.tmp-<pid>`, removed after `save`, or
by the next build when the process died), and `save` copies those bytes as they are.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshc import __version__
from meshc.files.confine import CRD_LIMIT, read_file
from meshc.runtime import faults
from meshc.runtime.userstate import TAG_BYTES, new_mac, repo_state, same, state_home

CACHE_DIR = ".meshc-cache"


class _Unpickled(Mapping[Any, Any]):
    """A read-only mapping whose entries are unpickled when it is first read: `_pieces` gives the
    pickled dicts it is made of."""

    _loaded: dict[Any, Any] | None = None

    def _pieces(self) -> Iterator[bytes]:
        raise NotImplementedError

    def _entries(self) -> dict[Any, Any]:
        if self._loaded is None:
            loaded: dict[Any, Any] = {}
            for piece in self._pieces():
                loaded.update(pickle.loads(piece))
            self._loaded = loaded
        return self._loaded

    def __getitem__(self, key: Any) -> Any:
        return self._entries()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())


class Packed(_Unpickled):
    """Entries of one cache section (`section`, and `env` for the units) left in the cache file when
    it was read: where each chunk is in `path` (offset, length, sha256 of its bytes, taken while the
    file was authenticated), unpickled only when the section is first read (an environment's
    units when that environment is compiled; the Envoy memo by the process that makes an Envoy
    configuration, to which it is sent as these references). A chunk whose bytes are no longer
    those (the file was replaced by another build) is left out: a miss, never a wrong entry."""

    def __init__(self, section: str, env: str | None, path: str, chunks: Sequence[tuple[int, int, str]] = ()) -> None:
        self.section, self.env, self.path = section, env, path
        self._chunks: list[tuple[int, int, str]] = list(chunks)

    def _read(self) -> Iterator[bytes]:
        """The chunks' bytes that are still what was authenticated."""
        try:
            with open(self.path, "rb") as fh:
                for offset, size, sha in self._chunks:
                    fh.seek(offset)
                    chunk = fh.read(size)
                    if len(chunk) == size and hashlib.sha256(chunk).hexdigest() == sha:
                        yield chunk
        except OSError:
            return

    def _pieces(self) -> Iterator[bytes]:
        yield from self._read()
        self._chunks = []

    def parts(self) -> Iterator[bytes]:
        if self._loaded is None:
            for chunk in self._read():
                yield _part(self.section, self.env, chunk)
        else:
            yield from _parts(self.section, self.env, self._loaded)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._loaded is not None:
            return dict, (self._loaded,)
        return Packed, (self.section, self.env, self.path, self._chunks)


class Spilled(_Unpickled):
    """Entries of one cache section already pickled to files, as the parts `BuildCache.save`
    writes: nothing holds them in memory until the build saves the cache, which copies the files'
    bytes as they are. Read (only tests do) they are loaded."""

    def __init__(self, section: str, env: str | None, paths: Sequence[str] = ()) -> None:
        self.section, self.env, self.paths = section, env, tuple(paths)

    @classmethod
    def write(cls, path: Path, section: str, env: str | None, items: Iterable[tuple[Any, Any]]) -> Spilled:
        """`items` pickled to `path` in parts of at most CHUNK entries."""
        with open(path, "wb") as fh:
            for part in _parts(section, env, dict(items)):
                fh.write(part)
        return cls(section, env, [str(path)])

    def blobs(self) -> Iterator[bytes]:
        """The files' bytes, in pieces of at most 1 MiB."""
        for path in self.paths:
            with open(path, "rb") as fh:
                while piece := fh.read(1 << 20):
                    yield piece

    def _pieces(self) -> Iterator[bytes]:
        for path in self.paths:
            with open(path, "rb") as fh:
                while fh.peek(1):
                    _, _, size = pickle.load(fh)
                    yield fh.read(size)


@dataclass
class BuildCache:
    root: Path
    stamp: str
    parse: dict[str, Any] = field(default_factory=dict)
    units: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, ...], Any] = field(default_factory=dict)  # meshc.check.common.CheckKey
    written: dict[str, dict[str, str]] = field(default_factory=dict)  # unused since the record (outdir.py)
    envoy: Mapping[str, Any] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (what happened, what to do)
    _spill: tuple[Path, int] | None = field(default=None, repr=False, compare=False)  # folder, its claim
    _spilled: int = field(default=0, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return repo_state(self.root) / "state.pickle"

    def spill_path(self, name: str) -> Path:
        """A new file name for `Spilled.write` in this build's spill folder (made, and held like a
        spool folder, on first use); OSError when the state folder cannot be written."""
        if self._spill is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder = self.path.parent / f"spill.tmp-{os.getpid()}"
            folder.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
            _hold(fd)
            self._spill = (folder, fd)
        self._spilled += 1
        return self._spill[0] / f"{self._spilled}-{name}"

    def drop_spills(self) -> None:
        """Remove the spill folder (after `save`, or when the build does not save)."""
        if self._spill is not None:
            folder, fd = self._spill
            self._spill = None
            shutil.rmtree(folder, ignore_errors=True)
            os.close(fd)

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
                for data in itertools.chain([_pickled(("meshc-cache", FORMAT, self.stamp))], self._blobs(),
                                            [_pickled(None)]):
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
        self.drop_spills()
        prune()

    def _blobs(self) -> Iterator[bytes]:
        """The parts (`_part`: section, environment or None, up to CHUNK of its items); a spilled
        or packed section's as they were written."""
        flat: dict[str, Mapping[Any, Any]] = {"parse": self.parse, "checks": self.checks,
                                              "written": self.written, "envoy": self.envoy}
        sections: list[tuple[str, str | None, Mapping[Any, Any]]] = [(name, None, d) for name, d in flat.items()]
        sections += [("units", env, d) for env, d in sorted(self.units.items())]
        for name, env, d in sections:
            if isinstance(d, Spilled):
                yield from d.blobs()
            elif isinstance(d, Packed):
                yield from d.parts()
            else:
                yield from _parts(name, env, d)


def _pickled(part: Any) -> bytes:
    return pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)


def _part(section: str, env: str | None, chunk: bytes) -> bytes:
    """One part of the cache file: a pickled head (section, environment or None, length), then
    `chunk`, the pickled list of up to CHUNK items (read only when the section is)."""
    return _pickled((section, env, len(chunk))) + chunk


def _parts(section: str, env: str | None, table: Mapping[Any, Any]) -> Iterator[bytes]:
    for chunk in _chunks(list(table.items())):
        yield _part(section, env, _pickled(chunk))


def _chunks(items: list[tuple[Any, Any]]) -> Iterator[list[tuple[Any, Any]]]:
    """Up to CHUNK items at a time; one empty chunk for no items (as the cache file has always had)."""
    for start in range(0, max(len(items), 1), CHUNK):
        yield items[start:start + CHUNK]


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


FORMAT = 4
CHUNK = 5000
_SECTIONS = ("parse", "units", "checks", "written", "envoy")
PACKED = ("units", "envoy")  # sections kept as read until a build reads them (`Packed`)


def _read_parts(fh: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: {} for name in _SECTIONS}
    packed: dict[tuple[str, str | None], list[tuple[int, int, str]]] = {}
    while (head := pickle.load(fh)) is not None:
        name, env, size = head
        offset = fh.tell()
        chunk = fh.read(size)
        if len(chunk) != size:
            raise EOFError("cut off")
        if name in PACKED:
            packed.setdefault((name, env), []).append((offset, size, hashlib.sha256(chunk).hexdigest()))
            continue
        target = out[name] if env is None else out[name].setdefault(env, {})
        target.update(pickle.loads(chunk))
    for (name, env), chunks in packed.items():
        table = Packed(name, env, fh.name, chunks)
        if env is None:
            out[name] = table
        else:
            out[name][env] = table
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
