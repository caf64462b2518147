"""Shared fixtures and the golden-file helpers.

Goldens (tests/goldens/, reviewed like code) are compared byte for byte by `check_golden` (one
file) and `check_golden_dir` (a whole bundle: same file set, same bytes). A mismatch fails with a
unified diff of each differing file, and lists missing and stale ones.

Envoy files are stored split, so a review sees only what changed: the golden of
``<dir>/envoy/bootstrap.json`` (likewise ``clusters.json``, ``listeners.json``) is the folder
``<dir>/envoy/bootstrap/`` with

* ``clusters/<name>.json`` and ``listeners/<name>.json`` (a Bootstrap's static resources), or
  ``resources/<name>.json`` (the shared CDS / LDS files): one file per cluster and listener;
* ``rest.json``: the file with each of those lists replaced by the ordered list of names.
  (A VM workload's envoy/workloads/<group>.json is small and stored whole.)

File names are the cluster or listener name with ``|`` written as ``,``; every other character
except letters, digits, ``.``, ``_`` and ``-`` (and a leading ``.``) is written %XX (UTF-8), so
names map one to one to files; a name longer than 100 characters is cut and ends in ``~`` plus a
hash, names equal but for case get a ``~`` hash too (case-insensitive file systems). The check
reassembles the bootstrap from the pieces on disk and compares its bytes with meshc's file; a
bootstrap that does not split and reassemble byte for byte fails the test (teach
`split_envoy_bootstrap` the new shape).

Updating: ``MESHC_UPDATE_GOLDENS=1`` (or `make goldens`) rewrites every golden;
``MESHC_UPDATE_GOLDENS=<pattern>[,<pattern>...]`` (or ``make goldens CASE=<pattern>``) rewrites
only the goldens whose path (from the repository root) contains the pattern as a run of whole
path components, shell globs allowed: ``tls-modes``, ``estate/prod``, ``cases/resolution-*``,
``envoy`` (every bootstrap), ``tls_modes`` (tests/fixtures/envoy/tls_modes/). Goldens not
targeted are still compared. An update also removes the stale files of what it rewrites (a
removed cluster's piece, a file meshc no longer writes); the end of the run lists what changed.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import settings

from meshc.model.release import shipped_crds

from .netns_helpers import BACKENDS, Backend, Lab, require_backend

# Property tests are deterministic in CI: a fixed derandomized search (plus each test's explicit
# @example cases) and no example database carried between runs. MESHC_LONG_PROPERTY=1 runs a long
# random search by hand instead; put what it finds into an @example.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("long", max_examples=2000, derandomize=False, database=None)
settings.load_profile("long" if os.environ.get("MESHC_LONG_PROPERTY") == "1" else "ci")

REPO = Path(__file__).resolve().parents[1]
CRDS = shipped_crds()
# The full official CRD file (optional, beside the repository): only the tests that compare the
# shipped schemas with their source need it; they skip with a message when it is absent.
FULL_CRDS = Path(os.environ.get("MESHC_FULL_CRDS", REPO.parent / "shared" / "schemas" / "istio-crds-all.yaml"))


# --- goldens (see the module docstring) ------------------------------------------------------

UPDATE_VAR = "MESHC_UPDATE_GOLDENS"
GOLDENS = REPO / "tests" / "goldens"


def copy_example_estate(root: Path) -> Path:
    """The example estate (environments/, policies, templates, meshc.yaml, waivers.yaml) copied to `root`."""
    for name in ("environments", "policies", "templates"):
        shutil.copytree(REPO / name, root / name)
    for name in ("meshc.yaml", "waivers.yaml"):
        shutil.copy(REPO / name, root / name)
    return root


def update_patterns() -> list[str] | None:
    """What MESHC_UPDATE_GOLDENS asks to rewrite: None for everything ("1"), [] for nothing."""
    value = os.environ.get(UPDATE_VAR, "").strip()
    if value in ("", "0"):
        return []
    if value == "1":
        return None
    return [p.strip("/") for p in re.split(r"[,\s]+", value) if p.strip("/")]


def _path_parts(path: Path) -> tuple[str, ...]:
    """The path from the repository root (or, outside it, from the file system's)."""
    path = Path(os.path.abspath(path))
    return path.relative_to(REPO).parts if path.is_relative_to(REPO) else path.parts[1:]


def _matches(path: Path, patterns: list[str]) -> bool:
    parts = _path_parts(path)
    runs = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(run, pattern) for pattern in patterns for run in runs)


def updating(path: Path) -> bool:
    """Whether MESHC_UPDATE_GOLDENS targets the golden at `path` (for tests with goldens of their own)."""
    patterns = update_patterns()
    targeted = patterns is None or _matches(path, patterns)
    if targeted:
        LOG.targeted += 1
    return targeted


@dataclass
class GoldenLog:
    """What this run's updates did, printed at its end."""
    targeted: int = 0
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


