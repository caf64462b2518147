"""Two sets of Kubernetes objects held against each other by identity, in `meshc diff`'s change model.

Input: per side, objects keyed by `ObjectId` (kind, namespace, name) with their bodies as a client
reads them (the API server's fields and a GitOps tool's bookkeeping may be present), and labels for
the sides. Output: a `ChangeSet` (meshc.diff.model) with one environment: objects only on the
expected side are `removed`, objects only on the actual side are `added`, objects on both whose
bodies differ after normalisation are `modified` with their field changes; the renderers of
`meshc diff` (text, Markdown, JSON) print it unchanged. `review` then applies what `meshc diff`
applies after comparing: the ignore file, risk flags (over synthetic bundle views of both sides),
masking.

Normalisation (`normalise_live`, then `align` for a pair), each rule with its reason:

* the API server's fields: `status`, metadata resourceVersion, uid, managedFields,
  creationTimestamp, generation, selfLink, deletion*, and kubectl's last-applied annotation
  (meshc.adopt.live.strip_server_fields; kubernetes.io object-meta reference);
* a GitOps tool's bookkeeping, listed once in `BOOKKEEPING` (Argo CD's tracking annotation and
  label, Flux's owner labels, Istio's gateway controller version annotation), with its source;
* the CRD structural-schema defaults the API server applies (`Defaults`; KEP-575 and
  k8s.io/apiextensions-apiserver pkg/apiserver/schema/defaulting/algorithm.go, `Default`:
  a missing property, or a null one where the schema is not nullable, gets its `default:`, then
  the walk goes on below it, defaulted values included; `PruneNonNullableNullsWithoutDefaults`:
  a null where the schema is neither nullable nor defaulted is dropped). Both sides are
  defaulted, so a field present with its default on one side and absent on the other is no
  change. Istio's own kinds have no `default:` in their CRDs (istio/api
  kubernetes/customresourcedefinitions.gen.yaml at the commit of the shipped schemas); the
  Gateway API kinds have many (Gateway: 19). istiod's admission webhook for configuration is a
  ValidatingWebhookConfiguration (istio-validator-<rev>-istio-system, path /validate; Istio's
  "Configuration Validation Problems" page), so it changes nothing;
* numbers: a float with an integral value is the integer (the API server decodes JSON numbers
  and kubectl prints 1.0 as 1);
* apiVersion: within one API group, versions are the same stored object: every served version of
  Istio's kinds has the same schema in the CRD and no conversion webhook (strategy None: "the
  converter only changes the apiVersion", apiextensions.k8s.io/v1 CustomResourceConversion), so
  `align` gives the actual side the expected side's version; another group is a change;
* empty labels or annotations left by the above are dropped.

List semantics and paths are `meshc diff`'s (meshc.diff.objects.normalise): `spec.hosts[api.x.com]`,
`spec.ports[number=80].name`. There is no rename pairing: identity is the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from meshc.adopt.live import strip_server_fields
from meshc.check.schema.defaults import Defaults
from meshc.diff.filters import apply_ignore, load_ignore, mask_changeset
from meshc.diff.maps import ServiceMap, service_map
from meshc.diff.model import ChangeSet, EnvChanges, ObjectDiff, ObjectSnapshot, SideInfo
from meshc.diff.objects import normalise
from meshc.diff.risk import find_risks
from meshc.diff.run import MAP_KINDS, field_changes, references, same
from meshc.diff.sides import EnvData, Side, load_mask_rules
from meshc.emit.bundle import canonical
from meshc.files.yamlout import dump
from meshc.model.ids import ObjectId

Body = Mapping[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by"
MESHC = "meshc"
SERVICE_LABEL = "meshc.dev/service"


@dataclass(frozen=True)
class Bookkeeping:
    """A label or annotation a tool writes to keep track of what it applied: not configuration."""

    where: str          # "labels" or "annotations"
    key: str
    reason: str
    source: str
    unless_expected: bool = False   # ignored only when the expected side does not set it


BOOKKEEPING: tuple[Bookkeeping, ...] = (
    Bookkeeping("annotations", "argocd.argoproj.io/tracking-id",
                "Argo CD's resource tracking (annotation method, the default since Argo CD 3.0)",
                "https://argo-cd.readthedocs.io/en/stable/user-guide/resource_tracking/"),
    Bookkeeping("annotations", "argocd.argoproj.io/installation-id",
                "Argo CD's installation ID, when several Argo CD instances share a cluster",
                "https://argo-cd.readthedocs.io/en/stable/user-guide/resource_tracking/"),
    Bookkeeping("labels", "app.kubernetes.io/instance",
                "Argo CD's tracking label (label method: Argo CD before 3.0, or annotation+label)",
                "https://argo-cd.readthedocs.io/en/stable/user-guide/resource_tracking/", unless_expected=True),
    Bookkeeping("labels", "kustomize.toolkit.fluxcd.io/name",
                "Flux kustomize-controller's owner label on every object it applies",
                "fluxcd/kustomize-controller, test 'sets owner labels' (kustomizev1.GroupVersion.Group + /name)"),
    Bookkeeping("labels", "kustomize.toolkit.fluxcd.io/namespace",
                "Flux kustomize-controller's owner label on every object it applies",
                "fluxcd/kustomize-controller, test 'sets owner labels' (kustomizev1.GroupVersion.Group + /namespace)"),
    Bookkeeping("labels", "helm.toolkit.fluxcd.io/name",
                "Flux helm-controller's owner label on every object of a HelmRelease",
                "fluxcd/flux2 (HelmNameKey = helmv2.GroupVersion.Group + /name)"),
    Bookkeeping("labels", "helm.toolkit.fluxcd.io/namespace",
                "Flux helm-controller's owner label on every object of a HelmRelease",
                "fluxcd/flux2 (HelmNamespaceKey = helmv2.GroupVersion.Group + /namespace)"),
    Bookkeeping("annotations", "gateway.istio.io/controller-version",
                "istiod's gateway deployment controller writes it on the Gateway API Gateways it manages "
                "(waypoints included)",
                "istio/istio pilot/pkg/config/kube/gateway/deploymentcontroller.go (ControllerVersionAnnotation)"),
)


# --- normalisation -------------------------------------------------------------------------------

def _numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def normalise_live(body: Body, defaults: Defaults | None = None) -> dict[str, Any]:
    """`body` as its author wrote it, as the API server stores it: server-set fields and bookkeeping
    (except the entries of `BOOKKEEPING` that depend on the other side, see `align`) removed,
    `defaults` applied (none when None), integral floats as integers, empty labels and annotations
    dropped. Never mutates `body`; the result shares nothing with it."""
    out = _numbers(strip_server_fields(body))
    meta = dict(out.get("metadata") or {})
    for entry in BOOKKEEPING:
        if entry.unless_expected:
            continue
        values = meta.get(entry.where)
        if isinstance(values, Mapping) and entry.key in values:
            meta[entry.where] = {k: v for k, v in values.items() if k != entry.key}
    for where in ("labels", "annotations"):
        if where in meta and not meta[where]:
            del meta[where]
    out["metadata"] = meta
    out = canonical(out)  # emit's key order, so that snapshots print as bundles do
    return defaults.apply_in_place(out) if defaults is not None else out   # _numbers made it anew


def group_of(body: Body) -> str:
    return str(body.get("apiVersion") or "").rpartition("/")[0]


def align(expected: Body, actual: Body) -> dict[str, Any]:
    """`actual` (normalised) with what depends on `expected` settled: the expected apiVersion when
    both are in one API group (versions of a group are one stored object), and the bookkeeping
    entries marked `unless_expected` dropped when `expected` does not set them."""
    out = dict(actual)
    if group_of(expected) == group_of(actual) and expected.get("apiVersion") != actual.get("apiVersion"):
        out["apiVersion"] = expected.get("apiVersion")
    meta = dict(out.get("metadata") or {})
    want = expected.get("metadata") or {}
    for entry in BOOKKEEPING:
        values = meta.get(entry.where)
        if (entry.unless_expected and isinstance(values, Mapping) and entry.key in values
                and entry.key not in (want.get(entry.where) or {})):
            meta[entry.where] = {k: v for k, v in values.items() if k != entry.key}
            if not meta[entry.where]:
                del meta[entry.where]
    out["metadata"] = meta
    return out


def managed_by_meshc(body: Body) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY) == MESHC


def _service_label(body: Body) -> str:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return str(labels.get(SERVICE_LABEL) or "") if isinstance(labels, Mapping) else ""


# --- comparison ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A `compare` result: the change set, and both sides as synthetic bundle views (index.json and
    one manifest per object, bodies normalised) for `review`'s risk flags."""

    changes: ChangeSet
    sides: tuple[Side, Side]


