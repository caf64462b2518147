"""What `meshc diff` compares: the objects of one environment's bundle, normalised.

Input: a `BundleView` (files of out/<env>/: index.json, <ns>/<service>.yaml, and optionally
envoy/*.json|yaml and iptables/*.rules). Output: `Entry` values (identity, sha256, declaration
source) for every object, bodies parsed only on request, and `normalise(kind, body)`.
Invariants:
* manifests are listed from index.json alone; a file is parsed only when one of its objects is
  needed, and at most once per view;
* `normalise` never mutates its input; keyed lists become dicts keyed by `ItemKey`
  (``[number=80]``), set-like lists become dicts keyed by their items; a list whose items lack
  the key, or repeat it, stays an ordered list (nothing is ever dropped);
* Envoy clusters/listeners (by name, from static_resources) and iptables chains (by
  table/chain, rules as an ordered list) get kinds EnvoyCluster, EnvoyListener, IptablesChain
  and the bundle file as namespace; a cluster's source is the declaration of the DestinationRule
  named in its Istio metadata when there is one, else the bundle file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import yaml

from meshc.diff.model import ItemKey, Path
from meshc.model.ids import ObjectId

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SET = ""   # list semantics marker: items are a set
_RULES: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "ServiceEntry": (
        (("spec", "hosts"), SET), (("spec", "addresses"), SET), (("spec", "exportTo"), SET),
        (("spec", "ports"), "number"), (("spec", "endpoints"), "address")),
    "DestinationRule": (
        (("spec", "subsets"), "name"), (("spec", "exportTo"), SET),
        (("spec", "trafficPolicy", "portLevelSettings"), "port.number"),
        (("spec", "subsets", "*", "trafficPolicy", "portLevelSettings"), "port.number")),
    "WorkloadEntry": (),
    "EnvoyCluster": (
        (("load_assignment", "endpoints", "*", "lb_endpoints"), "endpoint.address.socket_address.address"),),
    "EnvoyListener": (
        (("filter_chains", "*", "filters", "*", "typed_config", "route_config", "virtual_hosts"), "name"),
        (("default_filter_chain", "filters", "*", "typed_config", "route_config", "virtual_hosts"), "name")),
}


class BundleView(Protocol):
    env: str

    def read(self, rel: str) -> bytes:
        """Bytes of a file of the bundle; raises OSError when absent."""

    def list(self, prefix: str) -> list[str]:
        """Sorted relative paths of the files below `prefix`."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: ObjectId
    digest: str
    source: str
    file: str
    service: str = ""


def read_index(view: BundleView) -> dict[str, Any]:
    data = orjson.loads(view.read("index.json"))
    return data if isinstance(data, dict) else {}


Key = tuple[str, str, str]   # (kind, namespace, name): cheap to build for every listed object


def manifest_listing(index: Mapping[str, Any]) -> dict[Key, Mapping[str, Any]]:
    """The index's objects by (kind, namespace, name); `entry` makes an `Entry` of one when needed."""
    return {(str(o["kind"]), str(o.get("namespace", "")), str(o["name"])): o for o in index.get("objects", [])}


def entry(key: Key, raw: Mapping[str, Any]) -> Entry:
    return Entry(ObjectId(*key), str(raw.get("sha256", "")), str(raw.get("source", "")),
                 str(raw.get("file", "")), str(raw.get("service", "")))


def load_bodies(view: BundleView, entries: Iterable[Entry]) -> dict[ObjectId, dict[str, Any]]:
    """Parse each file holding one of `entries` once; return the bodies of those entries."""
    wanted = {e.id for e in entries}
    files = sorted({e.file for e in entries})
    out: dict[ObjectId, dict[str, Any]] = {}
    for rel in files:
        for doc in yaml.load_all(view.read(rel), Loader=_Loader):
            if not isinstance(doc, dict):
                continue
            meta = doc.get("metadata") or {}
            oid = ObjectId(str(doc.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))
            if oid in wanted:
                out[oid] = doc
    return out