LOG = GoldenLog()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    value = os.environ.get(UPDATE_VAR, "").strip()
    if value in ("", "0"):
        return
    tr = terminalreporter
    tr.section("meshc goldens")
    if not LOG.targeted:
        tr.write_line(f"{UPDATE_VAR}={value} matched no golden")
    for verb, paths in (("written", LOG.written), ("removed", LOG.removed)):
        for path in paths:
            tr.write_line(f"{verb}: {_show(path)}")
    tr.write_line(f"{len(LOG.written)} written, {len(LOG.removed)} removed; review with `git status` and `git diff`")


class GoldenSplitError(ValueError):
    """A file that is stored split (an Envoy bootstrap) does not split and reassemble losslessly."""


SPLIT_SECTIONS = ("clusters", "listeners")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_MAX_STEM = 100


def _hash(name: str, length: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def _stem(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch == "|":
            out.append(",")
        elif ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
    if out and "".join(out).split(".")[0].upper() in _RESERVED:
        out[0] = "".join(f"%{b:02X}" for b in name[0].encode())
    stem = "".join(out)
    return stem if len(stem) <= _MAX_STEM else f"{stem[:_MAX_STEM - 17]}~{_hash(name, 16)}"


def piece_files(names: list[str]) -> list[str]:
    """The file name of each entry (names distinct and not empty), unique even where case is not kept."""
    stems = [_stem(name) for name in names]
    folded = Counter(stem.casefold() for stem in stems)
    files = [f"{stem}~{_hash(name, 8)}.json" if folded[stem.casefold()] > 1 else f"{stem}.json"
             for name, stem in zip(names, stems, strict=True)]
    if len({f.casefold() for f in files}) != len(files):
        raise GoldenSplitError(f"piece file names collide: {files}")
    return files


def _dump(value: Any) -> bytes:
    # meshc writes its JSON with sorted keys; the pieces keep the order they had (so they are sorted
    # too) and the reassembly writes it back in the same format.
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def _lists(doc: Any) -> list[tuple[str, dict[str, Any], str]]:
    """(piece folder, the object holding the list, its key): a Bootstrap's static clusters and
    listeners, a DiscoveryResponse's resources (envoy/clusters.json, envoy/listeners.json)."""
    if not isinstance(doc, dict):
        return []
    if "resources" in doc:
        return [("resources", doc, "resources")]
    static = doc.get("static_resources")
    return [(section, static, section) for section in SPLIT_SECTIONS] if isinstance(static, dict) else []


def split_envoy_bootstrap(data: bytes) -> dict[str, bytes]:
    """An Envoy file (a Bootstrap, or a DiscoveryResponse of clusters or listeners) as its pieces
    (relative file name -> bytes); raises GoldenSplitError unless `join_envoy_bootstrap` gives
    `data` back byte for byte."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GoldenSplitError(f"not JSON: {exc}") from None
    lists = _lists(doc)
    if not lists:
        raise GoldenSplitError("no static_resources or resources object")
    pieces: dict[str, bytes] = {}
    for folder, holder, key in lists:
        items = holder.get(key)
        if items is None:
            continue
        where = "resources" if folder == "resources" else f"static_resources.{key}"
        if not isinstance(items, list) or not all(
                isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] for item in items):
            raise GoldenSplitError(f"{where} is not a list of named objects")
        names = [item["name"] for item in items]
        twice = sorted(name for name, n in Counter(names).items() if n > 1)
        if twice:
            raise GoldenSplitError(f"{where} has names more than once: {twice}")
        for item, file in zip(items, piece_files(names), strict=True):
            pieces[f"{folder}/{file}"] = _dump(item)
        holder[key] = names
    pieces["rest.json"] = _dump(doc)
    if join_envoy_bootstrap(pieces.get) != data:
        raise GoldenSplitError("the pieces do not reassemble to the same bytes (format changed?)")
    return pieces


def join_envoy_bootstrap(read: Callable[[str], bytes | None]) -> bytes:
    """The file from its pieces; `read` gives a piece's bytes by relative name (None: missing)."""
    def load(name: str) -> Any:
        data = read(name)
        if data is None:
            raise GoldenSplitError(f"missing piece {name}")
        return orjson.loads(data)

    doc = load("rest.json")
    for folder, holder, key in _lists(doc):
        names = holder.get(key)
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            holder[key] = [load(f"{folder}/{file}") for file in piece_files(names)]
    return _dump(doc)


def join_pieces_on_disk(folder: Path) -> bytes:
    """The bootstrap reassembled from the pieces stored in `folder`."""
    def read(name: str) -> bytes | None:
        piece = folder / name
        return piece.read_bytes() if piece.is_file() else None

    return join_envoy_bootstrap(read)


def _stored_split(path: Path) -> bool:
    """Goldens stored as pieces: a bundle's envoy/bootstrap.json, envoy/clusters.json and
    envoy/listeners.json, and the Envoy fixtures' expected bootstraps
    (tests/fixtures/envoy/<case>/bootstrap.json)."""
    if path.parent.name == "envoy":
        return path.name in ("bootstrap.json", "clusters.json", "listeners.json")
    return path.name == "bootstrap.json" and path.parent.parent.name == "envoy"


def pieces_dir(path: Path) -> Path:
    return path.with_suffix("")


@dataclass
class _Unit:
    """One file meshc wrote and the golden files standing for it."""
    path: Path  # where the golden would be as one file
    actual: bytes
    files: dict[Path, bytes]
    split: bool


def _unit(path: Path, actual: bytes) -> _Unit:
    if not _stored_split(path):
        return _Unit(path, actual, {path: actual}, False)
    try:
        pieces = split_envoy_bootstrap(actual)
    except GoldenSplitError as exc:
        pytest.fail(f"{_show(path)}: cannot store it as pieces: {exc}; "
                    "see split_envoy_bootstrap in tests/conftest.py", pytrace=False)
    return _Unit(path, actual, {pieces_dir(path) / name: data for name, data in pieces.items()}, True)


def _files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()} if directory.is_dir() else set()


def _show(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _diff(path: Path, expected: bytes, actual: bytes, limit: int = 120) -> str:
    old, new = expected.decode(errors="replace"), actual.decode(errors="replace")
    if old == new:
        return f"differs: {_show(path)} (in bytes that do not show as text)"
    lines = list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      f"golden {_show(path)}", f"meshc  {_show(path)}"))
    more = f"... {len(lines) - limit} more diff lines\n" if len(lines) > limit else ""
    return f"differs: {_show(path)}\n" + "".join(line if line.endswith("\n") else line + "\n"
                                                  for line in lines[:limit]) + more


