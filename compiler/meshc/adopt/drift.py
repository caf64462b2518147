"""`meshc drift`: the compiled bundle of one environment against the objects live in a cluster.

Input: a `DriftRequest`: the repository, the environment, the live objects (`kubectl get ... -A -o
yaml` output: files, folders, "-" for stdin, read by meshc.adopt.live), the namespace of live
objects that name none. Output: a `DriftResult`: a `ChangeSet` in `meshc diff`'s model (base = the
bundle, head = the cluster), reviewed like a diff (ignore file, risk flags, masking), the
diagnostics of reading the live input, the live objects left out of scope.
Scope:
* the bundle's Kubernetes objects (index.json's objects; its Envoy and iptables files are the
  proxies' configuration, never applied to the API server, so never compared);
* a bundle object missing live is `removed` (deleted, or never applied); a live object the bundle
  lacks is `added` when it carries `app.kubernetes.io/managed-by: meshc` (left behind), and, not
  being meshc's, is left out and counted in a note unless `include_unmanaged`; with
  `bundle_namespaces`, live objects outside the namespaces the bundle writes are left out and
  counted (several environments in one cluster);
* an object on both sides is `modified` by its field changes after meshc.adopt.compare's
  normalisation (server-set fields, GitOps bookkeeping, CRD defaults, API versions of one group).
Failures raise `DiffError` (the CLI prints it and exits 2): an unknown environment (the known ones
are named), a repository that does not compile, live input of which nothing usable was read, a
bad ignore file or diff: section, an unreadable `crds:` file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from meshc.adopt.compare import compare, managed_by_meshc, review
from meshc.adopt.live import LiveSet, read_objects
from meshc.api import compile_repo
from meshc.check.schema.defaults import Defaults
from meshc.diff.model import ChangeSet, SideInfo
from meshc.diff.sides import DiffError
from meshc.files.tree import DiskTree
from meshc.front.load import list_envs
from meshc.front.project import load_project
from meshc.model.bundle import Bundle, content
from meshc.model.diagnostics import Diagnostic, has_errors
from meshc.model.ids import ObjectId
from meshc.model.release import schema_release, shipped_crds

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The resources `kubectl get` needs for the kinds meshc emits, by (API group, kind); the
# networking.istio.io and security.istio.io ones are always asked for (left-behind objects of a
# kind the bundle no longer has are found too), the Gateway API ones when the bundle has them
# (a cluster without the Gateway API CRDs would refuse the whole command).
RESOURCES: dict[tuple[str, str], str] = {
    ("networking.istio.io", "ServiceEntry"): "serviceentries.networking.istio.io",
    ("networking.istio.io", "WorkloadEntry"): "workloadentries.networking.istio.io",
    ("networking.istio.io", "DestinationRule"): "destinationrules.networking.istio.io",
    ("networking.istio.io", "Gateway"): "gateways.networking.istio.io",
    ("networking.istio.io", "VirtualService"): "virtualservices.networking.istio.io",
    ("networking.istio.io", "Sidecar"): "sidecars.networking.istio.io",
    ("security.istio.io", "AuthorizationPolicy"): "authorizationpolicies.security.istio.io",
    ("gateway.networking.k8s.io", "Gateway"): "gateways.gateway.networking.k8s.io",
    ("gateway.networking.k8s.io", "BackendTLSPolicy"): "backendtlspolicies.gateway.networking.k8s.io",
}
ALWAYS = tuple(r for (group, _), r in RESOURCES.items() if group.endswith(".istio.io"))


@dataclass(frozen=True)
class DriftRequest:
    env: str
    live: tuple[str, ...]                # paths, "-" for stdin
    root: Path = Path(".")
    namespace: str = "default"           # of live objects without metadata.namespace
    include_unmanaged: bool = False
    kinds: tuple[str, ...] = ()          # compare only these kinds (case-insensitive); () = all
    salt: str = ""
    bundle_namespaces: bool = False      # live objects outside the bundle's namespaces are out of scope


@dataclass(frozen=True)
class DriftResult:
    changes: ChangeSet
    diagnostics: tuple[Diagnostic, ...] = ()          # reading the live input (F001-F003, Y0xx)
    unmanaged: tuple[ObjectId, ...] = ()              # live, not in the bundle, not meshc's
    elsewhere: tuple[ObjectId, ...] = ()              # live, outside the bundle's namespaces (bundle_namespaces)
    live_objects: int = 0
    bundle_objects: int = 0


@dataclass(frozen=True)
class Expected:
    """The Kubernetes objects of one environment's bundle, with their declarations."""

    objects: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    sources: dict[ObjectId, str] = field(default_factory=dict)
    services: dict[ObjectId, str] = field(default_factory=dict)
    groups: dict[ObjectId, str] = field(default_factory=dict)
    production: bool = False
    env_source: str = ""


