"""`meshc import`: Istio YAML per environment -> layered declarations and pass-through, with a proof.

Input: per environment, paths of Istio YAML (files, folders, `-`), the repository to import into,
`force`. Output: `ImportOutcome`: the files written (or that would be), per environment the
services imported and the objects kept verbatim with their reasons, diagnostics, and the
round-trip `ChangeSet` (the input against what `meshc build` makes of the written estate).

Stages, in order:

    read (adopt.live) -> propose (adopt.convert, one declaration per ServiceEntry with its
    WorkloadEntries and DestinationRules folded in) -> verify (compile every proposal with meshc;
    a proposal meshc refuses or that emits anything but its input falls back: its
    DestinationRules kept verbatim, then the whole service) -> layer (base + smallest overlays) ->
    write out (declarations, pass-through, env.yaml, meshc.yaml into an empty folder) -> prove
    (compile the estate as written, compare with the input by `meshc diff`'s semantic diff).

Invariants: nothing is dropped silently (every object of the input is declared, kept verbatim
with its reason, or reported); the output is a function of the input (sorted, no clock); an
existing file is never overwritten without `force`; nothing is written when the input gives
nothing to import. Codes: F001-F003 (adopt.live), F004 an object kept as pass-through (with the
reason), F005 a file import would overwrite, F006 a service the estate already declares,
F007 the round trip differs, F008 an input without any Istio object, F009 an object of a kind or
version the estate's CRDs do not serve (not imported), F012 an object kept verbatim that its CRD schema
refuses.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from meshc import api
from meshc.adopt.compare import BOOKKEEPING, compare_objects
from meshc.adopt.convert import Unsupported, comparable, semantic, service_of, strip_meshc_metadata
from meshc.adopt.live import LiveObject, LiveSet, read_objects, valid_env_name
from meshc.check.schema.crd import CrdError, CrdSet
from meshc.diff.model import ChangeSet, EnvChanges, SideInfo
from meshc.files.source import locate
from meshc.files.tree import DiskTree
from meshc.files.yamlout import dump
from meshc.front.load import BASE, ENV_FILE, ROOT, list_envs, load
from meshc.front.passthrough import FOLDER
from meshc.front.project import Project, load_project
from meshc.model.diagnostics import Diagnostic, Position, Severity, format_path, has_errors
from meshc.model.ids import ObjectId
from meshc.model.release import DEFAULT_ISTIO

#: keyed lists of a declaration (docs/declarations.md, Overlay rules): path -> key
KEYED = {("ports",): "number", ("endpoints",): "address", ("subsets",): "name",
         ("trafficPolicy", "portLevel"): "port"}
_MISSING = object()


@dataclass(frozen=True)
class Kept:
    env: str
    obj: LiveObject
    reason: str


@dataclass
class ImportOutcome:
    files: dict[str, bytes] = field(default_factory=dict)        # repository path -> content
    services: dict[str, list[str]] = field(default_factory=dict)  # env -> imported service names
    kept: list[Kept] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    changes: ChangeSet | None = None                             # the round trip (None: not run)
    written: bool = False
    read: int = 0                                                # objects read
    unchanged: set[str] = field(default_factory=set)             # files that hold these bytes already

    @property
    def proven(self) -> bool:
        return self.changes is not None and all(e.empty for e in self.changes.envs.values())


@dataclass
class _Unit:
    """One ServiceEntry of one environment and what it claims; `attempt` 0: everything folded in,
    1: its DestinationRules kept verbatim, 2: all of it kept verbatim."""

    env: str
    se: LiveObject
    wes: list[LiveObject]
    drs: list[LiveObject]
    attempt: int = 0
    decl: dict[str, Any] | None = None
    reasons: dict[int, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.se.id.name

    def claimed(self) -> list[LiveObject]:
        return [self.se, *self.wes, *(self.drs if self.attempt == 0 else [])] if self.attempt < 2 else []

    def fall_back(self, reason: str) -> None:
        self.reasons[self.attempt] = reason
        self.attempt = 1 if self.attempt == 0 and self.drs else 2
        self.decl = None


def run_import(root: Path, inputs: Sequence[tuple[str, Sequence[str]]], force: bool = False,
               namespace: str = "default", dry_run: bool = False,
               progress: Callable[[str], None] = lambda _m: None) -> ImportOutcome:
    """The whole command (module docstring); `inputs` = (environment, paths) pairs."""
    out = ImportOutcome()
    project, problems = load_project(root)
    out.diagnostics.extend(problems)
    if has_errors(problems):
        return out
    for env, _ in inputs:
        if not valid_env_name(env):
            raise ValueError(f"{env!r} cannot name an environment: a DNS-1123 label other than 'base'")
    progress("reading the input")
    live: dict[str, LiveSet] = {}
    for env, paths in inputs:
        got = read_objects(paths, namespace)
        out.diagnostics.extend(got.diagnostics)
        if env in live:  # the same environment named twice: one input
            for oid, obj in got.objects.items():
                live[env].objects.setdefault(oid, obj)
        else:
            live[env] = got
    out.read = sum(len(s.objects) for s in live.values())
    if has_errors(out.diagnostics):  # an unreadable file, a YAML error, an object defined twice
        out.diagnostics.append(Diagnostic(
            "F008", Severity.ERROR, "nothing imported: the input has errors (above), and an import of part of it "
            "would prove only that part", Position(inputs[0][1][0] if inputs and inputs[0][1] else "-"),
            hint="fix or leave out the files named above, then import again"))
        return out
    if not out.read:
        out.diagnostics.append(Diagnostic("F008", Severity.ERROR, "nothing to import: the input holds no Istio object",
                                          Position(inputs[0][1][0] if inputs and inputs[0][1] else "-"),
                                          hint="pass files or folders of Istio YAML, "
                                               "or `kubectl get se,we,dr -A -o yaml`"))
        return out
    _unserved(project, live, out.diagnostics)
    tree = DiskTree(root)
    broken = _broken_estate(root, project, tree)
    if broken:
        out.diagnostics.extend(broken)
        out.diagnostics.append(Diagnostic("F008", Severity.ERROR, "nothing imported: the estate does not load "
                                          "(above)", Position(ROOT), hint="fix the estate's files first"))
        return out
    existing = _existing(tree)
    envs_after = sorted(set(list_envs(tree)) | set(live))
    new_envs = sorted(set(live) - set(list_envs(tree)))
    units, kept = _propose(live)
    settings = {env: _env_settings(tree, env, live[env], units) for env in live}
    progress(f"verifying {sum(len(u) for u in units.values())} services")
    stuck = _verify(project, units, settings)
    if stuck:
        out.diagnostics.extend(stuck)
        return out
    taken = _taken(existing, units, out.diagnostics)
    for env in sorted(units):
        for unit in units[env]:
            if unit.attempt == 2 or unit.name in taken.get(env, ()):
                kept.extend(Kept(env, o, _why_kept(unit, o)) for o in [unit.se, *unit.wes, *unit.drs]
                            if unit.attempt == 2)
            elif unit.attempt == 1:
                kept.extend(Kept(env, o, unit.reasons[0]) for o in unit.drs)
    for item in kept:
        out.diagnostics.append(Diagnostic("F004", Severity.INFO, f"kept verbatim (pass-through): {item.reason}",
                                          item.obj.position, env=item.env, object=item.obj.id,
                                          hint="it is written to environments/<env>/passthrough/ and applied as it "
                                               "is; declare it by hand to manage it with meshc"))
    out.kept = sorted(kept, key=lambda k: (k.env, k.obj.id))
    _refused(project, out.kept, out.diagnostics)
    decls = {env: [u for u in units[env] if u.attempt < 2 and u.decl is not None and u.name not in taken.get(env, ())]
             for env in units}
    out.services = {env: sorted(u.name for u in decls[env]) for env in sorted(decls)}
    inputs_named = {env: {u.name for u in env_units} for env, env_units in units.items()}
    files = _layout(decls, out.kept, settings, envs_after, tree, existing, new_envs, inputs_named)
    if not (root / "meshc.yaml").exists() and not tree.list(ROOT):
        files["meshc.yaml"] = (f'# meshc project settings (docs/declarations.md#project-settings)\n'
                               f'istio: "{DEFAULT_ISTIO}"\n').encode()
        if not (root / ".gitignore").exists():
            files[".gitignore"] = b"# meshc build output and its record of the last build\nout/\n.meshc-cache/\n"
    out.files = dict(sorted(files.items()))
    out.unchanged = {p for p in out.files if (root / p).is_file() and (root / p).read_bytes() == out.files[p]}
    clash = sorted(p for p in out.files if (root / p).exists() and p not in out.unchanged)
    if clash and not force:
        for path in clash:
            out.diagnostics.append(Diagnostic("F005", Severity.ERROR, "import would overwrite this existing file",
                                              Position(path), hint="move it away, or pass --force to overwrite it"))
        if not dry_run:
            return out  # a dry run goes on: it proves what it would write
    progress("proving the round trip")
    out.changes, errors = _prove(project, tree, out.files, live, decls, out.kept, new_envs)
    out.diagnostics.extend(errors)
    foreign = [d for d in errors if d.position is None or d.position.file not in out.files]
    if foreign:
        out.diagnostics.append(Diagnostic("F008", Severity.ERROR, "nothing imported: the estate does not "
                                          "compile with the import (above)", Position(ROOT),
                                          hint="fix the files named above first"))
        return out
    for env, changes in sorted(out.changes.envs.items()):
        if not changes.empty:
            out.diagnostics.append(Diagnostic(
                "F007", Severity.ERROR, f"the imported estate does not reproduce the input of {env}: "
                f"{_count(changes)} object(s) differ (listed below)", Position(f"{ROOT}/{env}"), env=env,
                hint="the differences name each field; declare those objects by hand, or keep them verbatim "
                     "in the pass-through folder"))
    if not dry_run:
        _write(root, out.files)
        out.written = True
    return out


def _refused(project: Project, kept: Sequence[Kept], diags: list[Diagnostic]) -> None:
    """Objects kept verbatim that their CRD schema refuses, as the API server would: reported at
    the input's line now (every build reports them at the pass-through file's until fixed)."""
    try:
        crds = CrdSet.load(project.crd_file(), eager=False)
    except (CrdError, OSError):
        return
    seen: set[ObjectId] = set()
    for item in kept:
        if item.obj.id in seen:
            continue
        seen.add(item.obj.id)
        for finding in crds.validate(item.obj.body):
            if finding.severity is not Severity.ERROR:
                continue
            doc = item.obj.doc
            pos = locate(doc.file, doc.node, finding.path)[0] if doc.node is not None else item.obj.position
            diags.append(Diagnostic(
                "F012", Severity.ERROR, f"the API server would refuse this object: {finding.message}", pos,
                format_path(finding.path), "fix it in the pass-through file import writes (or in the input, and "
                "import again): every build refuses it until then", item.env, item.obj.id))


def _broken_estate(root: Path, project: Project, tree: DiskTree) -> list[Diagnostic]:
    """The load errors of the estate import adds to (none for an empty folder)."""
    if not tree.is_dir(ROOT) or not tree.list(ROOT):
        return []
    _, diags = load(tree)
    return [d for d in diags if d.severity is Severity.ERROR and d.code != "L001"]


def _unserved(project: Project, live: Mapping[str, LiveSet], diags: list[Diagnostic]) -> None:
    """Leave out (and report) objects of a kind or version the estate's CRDs do not serve: the
    schema check of every build would refuse them (an experimental Gateway API kind, an old
    version the release dropped)."""
    try:
        served = CrdSet.load(project.crd_file(), eager=False).kinds()
    except (CrdError, OSError):
        return  # the build reports an unreadable CRD file (C002)
    for env, got in live.items():
        for oid, obj in list(got.objects.items()):
            if (str(obj.body.get("apiVersion")), oid.kind) not in served:
                del got.objects[oid]
                diags.append(Diagnostic(
                    "F009", Severity.WARNING, f"no CRD of this estate serves {obj.body.get('apiVersion')} "
                    f"{oid.kind}: not imported", obj.position, env=env, object=oid,
                    hint="write it with a served apiVersion, or name your cluster's CRDs in meshc.yaml `crds:` "
                         "(docs/declarations.md#project-settings) and import again"))


def _count(changes: EnvChanges) -> int:
    return len(changes.added) + len(changes.removed) + len(changes.modified) + len(changes.renamed)


def _why_kept(unit: _Unit, obj: LiveObject) -> str:
    reason = unit.reasons.get(1) or unit.reasons.get(0) or "it cannot be declared"
    if obj.id == unit.se.id:
        return reason
    return f"its ServiceEntry {unit.se.id.name} is kept verbatim ({reason})"


# ----------------------------------------------------------------------------- propose

def _propose(live: Mapping[str, LiveSet]) -> tuple[dict[str, list[_Unit]], list[Kept]]:
    units: dict[str, list[_Unit]] = {}
    kept: list[Kept] = []
    for env, got in sorted(live.items()):
        objects = sorted((_without_bookkeeping(o) for o in got.objects.values()), key=lambda o: o.id)
        ours = set(o.id for o in got.declared())
        wes = [o for o in objects if o.id in ours and o.id.kind == "WorkloadEntry"]
        drs = [o for o in objects if o.id in ours and o.id.kind == "DestinationRule"]
        claimed: set[ObjectId] = set()
        units[env] = []
        for se in (o for o in objects if o.id in ours and o.id.kind == "ServiceEntry"):
            spec = _dict(se.body.get("spec"))
            selector = _dict(_dict(spec.get("workloadSelector")).get("labels"))
            hosts = set(h for h in spec.get("hosts") or [] if isinstance(h, str)) if isinstance(
                spec.get("hosts"), list) else set()
            mine_w = [w for w in wes if w.id not in claimed and w.id.namespace == se.id.namespace and selector
                      and _selects(selector, _dict(w.body.get("spec")).get("labels"))]
            mine_d = [d for d in drs if d.id not in claimed and d.id.namespace == se.id.namespace
                      and _dict(d.body.get("spec")).get("host") in hosts]
            claimed.update(o.id for o in (se, *mine_w, *mine_d))
            units[env].append(_Unit(env, se, mine_w, mine_d))
        for obj in objects:
            if obj.id in claimed:
                continue
            if obj.id not in ours:
                kept.append(Kept(env, obj, f"{obj.id.kind} is not a kind meshc declares (ServiceEntry, "
                                           "WorkloadEntry, DestinationRule): applied as written"))
            elif obj.id.kind == "WorkloadEntry":
                kept.append(Kept(env, obj, "no ServiceEntry of its namespace selects it"))
            else:
                kept.append(Kept(env, obj, "its host is no host of a ServiceEntry of its namespace"))
    for env_units in units.values():
        for unit in env_units:
            _convert(unit)
    return units, kept


def _without_bookkeeping(obj: LiveObject) -> LiveObject:
    """`obj` without what a GitOps tool wrote to track it (adopt.compare.BOOKKEEPING: Argo CD's
    tracking annotation and instance label, Flux's owner labels): it re-adds them when it applies."""
    meta = obj.body.get("metadata")
    if not isinstance(meta, dict):
        return obj
    out = dict(meta)
    for entry in BOOKKEEPING:
        values = out.get(entry.where)
        if isinstance(values, dict) and entry.key in values:
            out[entry.where] = {k: v for k, v in values.items() if k != entry.key}
            if not out[entry.where]:
                del out[entry.where]
    return obj if out == meta else replace(obj, body={**obj.body, "metadata": out})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _selects(selector: Mapping[str, Any], labels: Any) -> bool:
    return isinstance(labels, dict) and all(labels.get(k) == v for k, v in selector.items())


def _convert(unit: _Unit) -> None:
    while unit.attempt < 2 and unit.decl is None:
        try:
            unit.decl = service_of(unit.se, unit.wes, unit.drs if unit.attempt == 0 else [])
        except Unsupported as exc:
            unit.fall_back(str(exc))
        except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a shape Istio's schema refuses
            unit.fall_back(f"a value of an unexpected type ({type(exc).__name__}: {exc}); the schema check "
                           "of the build reports where")


# ----------------------------------------------------------------------------- verify

def _unit_file(env: str, name: str) -> str:
    return f"{ROOT}/{env}/{name}.yaml"


def _verify(project: Project, units: Mapping[str, list[_Unit]], settings: Mapping[str, bytes]) -> list[Diagnostic]:
    """Compile every proposal; fall back where meshc refuses one or emits anything else. Returns
    the errors no proposal explains (an env.yaml the estate has that does not load)."""
    for _ in range(8):
        files: dict[str, bytes] = {f"{ROOT}/{env}/{ENV_FILE}": data for env, data in settings.items()}
        by_file: dict[str, _Unit] = {}
        for env, env_units in units.items():
            for unit in env_units:
                if unit.decl is not None:
                    path = _unit_file(env, unit.name)
                    by_file[path] = unit
                    files[path] = dump({"services": [unit.decl]}).encode()
        result = api.compile_files(project, files, sorted(units), until="assemble")
        failed: dict[str, str] = {}
        for diag in result.diagnostics:
            if diag.severity is Severity.ERROR and diag.position is not None and diag.position.file in by_file:
                failed.setdefault(diag.position.file,
                                  f"meshc refuses the declaration: {diag.code} {diag.message}"
                                  + (f" ({diag.path})" if diag.path else ""))
        if not failed and has_errors(result.diagnostics):
            return [d for d in result.diagnostics if d.severity is Severity.ERROR]  # not of one proposal
        if not failed:
            for env, env_units in units.items():
                made: dict[str, dict[ObjectId, Any]] = {}
                for art in result.envs[env].artifacts:
                    made.setdefault(art.service, {})[art.identity] = art.body
                for unit in env_units:
                    if unit.decl is None:
                        continue
                    why = _difference({o.id: o.body for o in unit.claimed()}, made.get(unit.name, {}))
                    if why:
                        failed[_unit_file(env, unit.name)] = why
        if not failed:
            return []
        for path, why in failed.items():
            unit = by_file[path]
            unit.fall_back(why)
            _convert(unit)
    return []  # not reached: each round moves a proposal on, and a proposal falls back twice at most


def _difference(want: Mapping[ObjectId, Any], made: Mapping[ObjectId, Any]) -> str:
    """Why `made` is not `want` (the first difference), or "" when they are the same."""
    for oid in sorted(want.keys() | made.keys()):
        if oid not in made:
            return f"meshc would not emit {oid}"
        if oid not in want:
            return f"meshc would also emit {oid}"
        a, b = comparable(want[oid]), comparable(made[oid])
        if a != b:
            return f"meshc would write {oid} otherwise: {_first_change(a, b)}"
    return ""


def _first_change(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                if key not in a:
                    return f"{path}{key} added"
                if key not in b:
                    return f"{path}{key} dropped"
                return _first_change(a[key], b[key], f"{path}{key}.")
    return f"{path.rstrip('.')} {_short(a)} -> {_short(b)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- env.yaml

def _env_settings(tree: DiskTree, env: str, got: LiveSet, units: Mapping[str, list[_Unit]]) -> bytes:
    """The environment's env.yaml: the repository's when it has one, else what the input shows."""
    path = f"{ROOT}/{env}/{ENV_FILE}"
    if path in tree.list(f"{ROOT}/{env}"):
        return tree.read(path)
    spaces = Counter(u.se.id.namespace for u in units.get(env, ()))
    namespace = min(spaces, key=lambda n: (-spaces[n], n)) if spaces else "default"
    networks = sorted({str(e.get("network")) for u in units.get(env, ()) for e in _endpoint_specs(u)
                       if isinstance(e, dict) and e.get("network")})
    settings: dict[str, Any] = {"name": env, "namespace": namespace}
    if networks:
        settings["networks"] = networks
    return ("# written by meshc import: the settings the input shows (docs/declarations.md#envyaml)\n"
            + dump(settings)).encode()


def _endpoint_specs(unit: _Unit) -> Iterable[Any]:
    spec = unit.se.body.get("spec") or {}
    yield from (spec.get("endpoints") or []) if isinstance(spec, dict) else []
    for we in unit.wes:
        yield we.body.get("spec") or {}


# ----------------------------------------------------------------------------- layers

def _existing(tree: DiskTree) -> dict[str, set[str]]:
    """Service names each layer of the repository declares ("base" and environments)."""
    out: dict[str, set[str]] = {}
    for path in tree.list(ROOT):
        parts = path.split("/")
        if len(parts) != 3 or not path.endswith((".yaml", ".yml")) or parts[2] == ENV_FILE:
            continue
        try:
            data = list(yaml.safe_load_all(tree.read(path)))
        except (OSError, yaml.YAMLError):
            continue  # the build reports it
        for doc in data:
            if isinstance(doc, dict):
                for item in doc.get("services") or []:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        out.setdefault(parts[1], set()).add(item["name"])
    return out


def _taken(existing: Mapping[str, set[str]], units: Mapping[str, list[_Unit]],
           diags: list[Diagnostic]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for env, env_units in units.items():
        have = existing.get(BASE, set()) | existing.get(env, set())
        for unit in env_units:
            if unit.attempt < 2 and unit.name in have:
                out.setdefault(env, set()).add(unit.name)
                diags.append(Diagnostic(
                    "F006", Severity.WARNING, f"service {unit.name} is already declared in this estate; "
                    "the existing declaration is kept (the round trip compares it with the input)",
                    unit.se.position, env=env, object=unit.se.id,
                    hint="remove or rename the existing declaration to import this one"))
    return out


def _layout(decls: Mapping[str, list[_Unit]], kept: Sequence[Kept], settings: Mapping[str, bytes],
            envs_after: Sequence[str], tree: DiskTree, existing: Mapping[str, set[str]],
            new_envs: Sequence[str], named: Mapping[str, set[str]]) -> dict[str, bytes]:
    """The files of the import: base and overlay declarations, pass-through, new env.yaml files. A
    new environment does not inherit the base services its input lacks (a `$patch: delete`
    override each); an object kept verbatim alike in every environment goes to base/passthrough."""
    files: dict[str, bytes] = {}
    for env, data in settings.items():
        path = f"{ROOT}/{env}/{ENV_FILE}"
        if path not in tree.list(f"{ROOT}/{env}"):
            files[path] = data
    by_name: dict[str, dict[str, _Unit]] = {}
    for env, env_units in decls.items():
        for unit in env_units:
            by_name.setdefault(unit.name, {})[env] = unit
    base: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    services: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    overrides: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    for name in sorted(by_name):
        per_env = by_name[name]
        where = "; ".join(f"{env}: {per_env[env].se.position}" for env in sorted(per_env))
        if len(envs_after) > 1 and set(per_env) == set(envs_after):
            values = [per_env[env].decl for env in sorted(per_env)]
            common = _consensus(values, ())
            ns = str(common.get("namespace", ""))
            base.setdefault(ns, []).append((f"imported from {where}", common))
            for env in sorted(per_env):
                diff = _overlay(common, per_env[env].decl, ())
                if diff is not _MISSING and diff:
                    overrides.setdefault(env, {}).setdefault(ns, []).append(
                        (f"{env}: {per_env[env].se.position}", {"name": name, **diff}))
        else:
            for env in sorted(per_env):
                decl = per_env[env].decl
                assert decl is not None
                ns = str(decl.get("namespace", ""))
                services.setdefault(env, {}).setdefault(ns, []).append((f"imported from {per_env[env].se.position}",
                                                                         decl))
    base_names = set(existing.get(BASE, set())) | {d["name"] for items in base.values() for _, d in items}
    for env in new_envs:
        for name in sorted(base_names - named.get(env, set())):
            overrides.setdefault(env, {}).setdefault("_base", []).append(
                (f"{env}: the input has no {name}", {"name": name, "$patch": "delete"}))
    for ns, items in base.items():
        files[f"{ROOT}/{BASE}/{ns}.yaml"] = _decl_file(items, [])
    for env in sorted(set(services) | set(overrides)):
        for ns in sorted(set(services.get(env, {})) | set(overrides.get(env, {}))):
            name = "not-in-this-environment" if ns == "_base" else ns
            files[f"{ROOT}/{env}/{name}.yaml"] = _decl_file(services.get(env, {}).get(ns, []),
                                                            overrides.get(env, {}).get(ns, []))
    shared = _kept_everywhere(kept, envs_after) if set(decls) == set(envs_after) and len(envs_after) > 1 else set()
    for layer in sorted({k.env for k in kept} | ({BASE} if shared else set())):
        by_ns: dict[str, list[Kept]] = {}
        for one in kept:
            if (one.obj.id in shared) == (layer == BASE) and (layer == BASE or one.env == layer):
                group = by_ns.setdefault(one.obj.id.namespace, [])
                if not any(k.obj.id == one.obj.id for k in group):
                    group.append(one)
        for ns, group in sorted(by_ns.items()):
            files[f"{ROOT}/{layer}/{FOLDER}/{ns}.yaml"] = _kept_file(group)
    return files


def _kept_everywhere(kept: Sequence[Kept], envs: Sequence[str]) -> set[ObjectId]:
    """Objects kept verbatim with the same body in every environment."""
    bodies: dict[ObjectId, dict[str, Any]] = {}
    count: Counter[ObjectId] = Counter()
    for item in kept:
        first = bodies.setdefault(item.obj.id, item.obj.body)
        if first == item.obj.body:
            count[item.obj.id] += 1
    return {oid for oid, n in count.items() if n == len(envs)}


def _header() -> str:
    return "# written by meshc import (docs/import.md); from here on, these files are the source of truth\n"


Entries = Sequence[tuple[str, dict[str, Any]]]  # (comment, declaration)


def _decl_file(services: Entries, overrides: Entries) -> bytes:
    parts = [_header()]
    for key, items in (("services", services), ("overrides", overrides)):
        if not items:
            continue
        parts.append(f"{key}:\n")
        for note, decl in sorted(items, key=lambda i: i[1]["name"]):
            parts.append(f"# {note}\n" + dump([decl]))
    return "".join(parts).encode()


def _kept_file(items: Sequence[Kept]) -> bytes:
    parts = [_header()]
    for item in sorted(items, key=lambda k: k.obj.id):
        reason = item.reason.replace("\n", " ")
        parts.append(f"---\n# from {item.obj.position}\n# kept verbatim: {reason}\n" + dump(item.obj.body))
    return "".join(parts).encode()


def _path_key(path: tuple[str, ...]) -> str | None:
    return KEYED.get(path)


def _consensus(values: Sequence[Any], path: tuple[str, ...]) -> Any:
    """The base value of one declaration path over the environments' values (all present):
    a mapping keeps the keys every environment has (an overlay cannot delete a key), a keyed list
    the items every environment has (by key, in the first environment's order), anything else the
    value most environments have (the first environment's on a tie)."""
    if all(isinstance(v, dict) for v in values):
        keys = [k for k in values[0] if all(k in v for v in values[1:])]
        return {k: _consensus([v[k] for v in values], (*path, k)) for k in keys}
    key = _path_key(path)
    if key is not None and all(isinstance(v, list) for v in values):
        index = [{item.get(key): item for item in v if isinstance(item, dict)} for v in values]
        common = [k for k in index[0] if all(k in i for i in index[1:])]
        return [_consensus([i[k] for i in index], path) for k in common]
    counts = Counter(_freeze(v) for v in values)
    best = max(counts.values())
    return next(v for v in values if counts[_freeze(v)] == best)


def _overlay(base: Any, value: Any, path: tuple[str, ...]) -> Any:
    """What an override must say so that `base` merges into `value` (_MISSING: nothing)."""
    if isinstance(base, dict) and isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k not in base:
                out[k] = v
                continue
            d = _overlay(base[k], v, (*path, k))
            if d is not _MISSING:
                out[k] = d
        return out if out else _MISSING
    key = _path_key(path)
    if key is not None and isinstance(base, list) and isinstance(value, list):
        have = {item.get(key): item for item in base if isinstance(item, dict)}
        items = []
        for item in value:
            k = item.get(key)
            if k not in have:
                items.append(item)
                continue
            d = _overlay(have[k], item, path)
            if d is not _MISSING:
                items.append({key: k, **d})
        return items if items else _MISSING
    return _MISSING if _freeze(base) == _freeze(value) else value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# ----------------------------------------------------------------------------- prove

def _prove(project: Project, tree: DiskTree, new: Mapping[str, bytes], live: Mapping[str, LiveSet],
           decls: Mapping[str, list[_Unit]], kept: Sequence[Kept],
           new_envs: Sequence[str]) -> tuple[ChangeSet, list[Diagnostic]]:
    """Compile the estate as it will be on disk and hold each imported environment's objects
    against the input, by identity, in `meshc diff`'s change model: a new environment's every
    object; in an environment the estate had, the objects of the input and those the import
    makes (its other services are not the input's business). Returns the compile's errors too."""
    files = {p: tree.read(p) for p in tree.list(ROOT)}
    if (project.root / "meshc.yaml").is_file():
        files["meshc.yaml"] = (project.root / "meshc.yaml").read_bytes()
    files.update(new)
    result = api.compile_files(project, files, sorted(live))
    envs: dict[str, EnvChanges] = {}
    notes: list[str] = []
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    if errors:
        notes.extend(f"{d.position}: {d.code} {d.message}" for d in errors[:20])
    for env, got in sorted(live.items()):
        ours = {u.name for u in decls.get(env, ())}
        mine = {k.obj.id for k in kept if k.env == env}
        expected = {oid: semantic(strip_meshc_metadata(o.body)) for oid, o in got.objects.items()}
        built = result.envs.get(env)
        actual: dict[ObjectId, Any] = {}
        if built is not None:
            for art in built.artifacts:
                if (env in new_envs or art.service in ours or art.identity in mine or art.identity in expected
                        or not art.service):
                    actual[art.identity] = semantic(strip_meshc_metadata(art.body))
        sources = {oid: str(o.position) for oid, o in got.objects.items()}
        changes = compare_objects(env, expected, actual, SideInfo("input", "live"),
                                  SideInfo("imported estate", "bundle"), sources)
        envs[env] = changes.envs[env]
    info = SideInfo("input", "live")
    return ChangeSet(info, SideInfo("imported estate", "bundle"), envs, notes=tuple(notes)), errors


# ----------------------------------------------------------------------------- write

def _write(root: Path, files: Mapping[str, bytes]) -> None:
    """Each file through a temporary beside it and a rename: a reader sees the old file or the new."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.meshc-import")
        tmp.write_bytes(data)
        os.replace(tmp, path)