def write_golden(path: Path, data: bytes) -> None:
    """Write a golden file unless it already holds `data`."""
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        LOG.written.append(path)


def _remove(path: Path, top: Path) -> None:
    path.unlink()
    LOG.removed.append(path)
    parent = path.parent
    while parent != top and parent.is_relative_to(top) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _check(top: Path, units: list[_Unit], present: set[Path]) -> None:
    """Update what MESHC_UPDATE_GOLDENS targets, then compare everything: `units` are what meshc
    wrote, `present` the golden files now on disk that belong to them (or to nothing)."""
    wanted: dict[Path, bytes] = {}
    for unit in units:
        clash = wanted.keys() & unit.files.keys()
        assert not clash, f"two goldens want the same file: {sorted(map(_show, clash))}"
        wanted.update(unit.files)
    targeted = {u.path for u in units if updating(u.path) or (u.split and updating(pieces_dir(u.path)))}
    scopes = [pieces_dir(p) for p in targeted] + list(targeted)

    def target(file: Path) -> bool:
        return any(file == s or file.is_relative_to(s) for s in scopes) or updating(file)

    for file, data in sorted(wanted.items()):
        if target(file):
            write_golden(file, data)
    for file in sorted(present - wanted.keys()):
        if target(file):
            _remove(file, top)

    problems = []
    for file, data in sorted(wanted.items()):
        if not file.is_file():
            problems.append(f"missing: {_show(file)}")
        elif (expected := file.read_bytes()) != data:
            problems.append(_diff(file, expected, data))
    problems += [f"stale (meshc does not write it): {_show(f)}" for f in sorted(present - wanted.keys()) if f.exists()]
    if not problems:
        for unit in (u for u in units if u.split):
            try:
                same, why = join_pieces_on_disk(pieces_dir(unit.path)) == unit.actual, ""
            except GoldenSplitError as exc:
                same, why = False, f" ({exc})"
            if not same:
                problems.append(f"reassembled from {_show(pieces_dir(unit.path))}/, {_show(unit.path)} "
                                f"is not meshc's file{why}")
    if problems:
        hint = top.relative_to(GOLDENS).as_posix() if top.is_relative_to(GOLDENS) else "/".join(_path_parts(top))
        pytest.fail("goldens differ from meshc's output:\n" + "\n".join(problems)
                    + f"\nIf intended: `make goldens CASE={hint}` ({UPDATE_VAR}={hint}), then review `git diff`.",
                    pytrace=False)


def check_golden(path: Path, actual: bytes) -> None:
    """Compare with a golden file (an Envoy bootstrap: with its pieces); rewrite it instead when
    MESHC_UPDATE_GOLDENS targets it."""
    unit = _unit(path, actual)
    present = {f for f in [path] if f.is_file()} | (_files_under(pieces_dir(path)) if unit.split else set())
    _check(path.parent if unit.split else path, [unit], present)


def check_golden_dir(directory: Path, files: dict[str, bytes]) -> None:
    """A whole directory of goldens (an environment's bundle): same file set, same bytes."""
    _check(directory, [_unit(directory / rel, data) for rel, data in sorted(files.items())], _files_under(directory))


@pytest.fixture(scope="session", autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """meshc's per-user build cache (meshc.userstate) in a folder of this test run, so tests
    neither read nor fill the user's own."""
    os.environ["MESHC_STATE_DIR"] = str(tmp_path_factory.mktemp("meshc-state"))


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def crds_path() -> Path:
    return CRDS


@pytest.fixture(params=BACKENDS)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A fresh pair of network namespaces for each iptables backend that works here (the test is
    skipped for a backend that does not): tests/test_iptables.py, tests/test_iptables_istio_goldens.py."""
    require_backend(request.param)
    lab = Lab(Backend(request.param))
    try:
        yield lab.start()
    finally:
        lab.close()
