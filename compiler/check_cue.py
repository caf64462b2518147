"""The `cue` layer of pass `check`: organisation policies (policies/*.cue) over each environment.

Input: compiled environments. Output: diagnostics at the declaration line behind each violation.
Each environment becomes one document {env, services, objects} (docs/policies.md); all
environments are split over one engine process per core, one environment per engine call
(the WASM engine's memory is bounded, so one call per environment keeps large estates in it), and an environment whose policies and document are
unchanged since the last check is answered from the cache without starting the engine. Policy files are chosen by the environment's
policyProfile: policies/*.cue for all, policies/<profile>/*.cue in addition.
Codes: P001 policy violation (the policy's message; related position: the constraint in the
.cue file), C003 engine unusable or policy file broken (input error).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diagnostics import Diagnostic, Finding, Position, Severity, format_path
from .provenance import locate_decl

if TYPE_CHECKING:
    from .check import CheckOptions
    from .pipeline import CompileResult, EnvResult


def document(env: "EnvResult") -> dict[str, Any]:
    return {
        "env": {"name": env.settings.name, "namespace": env.settings.namespace,
                "trustDomain": env.settings.trust_domain, "clusterDomain": env.settings.cluster_domain,
                "networks": list(env.settings.networks), "policyProfile": env.settings.policy_profile,
                "production": env.settings.production},
        "services": {s.name: _service_doc(s) for s in env.services},
        "objects": {str(a.identity): a.body for a in env.artifacts},
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


def run_cue(result: "CompileResult", opts: "CheckOptions") -> list[Diagnostic]:
    """One engine call for every environment whose (policies, document) pair is not cached;
    when all are cached the engine is not even started."""
    if opts.policies is None or not opts.policies.is_dir():
        return []
    from .check import body_bytes
    from .cue import policy_files_for

    found: dict[str, list[Any]] = {}
    groups: dict[tuple[Path, ...], dict[str, dict[str, Any]]] = {}
    keys: dict[str, tuple[str, str]] = {}
    for name, env in sorted(result.envs.items()):
        files = tuple(policy_files_for(opts.policies, env.settings.policy_profile))
        if not files:
            continue
        doc = document(env)
        payload = b"".join(f.read_bytes() for f in files) + b"\0" + body_bytes(doc)
        keys[name] = key = ("cue", hashlib.sha256(payload).hexdigest())
        if opts.cache is not None and key in opts.cache:
            found[name] = opts.cache[key]
        else:
            groups.setdefault(files, {})[name] = doc
    if groups:
        fresh = _vet(list(groups.items()), opts)
        for name, violations in fresh.items():
            found[name] = violations
            if opts.cache is not None:
                opts.cache[keys[name]] = violations
    return [_place(result.envs[n], v, opts.repo_root) for n in sorted(found) for v in found[n]]


def _vet(groups: list[tuple[tuple[Path, ...], dict[str, dict[str, Any]]]],
         opts: "CheckOptions") -> dict[str, list[Any]]:
    """Vet the groups; with several environments, split them over one engine per core."""
    from .workers import worker_count

    envs = [(files, name, doc) for files, docs in groups for name, doc in docs.items()]
    lanes = max(1, min(worker_count(), len(envs)))
    shares: list[list[tuple[tuple[Path, ...], dict[str, dict[str, Any]]]]] = []
    for lane in range(lanes):
        share: dict[tuple[Path, ...], dict[str, dict[str, Any]]] = {}
        for files, name, doc in envs[lane::lanes]:
            share.setdefault(files, {})[name] = doc
        shares.append(list(share.items()))
    if lanes == 1:
        return _vet_share(shares[0], opts)
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, list[Any]] = {}
    with ThreadPoolExecutor(max_workers=lanes) as pool:  # each lane drives its own engine process
        for part in pool.map(lambda sh: _vet_share(sh, opts), shares):
            out.update(part)
    return out


def _vet_share(groups: list[tuple[tuple[Path, ...], dict[str, dict[str, Any]]]],
               opts: "CheckOptions") -> dict[str, list[Any]]:
    from .check import CheckInputError
    from .cue import CueEngine, CueEngineError

    assert opts.policies is not None
    try:
        engine = CueEngine.start(opts.repo_root)
    except CueEngineError as exc:
        raise CheckInputError([_engine_diag(exc, opts.policies)]) from None
    try:
        out: dict[str, list[Any]] = {}
        for files, docs in groups:  # one environment per engine call: WASM memory is bounded
            for name, doc in docs.items():
                out.update(engine.vet_groups([(files, {name: doc})]))
        return out
    except CueEngineError as exc:
        raise CheckInputError([_engine_diag(exc, opts.policies)]) from None
    finally:
        engine.close()


def _engine_diag(exc: Exception, policies: Path) -> Diagnostic:
    return Diagnostic("C003", Severity.ERROR, f"CUE policies cannot be evaluated: {exc}",
                      Position(str(policies)), hint="run `make setup` (installs the CUE engine), "
                      "or fix the policy file named above")


def _place(env: "EnvResult", v: Any, root: Path) -> Diagnostic:
    rule = Position(_rel(v.policy_file, root), v.policy_line, v.policy_col)
    path = tuple(v.path)
    pos: Position | None = None
    obj = ""
    if len(path) >= 2 and path[0] == "services":
        svc = next((s for s in env.services if s.name == path[1]), None)
        if svc is not None:
            pos, obj = locate_decl(svc.decl, path[2:]), f"service {svc.name}"
    elif len(path) >= 2 and path[0] == "objects":
        from .check import Placer
        parts = str(path[1]).split("/")
        art = Placer(env).by_identity((parts[0], parts[1], parts[2])) if len(parts) == 3 else None
        if art is not None:
            return Placer(env)(art, Finding("P001", Severity.ERROR, v.message, path[2:]))
    elif path and path[0] == "env" and env.settings.source is not None:
        pos = env.settings.source.position
    return Diagnostic("P001", Severity.ERROR, v.message, pos or rule, format_path(path[2:]),
                      f"policy {rule}", env.settings.name, obj, related=(rule,))


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path