def _side_info(label: str | SideInfo, kind: str) -> SideInfo:
    return label if isinstance(label, SideInfo) else SideInfo(label, kind)


class ObjectView:
    """Objects as the files of a bundle view: one manifest per object, written only when read
    (risk flags read the few objects of the touched services; an estate holds tens of thousands)."""

    def __init__(self, env: str, files: Mapping[str, Body], index: bytes) -> None:
        self.env, self._files, self._index = env, files, index

    def read(self, rel: str) -> bytes:
        if rel == "index.json":
            return self._index
        try:
            return ("---\n" + dump(canonical(self._files[rel]))).encode()
        except KeyError:
            raise FileNotFoundError(rel) from None

    def list(self, prefix: str) -> list[str]:
        top = prefix.rstrip("/") + "/"
        return sorted(p for p in [*self._files, "index.json"] if p.startswith(top))


def object_view(env: str, objects: Mapping[ObjectId, Body], sources: Mapping[ObjectId, str] | None = None,
                services: Mapping[ObjectId, str] | None = None, production: bool = False,
                env_source: str = "") -> EnvData:
    """Objects as a bundle view of `env` (index.json listing each with its file, service and
    source; one manifest per object): what `meshc diff`'s readers (risk flags, maps) take."""
    files: dict[str, Body] = {}
    entries = []
    for oid in sorted(objects):
        body = objects[oid]
        rel = f"{oid.namespace or '_'}/{oid.kind.lower()}-{oid.name}.yaml"
        files[rel] = body
        entries.append({"apiVersion": str(body.get("apiVersion", "")), "kind": oid.kind,
                        "namespace": oid.namespace, "name": oid.name, "file": rel,
                        "sha256": "", "service": (services or {}).get(oid) or _service_label(body),
                        "source": (sources or {}).get(oid, "")})
    index = {"meshcBundle": 1, "environment": env, "production": production,
             "environmentSource": env_source, "objects": entries}
    return EnvData(ObjectView(env, files, orjson.dumps(index, option=orjson.OPT_SORT_KEYS)),
                   production, env_source, index)


