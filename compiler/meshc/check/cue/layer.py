"""The `cue` layer of pass `check`: organisation policies (policies/*.cue) over each environment.

Input: compiled environments. Output: diagnostics at the declaration line behind each violation.
Each environment is one document {env, services, objects} (docs/policies.md) or, when its policy
files only ever look at one service at a time (meshc.cue_scope), the same cut into one document
per service plus one for `env` alone: the errors are the same, and each part is cached on its own,
so a change to one service re-vets that service only. A document whose policies and content are
unchanged since the last check is answered from the cache, and when all are, the engine is not
even started. Policy files are chosen by the environment's policyProfile: policies/*.cue for all,
policies/<profile>/*.cue in addition.
Two paths through the engine give the same findings. The fast path (default, meshc.check.cue.fast;
docs/policies.md#the-fast-path): per-service documents merged into packs and sent lean first
(without the fields no policy names, meshc.check.cue.scope.visibility), calls without garbage
collection, one engine unless the work is worth more. The reference path (`reference=True`, or
MESHC_CUE_REFERENCE=1): each document on its own, over one engine per core in calls of bounded
size, as the layer first did; tests/test_cue_fast.py and bench/cue_layer.py compare the two.
Codes: P001 policy violation (the policy's message; related position: the constraint in the
.cue file), C003 engine unusable or policy file broken (input error).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from meshc.check.common import CheckInputError, CheckKey, CheckOptions, CheckRun, Placer, body_bytes
from meshc.check.cue import fast
from meshc.check.cue.policy import CueEngine, CueEngineError, policy_files_for
from meshc.check.cue.report import _path_key
from meshc.check.cue.scope import Visibility, per_service, prune, reads_objects, visibility
from meshc.files.confine import FILE_LIMIT, ConfinementError, read_file
from meshc.front.provenance import locate_decl
from meshc.model.diagnostics import Diagnostic, Finding, Position, Severity, format_path
from meshc.model.results import CompileResult, EnvResult
from meshc.runtime.workers import worker_count

if TYPE_CHECKING:
    pass

REFERENCE_ENV = "MESHC_CUE_REFERENCE"


def reference_default() -> bool:
    """MESHC_CUE_REFERENCE=1 makes the reference path the default (bench/cue_layer.py, debugging)."""
    return os.environ.get(REFERENCE_ENV, "").strip() not in ("", "0")


def document(env: EnvResult, objects: bool = True) -> dict[str, Any]:
    """The environment's document; `objects` False leaves the emitted objects out (`{}`)."""
    return {
        "env": {"name": env.settings.name, "namespace": env.settings.namespace,
                "trustDomain": env.settings.trust_domain, "clusterDomain": env.settings.cluster_domain,
                "networks": list(env.settings.networks), "policyProfile": env.settings.policy_profile,
                "production": env.settings.production},
        "services": {s.name: _service_doc(s) for s in env.services},
        "objects": {str(a.identity): a.body for a in env.artifacts} if objects else {},
    }


def _service_doc(svc: Any) -> dict[str, Any]:
    data = dict(svc.decl.data)
    data.setdefault("namespace", svc.namespace)
    data.setdefault("location", svc.location)
    data.setdefault("resolution", svc.resolution)
    data.setdefault("endpointsAs", svc.endpoints_as)
    data["ports"] = [{"number": p.number, "protocol": p.protocol, "name": p.name,
                      **({"targetPort": p.target_port} if p.target_port else {})} for p in svc.ports]
    for key in ("owner", "description"):
        data.setdefault(key, "")
    for key in ("hosts", "addresses", "endpoints", "subsets", "exportTo"):
        data.setdefault(key, [])
    return data


Unit = tuple[tuple[Path, ...], str, dict[str, Any], int]  # policy files, document key, document, size
CALL_DOCUMENTS = 4000  # per-service documents in one engine call (bounds the WASM engine's memory)
LANE_BYTES = 4 << 20  # documents (JSON bytes) worth starting one more engine for (~1 s to start)


