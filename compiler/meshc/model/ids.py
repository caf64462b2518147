"""The one identity of an emitted object: (kind, namespace, name).

Used by the model (artifacts), the Istio rules and analyzers, the proxy pass (which object an
Envoy cluster or listener came from), diagnostics and the diff. A NamedTuple: as cheap to build,
hash and sort as the plain tuple it is, and shown as `Kind/namespace/name`. Envoy clusters and
listeners and iptables chains in a diff use the bundle file as namespace.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class ObjectId(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: object) -> ObjectId:
        """The identity of a manifest mapping (missing fields are empty strings)."""
        get = getattr(body, "get", None)
        if get is None:
            return cls("", "", "")
        meta = get("metadata")
        meta_get = getattr(meta, "get", None)
        return cls(str(get("kind") or ""), str(meta_get("namespace") or "") if meta_get else "",
                   str(meta_get("name") or "") if meta_get else "")


_KIND = re.compile(r"[A-Z][A-Za-z0-9]{0,62}\Z")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def identity_problem(kind: object, namespace: object, name: object) -> str:
    """Why (kind, namespace, name) cannot name a namespaced Kubernetes object ("" when it can):
    a kind is a CamelCase word, a namespace a DNS-1123 label, a name a DNS-1123 subdomain
    (Kubernetes' object names and IDs). Objects read from outside the estate are held to it
    before their names reach a file name."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        return f"kind {kind!r} is not a Kubernetes kind (a CamelCase word)"
    if not isinstance(namespace, str) or not _LABEL.match(namespace):
        return f"metadata.namespace {namespace!r} is not a DNS-1123 label"
    if not isinstance(name, str) or not _SUBDOMAIN.match(name):
        return f"metadata.name {name!r} is not a DNS-1123 subdomain"
    return ""