def compare(env: str, expected: Mapping[ObjectId, Body], actual: Mapping[ObjectId, Body],
            expected_label: str | SideInfo = "expected", actual_label: str | SideInfo = "actual",
            sources: Mapping[ObjectId, str] | None = None, *,
            actual_sources: Mapping[ObjectId, str] | None = None,
            services: Mapping[ObjectId, str] | None = None,
            defaults: Defaults | None = None, production: bool = False, env_source: str = "",
            notes: Iterable[str] = ()) -> Comparison:
    """`compare_objects`, with both sides as synthetic bundle views (see `Comparison`)."""
    defaults = defaults if defaults is not None else Defaults.shipped()
    sources, actual_sources, services = sources or {}, actual_sources or {}, services or {}
    plain_e = {oid: normalise_live(body) for oid, body in expected.items()}
    plain_a = {oid: normalise_live(body) for oid, body in actual.items()}

    def service(oid: ObjectId) -> str:
        return services.get(oid) or _service_label(plain_e.get(oid) or plain_a.get(oid) or {})

    def source(oid: ObjectId) -> str:
        return sources.get(oid) or actual_sources.get(oid, "")

    full_e: dict[ObjectId, dict[str, Any]] = {}
    full_a: dict[ObjectId, dict[str, Any]] = {}
    modified: list[ObjectDiff] = []
    for oid in sorted(expected.keys() & actual.keys()):
        # matched bodies serve no snapshot: defaulted where they are
        before = defaults.apply_in_place(plain_e[oid])
        after = align(before, defaults.apply_in_place(plain_a[oid]))
        full_e[oid], full_a[oid] = before, after
        if before == after and same(before, after):
            continue
        b_norm, a_norm = normalise(oid.kind, before), normalise(oid.kind, after)
        found = field_changes(b_norm, a_norm)
        if found:
            modified.append(ObjectDiff(oid, source(oid), sources.get(oid, ""), found, b_norm, a_norm,
                                       service=service(oid), refs=references(b_norm) + references(a_norm)))

    def snapshot(oid: ObjectId, body: dict[str, Any], where: str) -> ObjectSnapshot:
        norm = normalise(oid.kind, body)
        return ObjectSnapshot(oid, where, body, norm, service(oid), references(norm))

    removed = [snapshot(o, plain_e[o], sources.get(o, "")) for o in sorted(expected.keys() - actual.keys())]
    added = [snapshot(o, plain_a[o], actual_sources.get(o, "")) for o in sorted(actual.keys() - expected.keys())]
    full_e.update((s.id, defaults.apply(s.body)) for s in removed)
    full_a.update((s.id, defaults.apply(s.body)) for s in added)

    touched = {i.service for i in [*added, *removed] if i.service and i.id.kind in MAP_KINDS}
    touched |= {d.service for d in modified if d.service and d.id.kind in MAP_KINDS}
    maps_e, maps_a = _maps(touched, full_e, service), _maps(touched, full_a, service)
    maps = {s: (maps_e.get(s), maps_a.get(s)) for s in sorted(touched)}
    changes = ChangeSet(_side_info(expected_label, "bundle"), _side_info(actual_label, "live"),
                        {env: EnvChanges(env, production, env_source, tuple(added), tuple(removed),
                                         tuple(modified), (), maps)}, notes=tuple(notes))
    base = Side(changes.base, {env: object_view(env, full_e, sources, {o: service(o) for o in full_e},
                                                production, env_source)})
    head = Side(changes.head, {env: object_view(env, full_a, {o: source(o) for o in full_a},
                                                {o: service(o) for o in full_a}, production, env_source)})
    return Comparison(changes, (base, head))