def run_cue(result: CompileResult, run: CheckRun, reference: bool | None = None) -> list[Diagnostic]:
    """Vet every environment's document(s) that the cache does not answer; when the cache answers
    all of them, the engine is not even started.

    When the policy files only ever look at one service at a time (meshc.cue_scope), an
    environment becomes one document without services (constraints on `env`) plus one document
    per service, each cached on its own; otherwise it stays one document. When no policy
    constrains `objects` beyond their shape (meshc.cue_scope), the emitted objects are left
    out of the documents. `reference` (default: MESHC_CUE_REFERENCE) vets each document on its
    own, as the layer first did; otherwise the fast path (meshc.check.cue.fast) finds the same."""
    opts = run.opts
    if opts.policies is None or not opts.policies.is_dir():
        fast.discard()
        return []
    if reference is None:
        reference = reference_default()
    tag: CheckKey = ("cue",) if reference else ("cue", "fast")  # the fast path caches what it found

    found: dict[str, list[Any]] = {}
    todo: list[Unit] = []
    fast_todo: list[fast.Doc] = []
    keys: dict[str, CheckKey] = {}
    parts: dict[str, list[str]] = {}  # environment -> its document keys, in order
    scoped: dict[tuple[Path, ...], tuple[bytes, bool, bool, Visibility | None]] = {}
    for name, env in sorted(result.envs.items()):
        files = tuple(policy_files_for(opts.policies, env.settings.policy_profile))
        if not files:
            continue
        if files not in scoped:
            try:  # confined: inside the repository, regular files, size-limited
                texts = [read_file(opts.repo_root, f, FILE_LIMIT) for f in files]
            except ConfinementError as exc:
                fast.discard()
                raise CheckInputError([Diagnostic(
                    "C003", Severity.ERROR, f"policy file refused: {exc}",
                    Position(_rel(exc.path or ".", opts.repo_root)),
                    hint="replace the link with the policy file itself; meshc reads only regular files inside "
                         "the repository")]) from None
            decoded = [t.decode("utf-8", "replace") for t in texts]
            split = per_service(decoded)
            vis = visibility(decoded) if split and not reference else None
            scoped[files] = (b"".join(texts), split, reads_objects(decoded), vis)
        policy_bytes, split, with_objects, vis = scoped[files]
        docs = _split(env, with_objects) if split else {name: document(env, with_objects)}
        parts[name] = list(docs)
        for key, doc in docs.items():
            data = body_bytes(doc)
            digest = hashlib.sha256(policy_bytes + b"\0" + data).hexdigest()
            keys[key] = cache_key = (*tag, digest)
            known = run.known(cache_key) if opts.cache is not None else None
            if known is not None:
                found[key] = known
            elif reference:
                todo.append((files, key, doc, len(data)))
            elif split and key != name:
                lean = _lean(doc, vis) if vis is not None else None
                fast_todo.append(fast.Doc(files, key, name, doc, len(data), digest, next(iter(doc["services"])),
                                          lean, len(orjson.dumps(lean)) if lean is not None else 0))
            else:
                fast_todo.append(fast.Doc(files, key, name, doc, len(data), digest))
    if todo or fast_todo:
        vetted = _vet(todo, opts) if reference else _vet_fast(fast_todo, opts)
        for key, violations in vetted.items():
            found[key] = violations
            if opts.cache is not None:
                run.learned[keys[key]] = violations
    fast.discard()  # engines started in advance that this run did not need
    out: list[Diagnostic] = []
    for name in sorted(parts):
        env_key, *service_keys = parts[name]
        violations = list(found[env_key])
        for key in service_keys:  # a service's document reports its own service and objects only
            violations.extend(v for v in found[key] if v.path and v.path[0] in ("services", "objects"))
        violations.sort(key=lambda v: _path_key(v.path))
        placer = Placer(result.envs[name])  # one artifact index per environment, not per violation
        out.extend(_place(placer, v, opts.repo_root) for v in violations)
    return out


def prestart(opts: CheckOptions, cached: Mapping[CheckKey, Any] | None = None) -> int:
    """Start a CUE engine now, so that it is ready when the layer runs: call it before the
    compile, which then runs beside the engine's start (WebAssembly compile and warm-up, about
    1.5 s of CPU). Only for a rebuild, when the last build's check results (`cached`) hold this
    layer's fast path: its compile reads most of its work from the cache and leaves a core free,
    and the documents of what changed need an engine; a clean build's compile keeps every core
    busy, and the layer starts its engines when it runs (bench/cue_layer.py: a prestart beside a
    clean compile gains nothing on 2 cores). Returns how many engines are starting;
    `fast.discard()` closes them if the layer does not run (the layer closes those it did not
    need)."""
    if ("cue" not in opts.layers or opts.policies is None or not opts.policies.is_dir()
            or reference_default()):
        return 0
    if not cached or not any(key[:2] == ("cue", "fast") for key in cached):
        return 0
    return fast.prestart()


def _lean(doc: dict[str, Any], vis: Visibility) -> dict[str, Any] | None:
    """A per-service document without the fields no policy can see (scope.prune), or None when
    it has none."""
    lean = {"env": doc["env"], "services": {k: prune(v, vis) for k, v in doc["services"].items()},
            "objects": {k: prune(v, vis) for k, v in doc["objects"].items()}}
    return None if lean == doc else lean


def _vet_fast(docs: list[fast.Doc], opts: CheckOptions) -> dict[str, list[Any]]:
    assert opts.policies is not None
    try:
        return dict(fast.evaluate(docs))
    except CueEngineError as exc:
        raise CheckInputError([_engine_diag(exc, opts.policies)]) from None