def bundle_objects(bundle: Bundle) -> Expected:
    """The objects index.json lists (never the Envoy or iptables files), each file parsed once."""
    index = orjson.loads(content(bundle.files["index.json"]))
    listed = {(str(o["kind"]), str(o.get("namespace", "")), str(o["name"])): o for o in index.get("objects", [])}
    out = Expected(production=bool(index.get("production", False)),
                   env_source=str(index.get("environmentSource", "")))
    for rel in sorted({str(o["file"]) for o in listed.values()}):
        for doc in yaml.load_all(content(bundle.files[rel]), Loader=_Loader):
            if not isinstance(doc, dict):
                continue
            oid = ObjectId.of(doc)
            raw = listed.get(oid)
            if raw is None:
                continue
            out.objects[oid] = doc
            out.sources[oid] = str(raw.get("source", ""))
            out.services[oid] = str(raw.get("service", ""))
            out.groups[oid] = str(raw.get("apiVersion", "")).rpartition("/")[0]
    return out


def kubectl_command(groups_kinds: Sequence[tuple[str, str]] = ()) -> str:
    """`kubectl get` for the live side: every Istio kind meshc emits, and every other kind among
    `groups_kinds` (the bundle's: Gateway API kinds, and what pass-through files keep, such as a
    PeerAuthentication), named by its CRD's plural."""
    others = {RESOURCES.get(gk) or _resource_of(gk) for gk in groups_kinds}
    wanted = list(ALWAYS) + sorted({r for r in others if r} - set(ALWAYS))
    return f"kubectl get {','.join(wanted)} -A -o yaml"


@functools.cache
def _plurals() -> dict[tuple[str, str], str]:
    """(group, kind) -> `<plural>.<group>`, from the shipped CRD schemas."""
    data = orjson.loads(shipped_crds().read_bytes())
    out: dict[tuple[str, str], str] = {}
    for crd in data.get("items") or []:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("kind") and names.get("plural"):
            out[(spec["group"], names["kind"])] = f"{names['plural']}.{spec['group']}"
    return out


def _resource_of(group_kind: tuple[str, str]) -> str:
    return _plurals().get(group_kind, "")


def _known_envs(root: Path) -> list[str]:
    return list_envs(DiskTree(root)) if (root / "environments").is_dir() else []


def compile_expected(root: Path, env: str) -> Expected:
    """ENV's bundle compiled in memory (DiffError: unknown environment, or it does not compile)."""
    known = _known_envs(root)
    if env not in known:
        raise DiffError(f"unknown environment {env!r}; known: {', '.join(known) or 'none'} "
                        f"(environments/<name>/env.yaml under {root})")
    _, result = compile_repo(root, [env])
    if has_errors(result.diagnostics):
        raise DiffError(f"environment {env} does not compile", result.diagnostics)
    bundle = result.envs[env].bundle
    assert bundle is not None
    expected = bundle_objects(bundle)
    source = result.envs[env].settings.source
    where = str(source.position).removeprefix("./") if source is not None else expected.env_source
    return Expected(expected.objects, expected.sources, expected.services, expected.groups,
                    result.envs[env].settings.production, where)


def read_live(paths: Sequence[str], namespace: str, command: str | None = None) -> LiveSet:
    """The live objects (DiffError when nothing usable was read and something was wrong)."""
    live = read_objects(paths, namespace)
    if not live.objects and (live.skipped or has_errors(live.diagnostics)):
        raise DiffError("nothing usable was read from the live input "
                        f"({', '.join('<stdin>' if p == '-' else p for p in paths)}): give it the output of "
                        f"`{command or kubectl_command()}`", live.diagnostics)
    return live


