"""The one identity of an emitted object: (kind, namespace, name).

Used by the model (artifacts), the Istio rules and analyzers, the proxy pass (which object an
Envoy cluster or listener came from), diagnostics and the diff. A NamedTuple: as cheap to build,
hash and sort as the plain tuple it is, and shown as `Kind/namespace/name`. Envoy clusters and
listeners and iptables chains in a diff use the bundle file as namespace.
"""

from __future__ import annotations

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