def _maps(services: set[str], bodies: Mapping[ObjectId, Body], service: Any) -> dict[str, ServiceMap | None]:
    """The map of each of `services` on one side (absent: no object of the service there)."""
    mine: dict[str, list[ObjectId]] = {}
    for oid in sorted(bodies):
        if oid.kind in MAP_KINDS and (name := service(oid)) in services:
            mine.setdefault(name, []).append(oid)
    out: dict[str, ServiceMap | None] = {}
    for name, oids in mine.items():
        namespace = next((oid.namespace for oid in oids if oid.kind == "ServiceEntry"), oids[0].namespace)
        out[name] = service_map(name, namespace, [bodies[oid] for oid in oids])
    return out


def compare_objects(env: str, expected: Mapping[ObjectId, Body], actual: Mapping[ObjectId, Body],
                    expected_label: str | SideInfo = "expected", actual_label: str | SideInfo = "actual",
                    sources: Mapping[ObjectId, str] | None = None, *,
                    actual_sources: Mapping[ObjectId, str] | None = None,
                    services: Mapping[ObjectId, str] | None = None,
                    defaults: Defaults | None = None, production: bool = False, env_source: str = "",
                    notes: Iterable[str] = ()) -> ChangeSet:
    """The objects of `expected` and `actual` matched by identity, as one environment `env` of a
    `ChangeSet` (base = expected, head = actual).

    * `expected`, `actual`: bodies keyed by their `ObjectId`; neither is mutated. Bodies may carry
      the API server's fields, CRD defaults, GitOps bookkeeping, another version of the same API
      group: all normalised away (module docstring; `defaults` = the shipped CRD schemas when None,
      `Defaults.none()` for none).
    * an identity only in `expected` is `removed` (its snapshot body normalised, without defaults),
      only in `actual` is `added`, in both with different normalised bodies is `modified` with
      `meshc diff`'s field changes (paths such as ``spec.ports[number=80].name``); no renames.
    * `sources` / `actual_sources`: the file:line each object came from (a declaration, a live
      file position), shown beside it; `services`: the declared service an object belongs to (else
      its meshc.dev/service label), which groups the review by cause and draws its map.
    * the labels name the sides in the reports (`SideInfo` kinds "bundle" and "live" unless a
      `SideInfo` is given); `production` and `env_source` as `meshc diff` reads them from an index.
    * `changes.empty` is true exactly when nothing differs. No ignore file, risk flag or masking
      is applied: `review(compare(...), root, salt)` does that.
    """
    return compare(env, expected, actual, expected_label, actual_label, sources, actual_sources=actual_sources,
                   services=services, defaults=defaults, production=production, env_source=env_source,
                   notes=notes).changes


def review(comparison: Comparison, root: Path, salt: str = "") -> ChangeSet:
    """What `meshc diff` does after comparing: the ignore file of the repository at `root`
    (.meshc-diffignore or meshc.yaml diff.ignoreFile), risk flags over both sides, then masking
    (built-in rules and meshc.yaml diff.mask). Raises meshc.diff.sides.DiffError for a bad ignore
    file or diff: section."""
    changes = apply_ignore(comparison.changes, load_ignore(root))
    changes = changes.with_envs(changes.envs, risks=find_risks(changes, comparison.sides))
    return mask_changeset(changes, load_mask_rules(root), salt)