def _split(env: EnvResult, with_objects: bool = True) -> dict[str, dict[str, Any]]:
    """The environment's document cut per service: key `<env>` holds `env` alone, key
    `<env>/<n>` the n-th service with its objects (services and objects as `document` gives)."""
    whole = document(env, objects=False)
    name = env.settings.name
    docs: dict[str, dict[str, Any]] = {name: {"env": whole["env"], "services": {}, "objects": {}}}
    objects: dict[str, dict[str, Any]] = {}
    for art in env.artifacts if with_objects else ():
        objects.setdefault(art.service, {})[str(art.identity)] = art.body
    for i, (svc_name, svc_doc) in enumerate(whole["services"].items()):
        docs[f"{name}/{i}"] = {"env": whole["env"], "services": {svc_name: svc_doc},
                               "objects": objects.get(svc_name, {})}
    return docs


def _vet(units: list[Unit], opts: CheckOptions) -> dict[str, list[Any]]:
    """Vet the documents: split over one engine per core by size, in calls of at most one whole
    environment document or CALL_DOCUMENTS per-service documents."""

    total = sum(u[3] for u in units)
    lanes = max(1, min(worker_count(), len(units), 1 + total // LANE_BYTES))
    shares: list[list[Unit]] = [[] for _ in range(lanes)]
    done = 0
    for unit in units:  # contiguous ranges of about equal size
        lane = min(lanes - 1, done * lanes // max(total, 1))
        shares[lane].append(unit)
        done += unit[3]
    shares = [share for share in shares if share]
    if len(shares) == 1:
        return _vet_share(shares[0], opts)

    out: dict[str, list[Any]] = {}
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:  # each lane drives its own engine
        for part in pool.map(lambda sh: _vet_share(sh, opts), shares):
            out.update(part)
    return out


def _calls(units: list[Unit]) -> list[list[tuple[tuple[Path, ...], dict[str, dict[str, Any]]]]]:
    """Engine calls: a whole-environment document alone, per-service documents CALL_DOCUMENTS
    at a time; each call as (policy files, documents) groups."""
    calls: list[list[Unit]] = []
    for unit in units:
        whole = "/" not in unit[1]
        if whole or not calls or len(calls[-1]) >= CALL_DOCUMENTS or "/" not in calls[-1][-1][1]:
            calls.append([unit])
        else:
            calls[-1].append(unit)
    out = []
    for call in calls:
        groups: dict[tuple[Path, ...], dict[str, dict[str, Any]]] = {}
        for files, key, doc, _ in call:
            groups.setdefault(files, {})[key] = doc
        out.append(list(groups.items()))
    return out


def _vet_share(units: list[Unit], opts: CheckOptions) -> dict[str, list[Any]]:

    assert opts.policies is not None
    try:
        engine = CueEngine.start()
    except CueEngineError as exc:
        raise CheckInputError([_engine_diag(exc, opts.policies)]) from None
    try:
        out: dict[str, list[Any]] = {}
        for groups in _calls(units):  # bounded calls: the WASM engine's memory is bounded
            out.update(engine.vet_groups(groups))
        return out
    except CueEngineError as exc:
        raise CheckInputError([_engine_diag(exc, opts.policies)]) from None
    finally:
        engine.close()


def _engine_diag(exc: Exception, policies: Path) -> Diagnostic:
    return Diagnostic("C003", Severity.ERROR, f"CUE policies cannot be evaluated: {exc}",
                      Position(str(policies)), hint="run `meshc setup` (installs the CUE engine), "
                      "or fix the policy file named above")


def _place(placer: Placer, v: Any, root: Path) -> Diagnostic:
    env = placer.env
    rule = Position(_rel(v.policy_file, root), v.policy_line, v.policy_col)
    path = tuple(v.path)
    pos: Position | None = None
    obj = ""
    if len(path) >= 2 and path[0] == "services":
        svc = next((s for s in env.services if s.name == path[1]), None)
        if svc is not None:
            pos, obj = locate_decl(svc.decl, path[2:]), f"service {svc.name}"
    elif len(path) >= 2 and path[0] == "objects":
        parts = str(path[1]).split("/")
        art = placer.by_identity((parts[0], parts[1], parts[2])) if len(parts) == 3 else None
        if art is not None:
            return placer(art, Finding("P001", Severity.ERROR, v.message, path[2:]))
    elif path and path[0] == "env" and env.settings.source is not None:
        pos = env.settings.source.position
    return Diagnostic("P001", Severity.ERROR, v.message, pos or rule, format_path(path[2:]),
                      f"policy {rule}", env.settings.name, obj, related=(rule,))


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path

