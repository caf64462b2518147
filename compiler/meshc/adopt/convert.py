"""Istio objects -> one service declaration: the inverse of expand (expand/services.py), per object.

Input: a ServiceEntry, the WorkloadEntries it selects and the DestinationRules of its hosts (live
objects, server-set fields gone). Output: the declaration mapping that makes them, or the reason
it cannot (`Unsupported`). The conversion only proposes: `meshc import` compiles every proposal
with meshc itself and keeps a declaration only when what it emits equals the input (importer.py),
so a gap here costs a pass-through object, never a changed one.

Also `comparable(body)`: the form both sides of that comparison are reduced to: meshc's own
bookkeeping metadata removed, the API versions of one group made one, the values that Istio's
protos read as absent removed, keyed lists keyed (diff.objects.normalise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshc.adopt.live import LiveObject
from meshc.diff.objects import normalise

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "meshc"}
SERVICE_LABEL = "meshc.dev/service"
OWNER, DESCRIPTION = "meshc.dev/owner", "meshc.dev/description"
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_UNSAFE = re.compile(r"[^a-z0-9]+")
_LOCATIONS = {"MESH_EXTERNAL": "external", "MESH_INTERNAL": "internal"}
_RESOLUTIONS = {"NONE": "none", "STATIC": "static", "DNS": "dns", "DNS_ROUND_ROBIN": "dns-round-robin"}
_TLS_MODES = {"DISABLE": "disable", "SIMPLE": "simple", "MUTUAL": "mutual", "ISTIO_MUTUAL": "istio-mutual"}
_TLS_KEYS = ("sni", "subjectAltNames", "credentialName", "caCertificates", "clientCertificate", "privateKey",
             "insecureSkipVerify")
_POLICY_KEYS = ("loadBalancer", "connectionPool", "outlierDetection")
#: Enum values that the protos number 0, which proto3 reads the same as an absent field
#: (istio/api networking/v1alpha3/service_entry.proto: `MESH_EXTERNAL = 0;`, `NONE = 0;`).
PROTO_ZERO = {("ServiceEntry", "location"): "MESH_EXTERNAL", ("ServiceEntry", "resolution"): "NONE"}


class Unsupported(Exception):
    """What meshc's declarations cannot say about an object (the message says which field and why)."""


def strip_meshc_metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without the labels meshc writes on every object it makes (MANAGED_LABELS, SERVICE_LABEL)."""
    meta = dict(body.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if not (MANAGED_LABELS.get(k) == v or k == SERVICE_LABEL)}
    meta.pop("labels", None)
    if labels:
        meta["labels"] = labels
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    return {**body, "metadata": meta}


def semantic(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with what Istio reads the same written one way: an enum at its proto zero value
    (PROTO_ZERO) removed, a ServiceEntry port's protocol in upper case (Istio parses protocols
    case-insensitively: istio/istio pkg/config/protocol/instance.go, `Parse` lowers its input)."""
    kind = str(body.get("kind", ""))
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return dict(body)
    spec = {k: v for k, v in spec.items() if PROTO_ZERO.get((kind, k), object()) != v}
    if kind == "ServiceEntry" and isinstance(spec.get("ports"), list):
        spec["ports"] = [{**p, "protocol": p["protocol"].upper()} if isinstance(p, dict)
                         and isinstance(p.get("protocol"), str) else p for p in spec["ports"]]
    return {**body, "spec": spec}


def comparable(body: Mapping[str, Any]) -> Any:
    """`body` reduced to what the round-trip comparison holds equal (module docstring)."""
    out = semantic(strip_meshc_metadata(body))
    group = str(body.get("apiVersion", "")).rpartition("/")[0]
    if group == "networking.istio.io":
        out["apiVersion"] = group  # v1alpha3, v1beta1 and v1 serve one stored schema (the CRD's versions)
    return normalise(str(body.get("kind", "")), out)


def _meta(obj: LiveObject, service: str, allowed_annotations: Sequence[str] = ()) -> dict[str, str]:
    """The annotations meshc can carry; anything else in metadata is Unsupported."""
    meta = obj.body.get("metadata") or {}
    extra = sorted(set(meta) - {"name", "namespace", "labels", "annotations"})
    if extra:
        raise Unsupported(f"metadata.{extra[0]} has no declaration key")
    for key, value in _strings("metadata.labels", meta.get("labels") or {}).items():
        if MANAGED_LABELS.get(key) == value or (key == SERVICE_LABEL and value == service):
            continue
        raise Unsupported(f"label {key}={value} has no declaration key (meshc writes only its own labels)")
    notes = _strings("metadata.annotations", meta.get("annotations") or {})
    for key in notes:
        if key not in allowed_annotations:
            raise Unsupported(f"annotation {key} has no declaration key")
    return notes


