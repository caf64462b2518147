"""Istio YAML from outside the estate (files, folders, stdin, `kubectl get -o yaml` output) as objects.

Input: paths ("-" for stdin), the namespace an object without one lives in (kubectl's `-n`).
Output: `LiveSet`: each object once, keyed by identity, with the file:line:col it was read at and
its body without the fields the API server sets; and diagnostics for what was not taken.
Invariants: a `kind: List` is unwrapped into its items; an identity met twice is kept once (the
first, in path order) and the second reported with both positions; documents of kinds outside
Istio's and Gateway API's groups are reported, not taken; nothing read can run code (safe YAML).

Codes: F001 a document that is no Kubernetes object (no kind, apiVersion or metadata.name),
F002 an identity met twice, F003 a kind outside Istio's and the Gateway API's groups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshc.check.lint import read_documents
from meshc.files.source import Document, node_position
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.model.ids import ObjectId, identity_problem
from meshc.model.release import PASSTHROUGH_GROUPS

#: API groups whose objects meshc carries (declared, or kept verbatim as pass-through).
GROUPS = PASSTHROUGH_GROUPS
#: What meshc expresses as declarations; the rest of GROUPS is pass-through.
DECLARED_KINDS = ("ServiceEntry", "WorkloadEntry", "DestinationRule")

_ENV_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

#: metadata the API server sets (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/)
SERVER_METADATA = ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")
#: annotations clients write as bookkeeping, not configuration
CLIENT_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclass(frozen=True)
class LiveObject:
    id: ObjectId
    body: dict[str, Any]
    doc: Document
    namespaced: bool  # metadata.namespace was written (else the default namespace was filled in)

    @property
    def position(self) -> Position:
        return node_position(self.doc.file, self.doc.node) if self.doc.node is not None else Position(self.doc.file)

    @property
    def group(self) -> str:
        return str(self.body.get("apiVersion") or "").rpartition("/")[0]


@dataclass
class LiveSet:
    objects: dict[ObjectId, LiveObject] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: int = 0  # documents not taken (F001, F003)

    def declared(self) -> list[LiveObject]:
        return [o for o in self.objects.values() if o.group == "networking.istio.io" and o.id.kind in DECLARED_KINDS]


def valid_env_name(env: str) -> bool:
    """What can name an environment folder: a DNS-1123 label other than `base`."""
    return bool(_ENV_NAME.match(env)) and len(env) <= 63 and env != "base"


def strip_server_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as its author wrote it: no status, no server-set metadata, no kubectl bookkeeping;
    labels or annotations left empty by that are dropped too."""
    out = {k: v for k, v in body.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in CLIENT_ANNOTATIONS}
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)
    if not meta.get("labels"):
        meta.pop("labels", None)
    out["metadata"] = meta
    return out


def read_objects(paths: Sequence[str], default_namespace: str = "default") -> LiveSet:
    """Every object under `paths`, in path order (folders recursively, *.yaml and *.yml sorted)."""
    docs, errors = read_documents(paths)
    out = LiveSet(diagnostics=list(errors))
    for doc in docs:
        _take(out, doc, default_namespace)
    return out


def _pos(doc: Document) -> Position:
    return node_position(doc.file, doc.node) if doc.node is not None else Position(doc.file)


def _take(out: LiveSet, doc: Document, default_namespace: str) -> None:
    value = doc.value
    if value is None:
        return  # an empty document (a trailing `---`)
    meta = value.get("metadata") if isinstance(value, dict) else None
    typed = isinstance(value, dict) and isinstance(value.get("kind"), str) and isinstance(value.get("apiVersion"), str)
    if typed and value["apiVersion"].rpartition("/")[0] not in GROUPS:
        meta = meta if isinstance(meta, dict) else {}
    elif not (typed and isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]):
        out.skipped += 1
        out.diagnostics.append(Diagnostic(
            "F001", Severity.WARNING, "not a Kubernetes object (it needs apiVersion, kind and metadata.name); not read",
            _pos(doc), hint="give the document apiVersion, kind and metadata.name, or remove it from the input"))
        return
    assert isinstance(value, dict) and isinstance(meta, dict)
    group = value["apiVersion"].rpartition("/")[0]
    if group not in GROUPS:
        out.skipped += 1
        out.diagnostics.append(Diagnostic(
            "F003", Severity.WARNING, f"{value['kind']} ({value['apiVersion']}) is not an Istio or Gateway API "
            "object; not read", _pos(doc), object=f"{value['kind']}/{meta.get('name') or ''}".rstrip("/"),
            hint="meshc carries the objects of Istio's API groups and the Gateway API's; "
                 "apply other kinds with their own tooling"))
        return
    namespace = meta.get("namespace")
    problem = identity_problem(value["kind"], namespace if namespace is not None else default_namespace,
                               meta["name"])
    if problem:
        out.skipped += 1
        out.diagnostics.append(Diagnostic(
            "F001", Severity.WARNING, f"not a Kubernetes object: {problem}; not read", _pos(doc),
            hint="the API server refuses such an object; correct it, or remove it from the input"))
        return
    body = strip_server_fields(value)
    if not namespace:
        body["metadata"] = {**body["metadata"], "namespace": default_namespace}
    oid = ObjectId.of(body)
    seen = out.objects.get(oid)
    if seen is not None:
        out.diagnostics.append(Diagnostic(
            "F002", Severity.ERROR, f"{oid} is defined twice; the first definition is kept", _pos(doc),
            object=oid, related=(seen.position,),
            hint=f"remove one of the two (the first is at {seen.position}), or give them different names"))
        return
    out.objects[oid] = LiveObject(oid, body, doc, isinstance(namespace, str) and bool(namespace))