def _label(paths: Sequence[str]) -> str:
    return "live " + ", ".join("<stdin>" if p == "-" else p for p in paths)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def drift(request: DriftRequest) -> DriftResult:
    """The whole command: compile ENV, read the live objects, compare them, review the change."""
    return drift_against(compile_expected(request.root, request.env), request)


def crd_defaults(root: Path) -> Defaults:
    """The defaults of the CRDs the estate validates against: meshc.yaml `crds:` when it names a
    file (the cluster's own), else the shipped schemas of the target release."""
    project, problems = load_project(root)
    if has_errors(problems):
        raise DiffError(f"cannot read {root / 'meshc.yaml'}", problems)
    if project.crds is None:
        return Defaults.shipped(schema_release(project.istio))
    try:
        return Defaults.load(project.crd_file())
    except (OSError, ValueError) as exc:
        raise DiffError(f"cannot read the CRDs named by meshc.yaml crds: for their defaults: {exc}") from None


def drift_against(expected: Expected, request: DriftRequest) -> DriftResult:
    """`drift` with ENV's bundle already compiled (`compile_expected`)."""
    command = kubectl_command(sorted({(g, oid.kind) for oid, g in expected.groups.items()}))
    live = read_live(request.live, request.namespace, command)
    defaults = crd_defaults(request.root)

    wanted = {k.lower() for k in request.kinds}

    def in_scope(oid: ObjectId) -> bool:
        return not wanted or oid.kind.lower() in wanted

    exp = {oid: body for oid, body in expected.objects.items() if in_scope(oid)}
    namespaces = {oid.namespace for oid in expected.objects}
    actual: dict[ObjectId, Mapping[str, Any]] = {}
    positions: dict[ObjectId, str] = {}
    unmanaged: list[ObjectId] = []
    elsewhere: list[ObjectId] = []
    for oid, obj in sorted(live.objects.items()):
        if not in_scope(oid):
            continue
        if request.bundle_namespaces and oid.namespace not in namespaces:
            elsewhere.append(oid)
            continue
        if oid not in exp and not managed_by_meshc(obj.body):
            unmanaged.append(oid)
            if not request.include_unmanaged:
                continue
        actual[oid] = obj.body
        positions[oid] = str(obj.position)
    notes = _notes(request, exp, unmanaged, live, command)
    if elsewhere:
        notes.append(f"{_plural(len(elsewhere), 'live object')} outside the bundle's namespaces "
                     f"({', '.join(sorted(namespaces))}) left out (--bundle-namespaces)")
    comparison = compare(request.env, exp, actual, SideInfo(f"bundle {request.env}", "bundle"),
                         SideInfo(_label(request.live), "live"), expected.sources, actual_sources=positions,
                         services=expected.services, defaults=defaults, production=expected.production,
                         env_source=expected.env_source, notes=notes)
    changes = review(comparison, request.root, request.salt)
    return DriftResult(changes, tuple(live.diagnostics), tuple(unmanaged), tuple(elsewhere), len(live.objects),
                       len(exp))


def _notes(request: DriftRequest, expected: Mapping[ObjectId, Any], unmanaged: Sequence[ObjectId],
           live: LiveSet, command: str) -> list[str]:
    notes: list[str] = []
    if unmanaged and not request.include_unmanaged:
        notes.append(f"{_plural(len(unmanaged), 'live object')} not in the bundle and not managed by meshc "
                     "(no app.kubernetes.io/managed-by: meshc label) left out; --include-unmanaged lists them")
    elif unmanaged:
        notes.append(f"{_plural(len(unmanaged), 'live object')} not managed by meshc listed as added "
                     "(--include-unmanaged)")
    live_kinds = {oid.kind for oid in live.objects}
    missing: dict[str, int] = {}
    for oid in expected:
        if oid.kind not in live_kinds:
            missing[oid.kind] = missing.get(oid.kind, 0) + 1
    for kind, n in sorted(missing.items()):
        notes.append(f"the live input holds no {kind} at all: the bundle's {_plural(n, kind)} show as removed; "
                     f"was the kind in the kubectl get command? (`{command}`)")
    if not live.objects:
        notes.append("the live input holds no object (an empty List is how kubectl prints none)")
    return notes