def _keys(where: str, value: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in value:
        if key not in allowed:
            raise Unsupported(f"{where}.{key} has no declaration key")


def _mapping(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unsupported(f"{where} is not a mapping")
    return value


def _string_list(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unsupported(f"{where} is not a list of strings")
    return list(value)


def _strings(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Unsupported(f"{where} must map strings to strings")
    return dict(value)


def service_of(se: LiveObject, wes: Sequence[LiveObject], drs: Sequence[LiveObject]) -> dict[str, Any]:
    """The declaration whose objects are `se`, `wes` and `drs` (raises Unsupported)."""
    name = se.id.name
    if not _LABEL.match(name) or len(name) > 53:
        raise Unsupported(f"the name {name!r} is no service name (a DNS-1123 label of at most 53 characters): "
                          "meshc names a service's objects after it")
    notes = _meta(se, name, (OWNER, DESCRIPTION))
    spec = _mapping("spec", se.body.get("spec"))
    _keys("spec", spec, ("hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector",
                         "exportTo"))
    decl: dict[str, Any] = {"name": name, "namespace": se.id.namespace}
    if OWNER in notes:
        decl["owner"] = notes[OWNER]
    if DESCRIPTION in notes:
        decl["description"] = notes[DESCRIPTION]
    decl["hosts"] = _string_list("spec.hosts", spec.get("hosts"))
    if spec.get("addresses"):
        decl["addresses"] = _string_list("spec.addresses", spec["addresses"])
    location = spec.get("location", "MESH_EXTERNAL")
    if location not in _LOCATIONS:
        raise Unsupported(f"spec.location {location!r} is not an Istio location")
    if location == "MESH_INTERNAL":
        decl["location"] = "internal"
    resolution = spec.get("resolution", "NONE")
    if resolution not in _RESOLUTIONS:
        raise Unsupported(f"spec.resolution {resolution} cannot be declared (meshc declares "
                          f"{', '.join(_RESOLUTIONS)})")
    decl["resolution"] = _RESOLUTIONS[resolution]
    if not spec.get("ports"):
        raise Unsupported("spec.ports is empty: a meshc service declares at least one port")
    decl["ports"] = [_port(i, p) for i, p in enumerate(spec["ports"])]
    if spec.get("exportTo") is not None:
        decl["exportTo"] = _string_list("spec.exportTo", spec["exportTo"])
    if "workloadSelector" in spec:
        ws = _mapping("spec.workloadSelector", spec["workloadSelector"])
        _keys("spec.workloadSelector", ws, ("labels",))
        selector = _strings("spec.workloadSelector.labels", ws.get("labels") or {})
        if spec.get("endpoints"):
            raise Unsupported("spec.endpoints and spec.workloadSelector together: "
                              "a declaration has one kind of endpoint")
        decl["endpointsAs"] = "workloadEntries"
        if selector != {"app": name}:
            decl["selector"] = selector
        decl["endpoints"] = [_workload_entry(name, selector, we) for we in wes]
    elif spec.get("endpoints"):
        decl["endpoints"] = [_endpoint(f"spec.endpoints[{i}]", e) for i, e in enumerate(spec["endpoints"])]
    if drs:
        decl.update(_rules(name, decl["hosts"], drs))
    return decl


def _port(i: int, p: Any) -> dict[str, Any]:
    where = f"spec.ports[{i}]"
    p = _mapping(where, p)
    _keys(where, p, ("number", "protocol", "name", "targetPort"))
    if not p.get("protocol"):
        raise Unsupported(f"{where} has no protocol (meshc declares every port's protocol)")
    protocol = p["protocol"].upper() if isinstance(p["protocol"], str) else p["protocol"]  # as meshc writes it
    out: dict[str, Any] = {"number": p.get("number"), "protocol": protocol}
    derived = f"{str(p['protocol']).lower().replace('_', '-')}-{p.get('number')}"
    if p.get("name") != derived:
        if not p.get("name"):
            raise Unsupported(f"{where} has no name (meshc names every port)")
        out["name"] = p["name"]
    if p.get("targetPort"):
        out["targetPort"] = p["targetPort"]
    return out


def _locality(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, str):
        raise Unsupported(f"{where}.locality is not a string")
    parts = value.split("/")
    if len(parts) > 3 or not all(parts):
        raise Unsupported(f"{where}.locality {value!r} is not region[/zone[/subzone]]")
    return dict(zip(("region", "zone", "subzone"), parts, strict=False))


def _endpoint(where: str, e: Any, keys: Sequence[str] = ()) -> dict[str, Any]:
    e = _mapping(where, e)
    _keys(where, e, ("address", "ports", "labels", "locality", "weight", "network", "serviceAccount", *keys))
    if not e.get("address"):
        raise Unsupported(f"{where} has no address (meshc declares an address for every endpoint)")
    out: dict[str, Any] = {"address": e["address"]}
    for key in ("ports", "labels"):
        if e.get(key):
            out[key] = dict(e[key])
    if e.get("locality"):
        out["locality"] = _locality(where, e["locality"])
    if e.get("weight") is not None:
        out["weight"] = e["weight"]
    for key in ("network", "serviceAccount"):
        if e.get(key):
            out[key] = e[key]
    return out


def _workload_entry(service: str, selector: Mapping[str, str], we: LiveObject) -> dict[str, Any]:
    where = f"WorkloadEntry/{we.id.namespace}/{we.id.name}"
    _meta(we, service)
    prefix = f"{service}-"
    suffix = we.id.name[len(prefix):] if we.id.name.startswith(prefix) else ""
    if not _LABEL.match(suffix) or len(suffix) > 40:
        raise Unsupported(f"{where}: meshc names a service's WorkloadEntries <service>-<endpoint name> "
                          f"({prefix}...), with a name of at most 40 characters")
    spec = _mapping(f"{where} spec", we.body.get("spec"))
    out = _endpoint(f"{where} spec", spec)
    labels = {k: v for k, v in (spec.get("labels") or {}).items() if selector.get(k) != v}
    if labels:
        out["labels"] = labels
    else:
        out.pop("labels", None)
    derived = _UNSAFE.sub("-", str(spec.get("address", "")).lower()).strip("-")[:40].strip("-") or "endpoint"
    return {"address": out.pop("address"), **({"name": suffix} if suffix != derived else {}), **out}


def _tls(where: str, t: Any) -> dict[str, Any]:
    t = _mapping(where, t)
    _keys(where, t, ("mode", *_TLS_KEYS))
    mode = t.get("mode", "DISABLE")
    if mode not in _TLS_MODES:
        raise Unsupported(f"{where}.mode {mode!r} is not a TLS mode")
    return {"mode": _TLS_MODES[mode], **{k: t[k] for k in _TLS_KEYS if k in t}}


def _policy(where: str, p: Any, allow_tls: bool, levels: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A TrafficPolicy as the declaration's trafficPolicy, and its tls (None when absent)."""
    p = _mapping(where, p)
    _keys(where, p, (*_POLICY_KEYS, "tls", "retryBudget", "proxyProtocol", *(("portLevelSettings",) if levels else ())))
    out: dict[str, Any] = {k: p[k] for k in (*_POLICY_KEYS, "retryBudget", "proxyProtocol") if k in p}
    tls = _tls(f"{where}.tls", p["tls"]) if "tls" in p else None
    if tls is not None and allow_tls:
        out["tls"] = tls
        tls = None
    if p.get("portLevelSettings"):
        entries = []
        for i, entry in enumerate(p["portLevelSettings"]):
            at = f"{where}.portLevelSettings[{i}]"
            entry = _mapping(at, entry)
            _keys(at, entry, ("port", *_POLICY_KEYS, "tls"))
            port = _mapping(f"{at}.port", entry.get("port"))
            if set(port) != {"number"}:
                raise Unsupported(f"{at}.port: meshc selects a port by number")
            level: dict[str, Any] = {"port": port["number"], **{k: entry[k] for k in _POLICY_KEYS if k in entry}}
            if "tls" in entry:
                level["tls"] = _tls(f"{at}.tls", entry["tls"])
            entries.append(level)
        out["portLevel"] = entries
    return out, tls


def _rules(service: str, hosts: Sequence[str], drs: Sequence[LiveObject]) -> dict[str, Any]:
    """The declaration keys of the service's DestinationRules: one per host, all alike."""
    by_host = {str((d.body.get("spec") or {}).get("host")): d for d in drs}
    if sorted(by_host) != sorted(hosts) or len(drs) != len(hosts):
        raise Unsupported("meshc gives every host of a service a DestinationRule, or none")
    for host, dr in by_host.items():
        want = service if len(hosts) == 1 else f"{service}-{_UNSAFE.sub('-', host.lower()).strip('-')}"[:253]
        if dr.id.name != want:
            raise Unsupported(f"DestinationRule {dr.id.name}: meshc names it {want}")
        _meta(dr, service)
    specs = [{k: v for k, v in (d.body.get("spec") or {}).items() if k != "host"} for d in drs]
    if any(s != specs[0] for s in specs[1:]):
        raise Unsupported("the DestinationRules of the service's hosts differ (meshc gives them one policy)")
    spec = specs[0]
    _keys("DestinationRule spec", spec, ("trafficPolicy", "subsets", "workloadSelector", "exportTo"))
    out: dict[str, Any] = {}
    if "trafficPolicy" in spec:
        policy, tls = _policy("spec.trafficPolicy", spec["trafficPolicy"], False, True)
        if tls is not None:
            out["tls"] = tls
        if policy:
            out["trafficPolicy"] = policy
    subsets = []
    for i, s in enumerate(spec.get("subsets") or []):
        at = f"spec.subsets[{i}]"
        s = _mapping(at, s)
        _keys(at, s, ("name", "labels", "trafficPolicy"))
        item: dict[str, Any] = {"name": s.get("name")}
        if s.get("labels"):
            item["labels"] = dict(s["labels"])
        if "trafficPolicy" in s:
            item["trafficPolicy"], _ = _policy(f"{at}.trafficPolicy", s["trafficPolicy"], True, True)
        subsets.append(item)
    if subsets:
        out["subsets"] = subsets
    if "workloadSelector" in spec:
        ws = _mapping("spec.workloadSelector", spec["workloadSelector"])
        _keys("spec.workloadSelector", ws, ("matchLabels",))
        out["clientSelector"] = _strings("spec.workloadSelector.matchLabels", ws.get("matchLabels") or {})
    return out