def digest_of(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def artifact_objects(view: BundleView) -> dict[Key, tuple[Entry, dict[str, Any]]]:
    """Envoy clusters/listeners and iptables chains found in the bundle (none when absent)."""
    out: dict[Key, tuple[Entry, dict[str, Any]]] = {}
    for rel in view.list("envoy"):
        if rel.endswith((".json", ".yaml", ".yml")):
            out.update((_key(e.id), (e, b)) for e, b in envoy_objects(rel, view.read(rel)))
    for rel in view.list("iptables"):
        if rel.endswith(".rules"):
            out.update((_key(e.id), (e, b)) for e, b in iptables_objects(rel, view.read(rel)))
    return out


ISTIO_CONFIG = re.compile(r"/apis/networking\.istio\.io/[^/]+/namespaces/([^/]+)/destination-rule/([^/]+)")


def with_declared_sources(artifacts: dict[Key, tuple[Entry, dict[str, Any]]],
                          listing: Mapping[Key, Mapping[str, Any]]) -> dict[Key, tuple[Entry, dict[str, Any]]]:
    """Envoy clusters shaped by a DestinationRule (metadata.filter_metadata.istio.config) take
    that DestinationRule's declaration as their source; everything else keeps its file."""
    out = dict(artifacts)
    for key, (item, body) in artifacts.items():
        istio = ((body.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
        found = ISTIO_CONFIG.fullmatch(str(istio.get("config", "")))
        raw = listing.get(("DestinationRule", found.group(1), found.group(2))) if found else None
        if raw is not None and raw.get("source"):
            out[key] = (replace(item, source=str(raw["source"])), body)
    return out


def _key(oid: ObjectId) -> Key:
    return (oid.kind, oid.namespace, oid.name)


def envoy_objects(rel: str, data: bytes) -> list[tuple[Entry, dict[str, Any]]]:
    doc = orjson.loads(data) if rel.endswith(".json") else yaml.load(data, Loader=_Loader)
    """The clusters and listeners of an Envoy file: a Bootstrap's static resources, or the resources
    of a DiscoveryResponse (the shared CDS / LDS files), kind told by their `@type`."""
    if not isinstance(doc, dict):
        return []
    static = doc.get("static_resources") or {}
    items: list[tuple[str, Any]] = [(kind, item) for key, kind in (("clusters", "EnvoyCluster"),
                                                                 ("listeners", "EnvoyListener"))
                                    for item in (static.get(key) or [] if isinstance(static, dict) else [])]
    for item in doc.get("resources") or []:
        if isinstance(item, dict):
            kind = _RESOURCE_KINDS.get(str(item.get("@type", "")))
            if kind is not None:
                items.append((kind, {k: v for k, v in item.items() if k != "@type"}))
    return [(Entry(ObjectId(kind, rel, str(item["name"])), digest_of(item), rel, rel), item)
            for kind, item in items if isinstance(item, dict) and "name" in item]


_RESOURCE_KINDS = {"type.googleapis.com/envoy.config.cluster.v3.Cluster": "EnvoyCluster",
                   "type.googleapis.com/envoy.config.listener.v3.Listener": "EnvoyListener"}


def iptables_objects(rel: str, data: bytes) -> list[tuple[Entry, dict[str, Any]]]:
    """iptables-restore text -> one object per (table, chain): policy and rules in order."""
    chains: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    table = ""
    for number, raw in enumerate(data.decode().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            chain = chains.setdefault(f"{table}/{name}", {"table": table, "chain": name, "rules": []})
            chain["policy"] = rest.split(" ")[0] if rest else "-"
            lines.setdefault(f"{table}/{name}", number)
        elif line.startswith(("-A ", "-I ")):
            name = line.split()[1]
            key = f"{table}/{name}"
            chains.setdefault(key, {"table": table, "chain": name, "policy": "-", "rules": []})
            chains[key]["rules"].append(line)
            lines.setdefault(key, number)
    return [(Entry(ObjectId("IptablesChain", rel, key), digest_of(body), f"{rel}:{lines[key]}", rel), body)
            for key, body in chains.items()]


def _matches(pattern: tuple[str, ...], path: Path) -> bool:
    return len(pattern) == len(path) and all(p == "*" or p == s for p, s in zip(pattern, path, strict=False))


def _key_of(item: Any, field: str) -> Any:
    for part in field.split("."):
        if not isinstance(item, dict) or part not in item:
            return None
        item = item[part]
    return item if isinstance(item, (str, int)) and not isinstance(item, bool) else None


def _keyed(items: list[Any], field: str) -> dict[ItemKey, Any] | None:
    out: dict[ItemKey, Any] = {}
    for item in items:
        key = item if field == SET else _key_of(item, field)
        if key is None or not isinstance(key, (str, int)) or isinstance(key, bool):
            return None
        ikey = ItemKey(str(key) if field == SET else f"{field}={key}")
        if ikey in out:
            if field == SET and out[ikey] == item:
                continue
            return None
        out[ikey] = item
    return out


def normalise(kind: str, body: Any) -> Any:
    """A copy of `body` with the list semantics of `kind` applied (see module docstring)."""
    return _norm(body, (), _RULES.get(kind, ()))


def _norm(value: Any, path: Path, rules: tuple[tuple[tuple[str, ...], str], ...]) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v, path + (k,), rules) for k, v in value.items()}
    if isinstance(value, list):
        for pattern, field in rules:
            if _matches(pattern, path):
                keyed = _keyed(value, field)
                if keyed is not None:
                    return {k: _norm(v, path + (k,), rules) for k, v in keyed.items()}
        return [_norm(v, path + (i,), rules) for i, v in enumerate(value)]
    return value
