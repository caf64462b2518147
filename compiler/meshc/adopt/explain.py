"""`meshc explain ENV OBJECT [FIELD]`: each value of an emitted object and the chain that produced it.

Input: a repository, an environment, an object identity as `meshc diff` or `kubectl get` print it
(`DestinationRule/egress/payments-stripe`, `dr/payments-stripe`, `EnvoyCluster/envoy/clusters.json/
outbound|443||api.stripe.com`, `IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_OUTPUT`) and
optionally a field path in the diff's syntax (`spec.ports[number=80].name` or `spec.ports[0].name`).
Output: an `Explanation`: per leaf field its value, the steps that made it (every declaration layer
that wrote it, the winner marked; env.yaml settings and defaults; the template or expander default;
for Envoy and iptables items the Istio object or VM setting behind them) and the check findings at
that field with the waivers that matched them; rendered as text or JSON (schema meshc.explain/v1,
docs/explain.md).
Invariants: read only (no bundle is written; the check cache is saved like `meshc check` does);
deterministic; every user mistake is an `ExplainError` with a fix, never an exception.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from meshc import api
from meshc.check.waivers import Waiver, load_waivers, waiver_index
from meshc.diff.model import ItemKey
from meshc.diff.model import format_path as shown_path
from meshc.diff.objects import ISTIO_CONFIG, envoy_objects, iptables_objects, normalise
from meshc.expand.services import MANAGED
from meshc.files.source import child, node_position
from meshc.front.declschema import did_you_mean
from meshc.front.provenance import Writer, descend, in_layer, writers
from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_GATEWAY, ENVOY_LISTENERS, content
from meshc.model.core import Artifact, Layer, Service
from meshc.model.diagnostics import DataPath, Diagnostic, Position, format_path, has_errors
from meshc.model.ids import ObjectId
from meshc.model.results import EnvResult
from meshc.pipeline import ProxyOptions
from meshc.proxy.iptables.build import net
from meshc.proxy.vmcapture import VmHost, vm_hosts

SCHEMA = "meshc.explain/v1"
ENVOY_KINDS = ("EnvoyCluster", "EnvoyListener")
CHAIN_KIND = "IptablesChain"

# kubectl's short names of the Istio kinds, the usual plurals and meshc's own aliases
_ALIASES = {
    "se": "ServiceEntry", "dr": "DestinationRule", "we": "WorkloadEntry", "vs": "VirtualService",
    "gw": "Gateway", "gtw": "Gateway", "wg": "WorkloadGroup", "ap": "AuthorizationPolicy",
    "pa": "PeerAuthentication", "ra": "RequestAuthentication", "btlspolicy": "BackendTLSPolicy",
    "cluster": "EnvoyCluster", "clusters": "EnvoyCluster", "listener": "EnvoyListener",
    "listeners": "EnvoyListener", "chain": "IptablesChain", "chains": "IptablesChain", "iptables": "IptablesChain",
}
# the built-in template that lays out each kind (expand/services.py Expander; the waypoint is a Gateway API Gateway)
_TEMPLATES = {"ServiceEntry": "serviceentry.json.j2", "WorkloadEntry": "workloadentry.json.j2",
              "DestinationRule": "destinationrule.json.j2", "Gateway": "gateway.json.j2",
              "VirtualService": "virtualservice.json.j2", "AuthorizationPolicy": "authorizationpolicy.json.j2",
              "BackendTLSPolicy": "backendtlspolicy.json.j2", "Sidecar": "sidecar.json.j2"}
_WAYPOINT_TEMPLATE = "waypoint.json.j2"
# Envoy files in the order a cluster or listener found in several is shown from
_ENVOY_ORDER = (ENVOY_CLUSTERS, ENVOY_LISTENERS, ENVOY_BOOTSTRAP)


class ExplainError(Exception):
    """A user mistake (unknown environment, object or field): exit code 2, with the fix."""

    def __init__(self, message: str, hint: str = "", diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.message, self.hint, self.diagnostics = message, hint, tuple(diagnostics)


@dataclass(frozen=True)
class Step:
    """One link of the chain behind a value. `role`: set (the declaration layer that wins), over
    (an earlier layer it overrides), env (an env.yaml setting), default (a value nothing declares:
    env.yaml's, the expander's or istio-iptables' default), template (the template that laid it
    out), from (a declared value it is made from), object (the Istio object an Envoy item was built
    from), built (fixed by meshc's builder, as istiod or istio-iptables write it), verbatim (a
    pass-through object), service (a service that contributed to an object of the environment)."""

    role: str
    text: str
    position: Position | None = None
    value: Any = None
    has_value: bool = False
    wins: bool = False
    layer: str = ""  # set/over/from: base, <env> overlay (overrides:) or <env> (the environment's services:)
    note: str = ""  # why (shown with the chain, left out of the one-line summary)
    quiet: bool = False  # the value is the field's own: in JSON, not repeated in text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        out.update(_pos_json(self.position))
        if self.layer:
            out["layer"] = self.layer
        if self.note:
            out["note"] = self.note
        if self.has_value:
            out["value"] = self.value
        if self.wins:
            out["wins"] = True
        return out


@dataclass(frozen=True)
class CheckHit:
    """A check finding at a field of the object, and the waiver that accepted it (if any)."""

    code: str
    severity: str
    message: str
    path: str
    position: Position | None
    waiver: Waiver | None = None
    waived: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message,
                               "path": self.path or None, "at": _pos_json(self.position) or None,
                               "waived": self.waived, "waiver": None}
        if self.waiver is not None:
            w = self.waiver
            out["waiver"] = {**_pos_json(w.position), "owner": w.owner, "reason": w.reason,
                             "expires": w.expires.isoformat()}
        return out


@dataclass
class FieldExplanation:
    path: DataPath  # in the object's body (list positions)
    shown: str  # the same path in `meshc diff`'s syntax (keyed list items by key)
    value: Any
    origin: str  # declared | derived | env | default | template | built | verbatim | environment
    steps: list[Step] = field(default_factory=list)
    decl_path: DataPath | None = None  # the declaration path behind it, when one is
    via: tuple[ObjectId, FieldExplanation] | None = None  # an Envoy value's Istio field
    checks: list[CheckHit] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.shown, "indexPath": format_path(self.path), "value": self.value, "origin": self.origin,
            "declarationPath": format_path(self.decl_path) if self.decl_path is not None else None,
            "chain": [s.to_json() for s in self.steps], "via": None,
            "findings": [c.to_json() for c in self.checks]}
        if self.via is not None:
            ident, inner = self.via
            out["via"] = {"kind": ident.kind, "namespace": ident.namespace, "name": ident.name, **inner.to_json()}
        return out


@dataclass
class Explanation:
    env: str
    id: ObjectId
    service: str  # "" for objects of the whole environment, Envoy items and iptables chains
    file: str  # the bundle file holding it
    summary: list[Step]
    fields: list[FieldExplanation]
    checks_ran: bool
    checks_note: str = ""
    object_checks: list[CheckHit] = field(default_factory=list)  # findings at no listed field
    also_in: tuple[str, ...] = ()  # other bundle files with an item of the same name (Envoy)
    asked: str = ""  # the field asked for, in the diff's syntax ("" = the whole object)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "environment": self.env,
            "object": {"kind": self.id.kind, "namespace": self.id.namespace, "name": self.id.name,
                       "id": str(self.id), "file": self.file or None, "service": self.service or None,
                       "alsoIn": list(self.also_in)},
            "field": self.asked or None,
            "checks": {"ran": self.checks_ran, "note": self.checks_note or None},
            "summary": [s.to_json() for s in self.summary],
            "fields": [f.to_json() for f in self.fields],
            "findings": [c.to_json() for c in self.object_checks],
        }


def _pos_json(pos: Position | None) -> dict[str, Any]:
    return {"file": pos.file, "line": pos.line or None, "col": pos.col or None} if pos is not None else {}


def where(pos: Position | None) -> str:
    if pos is None:
        return ""
    return f"{pos.file}:{pos.line}:{pos.col or 1}" if pos.line else pos.file


# ----------------------------------------------------------------------------- provenance per layer
# every layer that wrote a declaration path, in order: front.provenance.writers


def dig(data: Any, path: Sequence[str | int]) -> Any:
    for elem in path:
        data = descend(data, elem)
    return data


def env_setting(settings_layer: Layer | None, path: DataPath) -> tuple[bool, Position | None, Any]:
    """(written?, its position, its value) of an env.yaml key."""
    if settings_layer is None:
        return False, None, None
    depth, pos, value = in_layer(settings_layer, list(path))
    return depth == len(path), (pos if depth == len(path) else None), value


# ----------------------------------------------------------------------------- field paths

_TOKEN = re.compile(r'\[("(?:[^"\\]|\\.)*")\]|\[([^\]]*)\]|\.?([^.\[\]]+)|(\.)')


def parse_field(text: str) -> list[tuple[str, str]]:
    """`spec.ports[number=80].name` -> [("name","spec"), ("name","ports"), ("item","number=80"),
    ("name","name")]; `["a.b"]` is one key, `[0]` an index, `[x]` a set item or an index."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos or m.group(4):
            raise ExplainError(f"cannot read the field path {text!r} at character {pos + 1}",
                               "write it as `meshc diff` prints it: spec.ports[number=80].name, "
                               'metadata.labels["app.kubernetes.io/managed-by"] or spec.ports[0].name')
        quoted, bracket, name = m.group(1), m.group(2), m.group(3)
        if quoted is not None:
            tokens.append(("key", orjson.loads(quoted.encode())))
        elif bracket is not None:
            tokens.append(("item", bracket))
        else:
            tokens.append(("name", name))
        pos = m.end()
    return tokens


class _FieldError(Exception):
    def __init__(self, at: DataPath, word: str, choices: Sequence[str]) -> None:
        super().__init__(word)
        self.at, self.word, self.choices = at, word, list(choices)


def resolve_field(body: Any, text: str) -> DataPath:
    """The body path a field path names (list positions), forgiving about how keys are written:
    dotted keys unquoted (`metadata.labels.app.kubernetes.io/managed-by`), `[key=value]` on any
    item field (`spec.ports[name=http]`), `[value]` for an item of a list of scalars."""
    tokens = parse_field(text)
    cur: Any = body
    path: list[str | int] = []
    i = 0
    while i < len(tokens):
        kind, word = tokens[i]
        if isinstance(cur, Mapping):
            if word in cur:
                path.append(word)
                cur = cur[word]
                i += 1
                continue
            joined, j, hit = word, i + 1, None
            while kind == "name" and j < len(tokens) and tokens[j][0] == "name":
                joined = f"{joined}.{tokens[j][1]}"
                j += 1
                if joined in cur:
                    hit = j
            if hit is None:
                raise _FieldError(tuple(path), word, [str(k) for k in cur])
            key = ".".join([word, *(t[1] for t in tokens[i + 1:hit])])
            path.append(key)
            cur = cur[key]
            i = hit
            continue
        if isinstance(cur, list):
            index = _list_index(cur, word)
            if index is None:
                raise _FieldError(tuple(path), f"[{word}]", _item_names(cur))
            path.append(index)
            cur = cur[index]
            i += 1
            continue
        raise _FieldError(tuple(path), word, [])
    return tuple(path)


def _list_index(items: list[Any], word: str) -> int | None:
    if re.fullmatch(r"-?[0-9]+", word):
        n = int(word)
        n = n + len(items) if n < 0 else n
        return n if 0 <= n < len(items) else None
    key, eq, value = word.partition("=")
    if eq:
        value = value.strip().strip('"')
        for n, item in enumerate(items):
            got = dig(item, key.strip().split("."))
            if got is not None and not isinstance(got, (dict, list)) and _text(got) == value:
                return n
        return None
    for n, item in enumerate(items):
        if not isinstance(item, (dict, list)) and _text(item) == word:
            return n
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


_NAMING_FIELDS = ("name", "number", "address", "host", "port.number", "mode")  # what list items are keyed by


def _item_names(items: list[Any]) -> list[str]:
    """How the items of a list are named in suggestions: by position, and by the field the diff
    keys such lists by (`name`, `number`, `port.number`, ...), or by value for scalars. (Any
    scalar field, or one a level down, still names an item when written: resolve_field.)"""
    out = [f"[{n}]" for n in range(len(items))]
    for item in items:
        if isinstance(item, Mapping):
            for field in _NAMING_FIELDS:
                head, _, tail = field.partition(".")
                value = item.get(head)
                value = value.get(tail) if tail and isinstance(value, Mapping) else value
                if value is not None and not isinstance(value, (dict, list)):
                    out.append(f"[{field}={_text(value)}]")
                    break
        elif not isinstance(item, list):
            out.append(f"[{_text(item)}]")
    return out


def leaves(kind: str, body: Any, under: DataPath = ()) -> list[tuple[DataPath, str, Any]]:
    """Every leaf of `body` below `under`: (path, the diff's name for it, value); empty maps and
    lists are leaves too. Names follow `meshc diff`: keyed list items by key (`[number=80]`)."""
    out: list[tuple[DataPath, str, Any]] = []

    def walk(orig: Any, norm: Any, path: tuple[str | int, ...], shown: tuple[str | int, ...]) -> None:
        if path[:len(under)] != under[:len(path)]:
            return
        if isinstance(orig, dict) and orig:
            for k, v in orig.items():
                walk(v, norm.get(k) if isinstance(norm, dict) else None, path + (k,), shown + (k,))
            return
        if isinstance(orig, list) and orig:
            keyed = (isinstance(norm, dict) and len(norm) == len(orig) and all(isinstance(k, ItemKey) for k in norm))
            keys = list(norm) if keyed else []
            for n, v in enumerate(orig):
                sub = norm[keys[n]] if keyed else (norm[n] if isinstance(norm, list) and n < len(norm) else None)
                walk(v, sub, path + (n,), shown + ((keys[n],) if keyed else (n,)))
            return
        if len(path) >= len(under):
            out.append((path, shown_path(shown), orig))

    walk(body, normalise(kind, body), (), ())
    return out


def shown_prefix(kind: str, body: Any, path: DataPath) -> str:
    """`path` (list positions) in the diff's syntax: keyed list items by key."""
    norm: Any = normalise(kind, body)
    cur: Any = body
    shown: list[str | int] = []
    for elem in path:
        if isinstance(cur, list) and isinstance(elem, int):
            keyed = isinstance(norm, dict) and len(norm) == len(cur) and all(isinstance(k, ItemKey) for k in norm)
            key: str | int = list(norm)[elem] if keyed else elem
            norm = norm[key] if keyed else (norm[elem] if isinstance(norm, list) and elem < len(norm) else None)
            shown.append(key)
        else:
            norm = norm.get(elem) if isinstance(norm, dict) else None
            shown.append(elem)
        cur = descend(cur, elem)
    return shown_path(tuple(shown))


def show_value(value: Any) -> str:
    return value if isinstance(value, str) and value and value.strip() == value else _text(value)


# ----------------------------------------------------------------------------- the objects of an environment

@dataclass
class Item:
    """An object `meshc explain` can name: an emitted Istio object (`artifact`), or an Envoy
    cluster or listener or an iptables chain of a bundle file (`body` as `meshc diff` reads it)."""

    id: ObjectId
    body: Any
    file: str
    artifact: Artifact | None = None
    line: str = ""  # iptables: "file:line" of the chain


class Catalog:
    """The objects of one compiled environment by identity; Envoy and iptables files are read only
    when a name needs them."""

    def __init__(self, env: EnvResult) -> None:
        self.env = env
        files = env.bundle.files if env.bundle is not None else {}
        in_file: dict[ObjectId, str] = {}
        if "index.json" in files:
            try:
                in_file = {ObjectId(str(o["kind"]), str(o.get("namespace", "")), str(o["name"])): str(o.get("file", ""))
                           for o in orjson.loads(content(files["index.json"])).get("objects", [])}
            except (ValueError, KeyError, AttributeError, TypeError):
                in_file = {}
        self.istio = {a.identity: Item(a.identity, a.body, in_file.get(a.identity, ""), a) for a in env.artifacts}
        self._generated: dict[ObjectId, Item] | None = None

    def generated(self) -> dict[ObjectId, Item]:
        if self._generated is None:
            found: dict[ObjectId, Item] = {}
            files = self.env.bundle.files if self.env.bundle is not None else {}
            for rel in sorted(files):
                if rel.startswith("envoy/") and rel.endswith((".json", ".yaml", ".yml")):
                    for entry, body in envoy_objects(rel, content(files[rel])):
                        found[entry.id] = Item(entry.id, body, rel)
                elif rel.startswith("iptables/") and rel.endswith(".rules"):
                    for entry, body in iptables_objects(rel, content(files[rel])):
                        found[entry.id] = Item(entry.id, body, rel, line=entry.source)
            self._generated = found
        return self._generated

    def kinds(self) -> list[str]:
        return sorted({i.kind for i in self.istio} | set(ENVOY_KINDS) | {CHAIN_KIND})

    def of_kind(self, kind: str, group: str = "") -> list[Item]:
        pool = self.generated() if kind in ENVOY_KINDS or kind == CHAIN_KIND else self.istio
        out = [item for ident, item in pool.items() if ident.kind == kind]
        if group:
            out = [i for i in out if i.artifact is None or
                   str(i.artifact.body.get("apiVersion", "")).rpartition("/")[0] == group]
        return out


def kind_of(word: str, known: Sequence[str]) -> tuple[str, str] | None:
    """(kind, API group or "") for what kubectl or the diff print: `DestinationRule`, `dr`,
    `destinationrules`, `destinationrule.networking.istio.io`, `cluster`; None if unknown."""
    name, _, group = word.partition(".")
    low = name.lower()
    by_low = {k.lower(): k for k in known}
    for cand in (low, low[:-1] if low.endswith("s") else "", low[:-3] + "y" if low.endswith("ies") else ""):
        if cand in by_low:
            return by_low[cand], group
    if low in _ALIASES and _ALIASES[low] in known:
        return _ALIASES[low], group
    return None


def _stem(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _matches(item: Item, rest: str, namespace: str) -> bool:
    ident = item.id
    if namespace and ident.namespace != namespace and not ident.namespace.startswith(namespace + "/"):
        return False
    if rest in (ident.name, f"{ident.namespace}/{ident.name}"):
        return True
    if ident.kind in ENVOY_KINDS or ident.kind == CHAIN_KIND:
        ns = ident.namespace
        heads = {ns, _stem(ns), ns.rsplit("/", 1)[-1], ns.split("/", 1)[0], ns.rsplit(".", 1)[0]}
        return any(rest == f"{h}/{ident.name}" for h in heads)
    return False


def find_object(catalog: Catalog, text: str, namespace: str = "") -> tuple[Item, tuple[str, ...]]:
    """The object `text` names, and the other files holding an Envoy item of the same name."""
    text = text.strip()
    head, slash, rest = text.partition("/")
    if not slash and text:
        named = [i for i in catalog.istio.values()
                 if i.id.name == text and (not namespace or i.id.namespace == namespace)]
        if len(named) == 1:
            return named[0], ()
        if named:
            raise ExplainError(f"{text!r} names {len(named)} objects in {catalog.env.settings.name}",
                               "name one of them: " + ", ".join(str(i.id) for i in sorted(named, key=lambda i: i.id)))
    if not slash or not rest:
        raise ExplainError(f"{text!r} does not name an object: expected KIND/NAMESPACE/NAME",
                           "e.g. DestinationRule/egress/payments-stripe, dr/payments-stripe, "
                           "EnvoyCluster/envoy/clusters.json/outbound|443||api.stripe.com or "
                           "IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_OUTPUT")
    known = catalog.kinds()
    found = kind_of(head, known)
    if found is None:
        choices = known + sorted(_ALIASES)
        raise ExplainError(f"unknown kind {head!r} in {catalog.env.settings.name}{did_you_mean(head, choices)}",
                           f"kinds here: {', '.join(known)} (kubectl short names se, dr, we, vs, gw work too)")
    kind, group = found
    items = catalog.of_kind(kind, group)
    hits = [i for i in items if _matches(i, rest, namespace)]
    elsewhere = sorted({i.id.namespace for i in items if _matches(i, rest, "")}) if namespace else []
    if not hits and elsewhere:
        raise ExplainError(f"no {kind} {rest!r} in namespace {namespace!r} of {catalog.env.settings.name}; it is in "
                           f"{', '.join(repr(n) for n in elsewhere)}",
                           f"use -n {elsewhere[0]}, or name it {kind}/{elsewhere[0]}/{rest}")
    if not hits:
        names = sorted({f"{i.id.namespace}/{i.id.name}" for i in items} | {i.id.name for i in items})
        sample = ", ".join(f"{kind}/{i.id.namespace}/{i.id.name}" for i in sorted(items, key=lambda i: i.id)[:8])
        raise ExplainError(
            f"no {kind} {rest!r} in {catalog.env.settings.name}{did_you_mean(rest, names)}",
            (f"{kind} objects here: {sample}" + (" ..." if len(items) > 8 else "")) if items else
            f"{catalog.env.settings.name} has no {kind}; `meshc render {catalog.env.settings.name}` lists its objects")
    if kind in ENVOY_KINDS:
        hits.sort(key=lambda i: (_ENVOY_ORDER.index(i.file) if i.file in _ENVOY_ORDER else len(_ENVOY_ORDER),
                                 i.file))
        return hits[0], tuple(i.file for i in hits[1:])
    if len(hits) > 1:
        raise ExplainError(f"{text!r} names {len(hits)} objects in {catalog.env.settings.name}",
                           "name one of them: " + ", ".join(str(i.id) for i in hits[:10]))
    return hits[0], ()


# ----------------------------------------------------------------------------- the context

@dataclass
class Context:
    env: EnvResult
    root: Path
    templates_dir: Path | None
    catalog: Catalog

    def __post_init__(self) -> None:
        self.settings = self.env.settings
        self.name = self.settings.name
        self.services: dict[str, Service] = {s.name: s for s in self.env.services}
        self._sources: dict[tuple[str, str, str], dict[DataPath, ObjectId]] = {}
        self._whole: dict[str, Any] | None = None

    # -- declarations
    def layer_of(self, layer: Layer) -> tuple[str, str]:
        """("services payments-stripe", "base"), ("overrides payments-stripe", "prod overlay"), ..."""
        section = str(layer.index[1]) if len(layer.index) > 1 else "services"
        if layer.file.startswith("environments/base/"):
            where_ = "base"
        else:
            where_ = f"{self.name} overlay" if section == "overrides" else self.name
        return f"{section} {layer.data.get('name', '')}", where_

    def layer_label(self, layer: Layer) -> str:
        entry, where_ = self.layer_of(layer)
        return f"{entry} ({where_})"

    def declared(self, svc: str, path: DataPath, value: Any = None, note: str = "") -> list[Step] | None:
        """set/over steps for a declaration path some layer wrote; None when none did."""
        service = self.services.get(svc)
        if service is None:
            return None
        found = writers(service.decl, path)
        if not found:
            return None
        last = found[-1]
        transformed = value is not None and last.value != value and not isinstance(last.value, (Mapping, list))
        entry, layer = self.layer_of(last.layer)
        steps = [Step("set", entry + (f" {format_path(path)}" if note else ""), last.position, last.value,
                      not isinstance(last.value, (Mapping, list)), wins=True, layer=layer, quiet=not transformed)]
        for w in reversed(found[:-1]):
            entry, layer = self.layer_of(w.layer)
            steps.append(Step("over", entry, w.position, w.value, True, layer=layer))
        return steps

    def made_from(self, svc: str, path: DataPath, what: str = "") -> list[Step]:
        """A `from` step: the value is made from this declared value."""
        service = self.services.get(svc)
        if service is None:
            return []
        found = writers(service.decl, path)
        label = what or format_path(path) or "the service"
        if not found:
            return [Step("from", f"{label} of {svc} (not written: its default)", service.decl.position)]
        # the name is written where the service is declared; an override only refers to it
        chosen = found[0] if path == ("name",) else found[-1]
        entry, layer = self.layer_of(chosen.layer)
        scalar = not isinstance(chosen.value, (Mapping, list))
        return [Step("from", f"{label}: {entry}", chosen.position, chosen.value if scalar else None, scalar,
                     layer=layer)]

    def env_step(self, path: DataPath, default: Any = None, why: str = "") -> Step:
        written, pos, value = env_setting(self.settings.source, path)
        key = format_path(path)
        if written:
            return Step("env", key, pos, value, not isinstance(value, Mapping), note=why)
        source = self.settings.source.position if self.settings.source is not None else None
        return Step("default", f"env.yaml has no {key}: meshc's default",
                    replace(source, line=0, col=0) if source is not None else None, default, default is not None,
                    note=why)

    def env_position(self) -> Position | None:
        return self.settings.source.position if self.settings.source is not None else None

    def template_step(self, kind: str, body: Mapping[str, Any], note: str = "") -> Step:
        name = _TEMPLATES.get(kind, "")
        if kind == "Gateway" and str(body.get("apiVersion", "")).startswith("gateway.networking.k8s.io/"):
            name = _WAYPOINT_TEMPLATE
        own = self.templates_dir / name if self.templates_dir is not None and name else None
        if own is not None and own.is_file():
            rel = own.relative_to(self.root).as_posix() if own.is_relative_to(self.root) else str(own)
            return Step("template", f"{rel} (the repository's, replacing the built-in)" + (f": {note}" if note else ""))
        return Step("template", (name or "meshc's expander") + (f" ({note})" if note else ""))

    # -- Envoy sources
    def whole(self) -> dict[str, Any]:
        if self._whole is None:
            self._whole = self.env.envoy.bootstrap() if self.env.envoy is not None else {}
        return self._whole

    def item_sources(self, item: Item) -> dict[DataPath, ObjectId]:
        """The proxy pass's sources table (bundle path -> Istio object) for one Envoy item, with
        paths relative to the item."""
        key = (item.id.kind, item.file, item.id.name)
        if key in self._sources:
            return self._sources[key]
        envoy = self.env.envoy
        found: dict[DataPath, ObjectId] = {}
        if envoy is not None:
            section = "clusters" if item.id.kind == "EnvoyCluster" else "listeners"
            static: Mapping[str, Any] = {}
            table: Mapping[tuple[Any, ...], ObjectId] = {}
            if item.file in envoy.workload_sources and item.file != ENVOY_CLUSTERS:
                static, table = envoy.static_part(item.file), envoy.workload_sources[item.file]
            elif item.file in (ENVOY_CLUSTERS, ENVOY_LISTENERS) and ENVOY_CLUSTERS in envoy.workload_sources:
                shadow = envoy.static_part(ENVOY_CLUSTERS)
                if any(c.get("name") == item.id.name for c in shadow.get(section) or []):
                    static, table = shadow, envoy.workload_sources[ENVOY_CLUSTERS]
            if not static:
                static, table = self.whole().get("static_resources") or {}, envoy.sources
            index = next((n for n, c in enumerate(static.get(section) or []) if c.get("name") == item.id.name), None)
            if index is not None:
                prefix = ("static_resources", section, index)
                found = {tuple(k[3:]): v for k, v in table.items() if tuple(k[:3]) == prefix}
        self._sources[key] = found
        return found

    def artifact(self, ident: ObjectId) -> Artifact | None:
        item = self.catalog.istio.get(ident)
        return item.artifact if item is not None else None

    def service_of_host(self, host: str, namespace: str = "") -> Artifact | None:
        for item in self.catalog.istio.values():
            art = item.artifact
            if (art is not None and art.identity.kind == "ServiceEntry" and host in (art.body.get("spec") or {})
                    .get("hosts", []) and (not namespace or art.identity.namespace == namespace)):
                return art
        return None


# ----------------------------------------------------------------------------- Istio objects

def _first(steps: Sequence[list[Step] | None]) -> list[Step] | None:
    for s in steps:
        if s:
            return s
    return None


def explain_istio_field(ctx: Context, art: Artifact, path: DataPath, shown: str, value: Any) -> FieldExplanation:
    out = FieldExplanation(path, shown, value, "derived")
    if art.source is not None:
        _verbatim_field(ctx, art, art.source, out)
        return out
    if not art.service:
        _environment_field(ctx, art, out)
        return out
    if _special(ctx, art, out):
        return out
    prefix, decl_prefix, continues = _origin_entry(art, path)
    if prefix is None:
        out.origin = "derived"
        out.steps = ctx.made_from(art.service, (), "the service") + [ctx.template_step(art.identity.kind, art.body)]
        return out
    note = f"{format_path(prefix)} <- {format_path(decl_prefix) or 'the service'}"
    if continues:
        decl_path = decl_prefix + tuple(path[len(prefix):])
        out.decl_path = decl_path
        steps = ctx.declared(art.service, decl_path, value)
        if steps is not None:
            out.origin = "declared"
            out.steps = steps + [ctx.template_step(art.identity.kind, art.body, note)]
            return out
        out.origin = "default"
        out.steps = _undeclared(ctx, art.service, decl_path, value) + [
            ctx.template_step(art.identity.kind, art.body, note)]
        return out
    out.decl_path = _by_value(ctx, art.service, decl_prefix, path, value)
    out.origin = "derived"
    out.steps = ctx.made_from(art.service, out.decl_path) + [ctx.template_step(art.identity.kind, art.body, note)]
    return out


def _by_value(ctx: Context, svc: str, decl_path: DataPath, path: DataPath, value: Any) -> DataPath:
    """A value the origin table makes from a whole part of the declaration (its ports, its
    consumers) that is one declared value as written: a host, the name, a port number."""
    service = ctx.services.get(svc)
    if service is None or isinstance(value, (dict, list)) or dig(service.decl.data, decl_path) == value:
        return decl_path
    if isinstance(value, str) and value in service.hosts:
        return ("hosts", service.hosts.index(value))
    if value == service.name:
        return ("name",)
    if isinstance(value, int) and not isinstance(value, bool) and path and path[-1] in ("number", "port"):
        numbers = [p.number for p in service.ports]
        if value in numbers:
            return ("ports", numbers.index(value), "number")
    return decl_path


def _verbatim_field(ctx: Context, art: Artifact, source: Position, out: FieldExplanation) -> None:
    """A field of a pass-through object: the line it was read at (or env.yaml's namespace, filled in
    when the document names none)."""
    node, depth = art.node, 0
    pos = source
    for elem in out.path:
        sub = child(node, elem)[1] if node is not None else None
        if sub is None:
            break
        node, depth = sub, depth + 1
        pos = node_position(source.file, node)
    if depth == len(out.path):
        out.origin = "verbatim"
        out.steps = [Step("verbatim", f"kept verbatim from {_passthrough_scope(source.file, ctx.name)}", pos)]
    elif out.path == ("metadata", "namespace"):
        out.origin = "env"
        out.steps = [ctx.env_step(("namespace",), why="the pass-through document names no namespace"),
                     Step("verbatim", f"kept verbatim from {_passthrough_scope(source.file, ctx.name)}", source)]
    else:
        out.origin = "verbatim"
        out.steps = [Step("verbatim", "kept verbatim (the field's line is not known)", source)]


def _passthrough_scope(file: str, env: str) -> str:
    return ("environments/base/passthrough/ (every environment)" if file.startswith("environments/base/")
            else f"environments/{env}/passthrough/")


def _origin_entry(art: Artifact, path: DataPath) -> tuple[DataPath | None, DataPath, bool]:
    """The origin table's entry for `path`: the longest matching body prefix (front.provenance)."""
    best: tuple[int, DataPath | None, DataPath, bool] = (-1, None, (), False)
    for prefix, decl_path, continues in art.origin:
        n = len(prefix)
        if n > best[0] and tuple(path[:n]) == tuple(prefix):
            best = (n, tuple(prefix), tuple(decl_path), continues)
    return best[1], best[2], best[3]


# what a declaration leaves out and the expander fills in (front/validate.py build_service, expand/)
_DECL_DEFAULTS: dict[str, tuple[Any, str]] = {
    "location": ("external", "location omitted: external (MESH_EXTERNAL) is the default"),
    "resolution": ("none", "resolution omitted: none (NONE) is the default"),
    "endpointsAs": ("inline", "endpointsAs omitted: inline is the default"),
}


def _undeclared(ctx: Context, svc: str, decl_path: DataPath, value: Any) -> list[Step]:
    head = str(decl_path[0]) if decl_path else ""
    service = ctx.services.get(svc)
    decl_pos = service.decl.position if service is not None else None
    if head in _DECL_DEFAULTS and len(decl_path) == 1:
        return [Step("default", _DECL_DEFAULTS[head][1] + " (front/validate.py, expand/services.py)", decl_pos)]
    if head == "namespace":
        return [ctx.env_step(("namespace",), why="the service declares no namespace")]
    return [Step("default", f"{format_path(decl_path)} is not declared: meshc's expander sets it", decl_pos)]


def _special(ctx: Context, art: Artifact, out: FieldExplanation) -> bool:
    """Values the origin table maps too coarsely (metadata, defaults, derived names); True when handled."""
    path, value, kind, svc = out.path, out.value, art.identity.kind, art.service
    service = ctx.services.get(svc)
    template = ctx.template_step(kind, art.body)
    steps: list[Step] | None = None
    origin = "derived"
    if path in (("apiVersion",), ("kind",)):
        origin, steps = "template", [replace(template, text=template.text + f": fixed {path[0]}")]
    elif path[:2] == ("metadata", "labels") and len(path) == 3:
        label = str(path[2])
        if label in MANAGED and value == MANAGED[label]:
            origin, steps = "template", [Step("default", "meshc's label on every object it emits "
                                              "(expand/services.py MANAGED)"), template]
        elif label == "meshc.dev/service":
            steps = ctx.made_from(svc, ("name",)) + [template]
        elif label.startswith("istio.io/use-waypoint"):
            steps = ctx.made_from(svc, ("egress",)) + [ctx.env_step(
                ("egress", "waypoint", "namespace" if label.endswith("namespace") else "name"))]
    elif path == ("metadata", "annotations", "meshc.dev/owner"):
        steps = _declared_or(ctx, svc, ("owner",), value)
        origin = "declared"
    elif path == ("metadata", "annotations", "meshc.dev/description"):
        steps = _declared_or(ctx, svc, ("description",), value)
        origin = "declared"
    elif path == ("metadata", "namespace") and service is not None:
        gateway = ctx.settings.egress.gateway
        if value == service.namespace:
            declared = ctx.declared(svc, ("namespace",), value)
            origin = "declared" if declared else "env"
            steps = declared or [ctx.env_step(("namespace",), why=f"{svc} declares no namespace")]
        elif gateway is not None and value == gateway.namespace:
            origin = "env"
            steps = [ctx.env_step(("egress", "gateway", "namespace"), why="objects of the egress gateway path"),
                     *ctx.made_from(svc, ("egress",))]
    elif path == ("metadata", "name"):
        steps = ctx.made_from(svc, ("name",))
        if kind == "WorkloadEntry":
            named = service is not None and writers(service.decl, ("endpoints", art.part, "name"))
            steps += (ctx.made_from(svc, ("endpoints", art.part, "name"), "endpoint name") if named else
                      ctx.made_from(svc, ("endpoints", art.part, "address"), "endpoint address (it declares no name)"))
        elif kind == "DestinationRule" and service is not None and len(service.hosts) > 1:
            steps += ctx.made_from(svc, ("hosts", art.part))
        steps.append(template)
    elif kind == "ServiceEntry" and path in (("spec", "location"), ("spec", "resolution")):
        key = str(path[1])
        declared = ctx.declared(svc, (key,), value)
        origin = "declared" if declared else "default"
        steps = (declared or _undeclared(ctx, svc, (key,), value)) + [template]
    elif kind == "ServiceEntry" and path[:2] == ("spec", "ports") and len(path) == 4 and path[3] == "name":
        declared = ctx.declared(svc, ("ports", path[2], "name"), value)
        origin = "declared" if declared else "derived"
        steps = declared or [*ctx.made_from(svc, ("ports", path[2], "protocol")),
                             *ctx.made_from(svc, ("ports", path[2], "number")),
                             Step("default", "port name omitted: derived as <protocol>-<number> (front/validate.py)")]
        steps.append(template)
    elif kind == "ServiceEntry" and path[:3] == ("spec", "workloadSelector", "labels") and len(path) == 4:
        declared = ctx.declared(svc, ("selector", path[3]), value)
        origin = "declared" if declared else "default"
        steps = (declared or [*ctx.made_from(svc, ("name",)), Step(
            "default", "selector omitted: {app: <name>} selects the WorkloadEntries (front/validate.py)")]) + [template]
    elif kind == "WorkloadEntry" and path[:2] == ("spec", "labels") and len(path) == 3:
        steps = _first([ctx.declared(svc, ("selector", path[2]), value),
                        ctx.declared(svc, ("endpoints", art.part, "labels", path[2]), value)])
        origin = "declared"
        if steps is None:
            origin = "default"
            steps = [*ctx.made_from(svc, ("name",)),
                     Step("default", "selector omitted: {app: <name>} labels every WorkloadEntry (front/validate.py)")]
        steps = steps + [template]
    elif kind == "DestinationRule" and path[:2] == ("spec", "exportTo") and service is not None:
        steps = _dr_export(ctx, service, value)
        origin = "declared" if steps and steps[0].role == "set" else "derived"
        steps = steps + [template]
    elif kind == "AuthorizationPolicy" and ("principals" in path or "notPrincipals" in path):
        steps = ctx.made_from(svc, ("consumers",)) + [
            ctx.env_step(("trustDomain",), why="principals are <trust domain>/ns/<namespace>/sa/<account>"), template]
    elif kind in ("Gateway", "AuthorizationPolicy") and path[:2] == ("spec", "selector"):
        origin = "env"
        steps = [ctx.env_step(("egress", "gateway", "selector")), *ctx.made_from(svc, ("egress",)), template]
    elif kind == "VirtualService" and path[-1:] == ("host",) and ctx.settings.egress.gateway is not None \
            and value == ctx.settings.egress.gateway.host(ctx.settings.cluster_domain):
        origin = "env"
        steps = [ctx.env_step(("egress", "gateway", "name")), ctx.env_step(("egress", "gateway", "namespace")),
                 ctx.env_step(("clusterDomain",), "cluster.local"), template]
    if steps is None:
        return False
    out.origin, out.steps = origin, steps
    return True


def _declared_or(ctx: Context, svc: str, path: DataPath, value: Any) -> list[Step]:
    return ctx.declared(svc, path, value) or ctx.made_from(svc, path)


def _dr_export(ctx: Context, svc: Service, value: Any) -> list[Step]:
    declared = ctx.declared(svc.name, ("exportTo",) + (() if not isinstance(value, list) else ()))
    if svc.egress == "gateway":
        return ctx.made_from(svc.name, ("egress",), "egress: gateway (the gateway's rule is seen in its namespace "
                                                     "only)") + [ctx.env_step(("egress", "gateway", "namespace"))]
    if svc.client_selector:
        return ctx.made_from(svc.name, ("clientSelector",), "clientSelector (a rule with a workloadSelector is "
                                                             "exported to its own namespace only)")
    if declared:
        return declared
    if svc.consumers:
        return ctx.made_from(svc.name, ("consumers",), "consumers (only their namespaces see the host)")
    return []


def _environment_field(ctx: Context, art: Artifact, out: FieldExplanation) -> None:
    """An object of the whole environment (consumer Sidecars, the gateway's subset rule, the managed
    waypoint): made from env.yaml and the services it names."""
    out.origin = "environment"
    path, value, kind = out.path, out.value, art.identity.kind
    template = ctx.template_step(kind, art.body)
    steps: list[Step] = []
    egress = ctx.settings.egress
    text = _text(value)
    if path in (("apiVersion",), ("kind",)):
        out.origin, out.steps = "template", [replace(template, text=template.text + f": fixed {path[0]}")]
        return
    if path[:2] == ("metadata", "labels") and path[2:] and path[2] in MANAGED:
        out.origin = "template"
        out.steps = [Step("default", "meshc's label on every object it emits (expand/services.py MANAGED)"), template]
        return
    if kind == "Sidecar":
        if path == ("metadata", "namespace"):
            steps = [Step("service", f"{s.name} lists consumer namespace {value}: {ctx.layer_label(w.layer)}",
                          w.position) for s in ctx.env.services for w in _consumer_writers(s, str(value))]
        elif path[:2] == ("spec", "outboundTrafficPolicy"):
            steps = [ctx.env_step(("proxy", "outboundTrafficPolicy"), why="a Sidecar per consumer namespace "
                                  "under REGISTRY_ONLY")]
        elif text == "./*":
            steps = [Step("default", "its own namespace is always visible (expand/egress.py sidecar_views)")]
        elif text == f"{egress.control_plane_namespace}/*":
            steps = [ctx.env_step(("egress", "controlPlaneNamespace"), "istio-system")]
        elif text in egress.sidecar_hosts:
            steps = [ctx.env_step(("egress", "sidecarHosts"))]
    elif kind == "DestinationRule" and egress.gateway is not None:
        if path in (("metadata", "name"), ("metadata", "namespace")):
            steps = [ctx.env_step(("egress", "gateway", str(path[1])))]
        elif path == ("spec", "host"):
            steps = [ctx.env_step(("egress", "gateway", "name")), ctx.env_step(("egress", "gateway", "namespace")),
                     ctx.env_step(("clusterDomain",), "cluster.local")]
        elif path[:2] == ("spec", "subsets") and len(path) > 2:
            name = str(dig(art.body, ("spec", "subsets", path[2], "name")) or "")
            if name in ctx.services:
                steps = ctx.made_from(name, ("egress",), "egress (a subset per gateway service)")
                if path[-1] == "sni":
                    steps += ctx.made_from(name, ("hosts", 0), "its first host")
                elif path[-1] == "number":
                    steps += [Step("from", f"the ports of {name}", ctx.services[name].decl.position)]
        elif path[:2] == ("spec", "exportTo"):
            steps = [s for svc in ctx.env.services if svc.egress == "gateway" and svc.consumers
                     for s in ctx.made_from(svc.name, ("consumers",), f"consumers of {svc.name}")]
    elif kind == "Gateway" and egress.waypoint is not None:
        if path in (("metadata", "name"), ("metadata", "namespace")):
            steps = [ctx.env_step(("egress", "waypoint", str(path[1])))]
        else:
            out.origin = "template"
            steps = [Step("default", "the waypoint's fixed shape (Istio's egress waypoint)"),
                     ctx.env_step(("egress", "waypoint", "managed"), why="meshc emits the waypoint")]
    if kind == "Sidecar" and path == ("metadata", "name"):
        steps = [Step("default", "the name of every consumer namespace's Sidecar (expand/egress.py SIDECAR_NAME)")]
    if not steps:
        for svc in ctx.env.services:
            for n, host in enumerate(svc.hosts):
                if text == host or text.endswith("/" + host):
                    steps += ctx.made_from(svc.name, ("hosts", n), f"hosts[{n}] of {svc.name}")
            if text == svc.name:
                steps += ctx.made_from(svc.name, ("name",))
    if not steps:
        steps = [Step("env", f"object of the whole environment {ctx.name}, made from env.yaml and its services",
                      ctx.env_position())]
    out.steps = steps + [template]


def _consumer_writers(svc: Service, namespace: str) -> list[Writer]:
    return [w for n, c in enumerate(svc.decl.data.get("consumers") or [])
            if isinstance(c, Mapping) and c.get("namespace") == namespace
            for w in writers(svc.decl, ("consumers", n, "namespace"))[-1:]]


# ----------------------------------------------------------------------------- Envoy clusters and listeners

_W = None  # any key or index
# Envoy cluster field -> (DestinationRule policy section, path inside it): meshc.proxy.envoy.policy
_CLUSTER_FIELDS: tuple[tuple[tuple[Any, ...], str, DataPath], ...] = (
    (("connect_timeout",), "connectionPool", ("tcp", "connectTimeout")),
    (("circuit_breakers", "thresholds", _W, "max_connections"), "connectionPool", ("tcp", "maxConnections")),
    (("circuit_breakers", "thresholds", _W, "max_pending_requests"), "connectionPool",
     ("http", "http1MaxPendingRequests")),
    (("circuit_breakers", "thresholds", _W, "max_requests"), "connectionPool", ("http", "http2MaxRequests")),
    (("circuit_breakers", "thresholds", _W, "max_retries"), "connectionPool", ("http", "maxRetries")),
    (("upstream_connection_options", "tcp_keepalive", "keepalive_time"), "connectionPool",
     ("tcp", "tcpKeepalive", "time")),
    (("upstream_connection_options", "tcp_keepalive", "keepalive_interval"), "connectionPool",
     ("tcp", "tcpKeepalive", "interval")),
    (("upstream_connection_options", "tcp_keepalive", "keepalive_probes"), "connectionPool",
     ("tcp", "tcpKeepalive", "probes")),
    (("typed_extension_protocol_options", _W, "common_http_protocol_options", "max_requests_per_connection"),
     "connectionPool", ("http", "maxRequestsPerConnection")),
    (("typed_extension_protocol_options", _W, "common_http_protocol_options", "idle_timeout"),
     "connectionPool", ("http", "idleTimeout")),
    (("outlier_detection", "consecutive_5xx"), "outlierDetection", ("consecutive5xxErrors",)),
    (("outlier_detection", "enforcing_consecutive_5xx"), "outlierDetection", ("consecutive5xxErrors",)),
    (("outlier_detection", "consecutive_gateway_failure"), "outlierDetection", ("consecutiveGatewayErrors",)),
    (("outlier_detection", "enforcing_consecutive_gateway_failure"), "outlierDetection",
     ("consecutiveGatewayErrors",)),
    (("outlier_detection", "interval"), "outlierDetection", ("interval",)),
    (("outlier_detection", "base_ejection_time"), "outlierDetection", ("baseEjectionTime",)),
    (("outlier_detection", "max_ejection_percent"), "outlierDetection", ("maxEjectionPercent",)),
    (("common_lb_config", "healthy_panic_threshold", "value"), "outlierDetection", ("minHealthPercent",)),
    (("lb_policy",), "loadBalancer", ("simple",)),
    (("transport_socket", "typed_config", "sni"), "tls", ("sni",)),
    (("transport_socket", "typed_config", "common_tls_context", "combined_validation_context",
      "default_validation_context", "match_subject_alt_names", _W, "exact"), "tls", ("subjectAltNames",)),
    (("transport_socket",), "tls", ("mode",)),
)


def _pattern_match(pattern: Sequence[Any], path: DataPath) -> bool:
    if pattern and pattern[-1] == "transport_socket" and len(pattern) == 1:
        return bool(path) and path[0] == "transport_socket"
    return len(pattern) == len(path) and all(p is None or p == s for p, s in zip(pattern, path, strict=False))


def _port_entry(policy: Any, port: int) -> int | None:
    for n, entry in enumerate((policy or {}).get("portLevelSettings") or []):
        if isinstance(entry, Mapping) and int((entry.get("port") or {}).get("number") or 0) == port:
            return n
    return None


def policy_path(rule: Mapping[str, Any], port: int, subset: str, section: str, inner: DataPath) -> DataPath | None:
    """The DestinationRule field a cluster (port, subset) takes `section`.`inner` from, as istiod
    merges them (proxy/envoy/policy.effective_policy): a portLevelSettings entry replaces the
    section wholesale; a subset's policy overrides the rule's section by section."""
    spec = rule.get("spec") or {}
    candidates: list[DataPath] = []
    if subset:
        n = next((i for i, s in enumerate(spec.get("subsets") or []) if s.get("name") == subset), None)
        stp = dig(spec, ("subsets", n, "trafficPolicy")) if n is not None else None
        if stp:
            entry = _port_entry(stp, port)
            if entry is not None:
                candidates.append(("spec", "subsets", n or 0, "trafficPolicy", "portLevelSettings", entry))
            else:
                candidates.append(("spec", "subsets", n or 0, "trafficPolicy"))
    if not candidates or len(candidates[0]) < 6:
        top = spec.get("trafficPolicy") or {}
        entry = _port_entry(top, port)
        candidates.append(("spec", "trafficPolicy", "portLevelSettings", entry) if entry is not None
                          else ("spec", "trafficPolicy"))
    for cand in candidates:
        holder = dig(rule, cand)
        if isinstance(holder, Mapping) and holder.get(section):
            target = cand + (section,) + inner
            return target if dig(rule, target) is not None else None
    return None


def _cluster_parts(name: str) -> tuple[int, str, str] | None:
    parts = name.split("|")
    if len(parts) == 4 and parts[0] == "outbound" and parts[1].isdigit():
        return int(parts[1]), parts[2], parts[3]
    return None


def _longest(table: Mapping[DataPath, ObjectId], path: DataPath) -> ObjectId | None:
    best: tuple[int, ObjectId | None] = (-1, None)
    for prefix, ident in table.items():
        if len(prefix) > best[0] and tuple(path[:len(prefix)]) == prefix:
            best = (len(prefix), ident)
    return best[1]


def _via(ctx: Context, ident: ObjectId, path: DataPath) -> FieldExplanation | None:
    art = ctx.artifact(ident)
    if art is None:
        return None
    value = dig(art.body, path)
    shown = {p: s for p, s, _ in leaves(ident.kind, art.body, path)}
    inner = explain_istio_field(ctx, art, path, shown.get(path, format_path(path)), value)
    return inner


def _object_step(ctx: Context, ident: ObjectId, why: str) -> Step:
    art = ctx.artifact(ident)
    svc = ctx.services.get(art.service) if art is not None else None
    pos = svc.decl.position if svc is not None else (ctx.env_position() if art is not None else None)
    who = f" (service {svc.name})" if svc is not None else ""
    return Step("object", f"{why} {ident}{who}", pos)


def explain_envoy_field(ctx: Context, item: Item, path: DataPath, shown: str, value: Any) -> FieldExplanation:
    out = FieldExplanation(path, shown, value, "built")
    sources = ctx.item_sources(item)
    made_by = _longest(sources, path)
    istio = dig(item.body, ("metadata", "filter_metadata", "istio")) or {}
    found = ISTIO_CONFIG.fullmatch(str(istio.get("config", "")))
    rule_id = ObjectId("DestinationRule", found.group(1), found.group(2)) if found else None
    service_entry = None
    for svc in istio.get("services") or []:
        art = ctx.service_of_host(str(svc.get("host", "")), str(svc.get("namespace", "")))
        service_entry = art.identity if art is not None else service_entry
    parts = _cluster_parts(item.id.name) if item.id.kind == "EnvoyCluster" else None
    if parts is not None and rule_id is not None:
        rule = ctx.artifact(rule_id)
        for pattern, section, inner in _CLUSTER_FIELDS:
            if rule is None or not _pattern_match(pattern, path):
                continue
            if section == "tls" and inner == ("subjectAltNames",):
                inner = inner + (path[-2],) if isinstance(path[-2], int) else inner
            target = policy_path(rule.body, parts[0], parts[1], section, inner)
            if target is not None:
                via = _via(ctx, rule_id, target)
                if via is not None:
                    out.via, out.origin = (rule_id, via), via.origin
                    out.steps = [Step("object", f"{rule_id} {via.shown}", None, via.value, True)]
                    return out
            if path != ("connect_timeout",):
                out.origin = "default"
                out.steps = [Step("default", f"{section}.{format_path(inner)} is not set for port {parts[0]}"
                                  f"{' subset ' + parts[1] if parts[1] else ''} in {rule_id}: istiod's default")]
                return out
            break
    if item.id.kind == "EnvoyCluster" and path[-1:] == ("port_value",) and service_entry is not None and parts:
        port = _port_field(ctx, service_entry, parts[0])
        via = _via(ctx, service_entry, port) if port is not None else None
        if via is not None:
            out.via, out.origin = (service_entry, via), via.origin
            out.steps = [Step("object", f"{service_entry} {via.shown}", None, via.value, True)]
            return out
    if item.id.kind == "EnvoyCluster" and path == ("connect_timeout",):
        out.origin = "env"
        out.steps = [ctx.env_step(("proxy", "connectTimeout"), ctx.settings.proxy.connect_timeout,
                                  "no connectionPool.tcp.connectTimeout applies to this cluster")]
    elif item.id.kind == "EnvoyCluster" and path == ("dns_refresh_rate",):
        out.origin = "env"
        out.steps = [ctx.env_step(("proxy", "dnsRefreshRate"), ctx.settings.proxy.dns_refresh_rate)]
    elif path[:2] == ("load_assignment", "endpoints") and made_by is not None:
        address = dig(item.body, path[:5] + ("endpoint", "address", "socket_address", "address")) \
            if len(path) > 4 else None
        target = _address_field(ctx, made_by, address)
        if target is not None and path[-1] == "address":
            via = _via(ctx, made_by, target)
            if via is not None:
                out.via, out.origin = (made_by, via), via.origin
                out.steps = [Step("object", f"{made_by} {via.shown}", None, via.value, True)]
                return out
        out.steps = [_object_step(ctx, made_by, "endpoint of")]
        if path[-1] == "locality" or "locality" in path:
            out.steps.append(ctx.env_step(("proxy", "locality"), why="priorities are counted from the egress "
                                          "proxy's locality; VM views use their own"))
    elif path[:4] == ("metadata", "filter_metadata", "istio", "config") and rule_id is not None:
        out.origin = "derived"
        out.steps = [_object_step(ctx, rule_id, "names")]
    if not out.steps:
        if made_by is None and parts is None and item.id.kind == "EnvoyCluster":
            out.steps = [Step("built", "an agent or catch-all cluster every proxy has (proxy/envoy/cluster.py "
                                       "special_clusters)")]
        else:
            out.steps = [Step("built", "as istiod writes it (proxy/envoy/); not traced to one declared field")]
    who = made_by or rule_id or service_entry
    if who is not None and not any(s.role == "object" for s in out.steps):
        out.steps.append(_object_step(ctx, who, "made for"))
    return out


def _port_field(ctx: Context, ident: ObjectId, number: int) -> DataPath | None:
    """The ServiceEntry port a cluster's endpoint port comes from: its targetPort, else its number."""
    art = ctx.artifact(ident)
    for n, port in enumerate(((art.body.get("spec") or {}).get("ports") or []) if art is not None else []):
        if isinstance(port, Mapping) and port.get("number") == number:
            return ("spec", "ports", n, "targetPort" if "targetPort" in port else "number")
    return None


def _address_field(ctx: Context, ident: ObjectId, address: Any) -> DataPath | None:
    art = ctx.artifact(ident)
    if art is None or address is None:
        return None
    spec = art.body.get("spec") or {}
    if ident.kind == "WorkloadEntry" and spec.get("address") == address:
        return ("spec", "address")
    for n, ep in enumerate(spec.get("endpoints") or []):
        if isinstance(ep, Mapping) and ep.get("address") == address:
            return ("spec", "endpoints", n, "address")
    for n, host in enumerate(spec.get("hosts") or []):
        if host == address:
            return ("spec", "hosts", n)
    return None


def envoy_summary(ctx: Context, item: Item, also: Sequence[str]) -> list[Step]:
    sources = ctx.item_sources(item)
    objects = sorted(set(sources.values()))
    istio = dig(item.body, ("metadata", "filter_metadata", "istio")) or {}
    found = ISTIO_CONFIG.fullmatch(str(istio.get("config", "")))
    steps: list[Step] = []
    if found:
        rule_id = ObjectId("DestinationRule", found.group(1), found.group(2))
        steps.append(_object_step(ctx, rule_id, "shaped by"))
        objects = [o for o in objects if o != rule_id]
    for svc in istio.get("services") or []:
        art = ctx.service_of_host(str(svc.get("host", "")), str(svc.get("namespace", "")))
        if art is not None and art.identity not in objects:
            objects.insert(0, art.identity)
    steps += [_object_step(ctx, o, "made for") for o in objects]
    where_ = {ENVOY_CLUSTERS: "shared by every proxy (CDS file)", ENVOY_LISTENERS: "shared by every proxy (LDS file)",
              ENVOY_BOOTSTRAP: "the egress proxy's own version",
              ENVOY_GATEWAY: "the egress gateway's configuration (env.yaml egress.gateway)"}.get(
        item.file, "the own version of the VM workload groups of one view (envoy/views/)")
    steps.append(Step("built", f"in {item.file}: {where_}" + (f"; also in {', '.join(also)}" if also else "")))
    if not objects and not found:
        steps.append(Step("built", "no declaration: a cluster or listener every proxy has (istiod's defaults)"))
    return steps


# ----------------------------------------------------------------------------- iptables

_VM_KEYS = {"exclude_inbound_ports": "excludeInboundPorts", "exclude_outbound_ports": "excludeOutboundPorts",
            "exclude_outbound_cidrs": "excludeOutboundCIDRs", "include_outbound_cidrs": "includeOutboundCIDRs"}
_DPORT = re.compile(r"(?:^| )--dport ([0-9]+)")
_DEST = re.compile(r"(?:^| )-d ([0-9./]+)")
_ORIG = re.compile(r"--ctorigdst ([0-9./]+) --ctorigdstport ([0-9]+)")


def _vm_host(ctx: Context, file: str) -> VmHost | None:
    name = _stem(file)
    return next((h for h in vm_hosts(ctx.env.services) if h.name == name), None)


def _dns_step(ctx: Context, host: VmHost | None) -> Step:
    network = host.service.endpoints[host.index].network if host is not None else None
    if network and network in dict(ctx.settings.vm.dns_servers_by_network):
        return ctx.env_step(("vm", "dnsServersByNetwork", network), why=f"the VM is on network {network}")
    return ctx.env_step(("vm", "dnsServers"))


def explain_rule(ctx: Context, item: Item, path: DataPath, shown: str, value: Any) -> FieldExplanation:
    out = FieldExplanation(path, shown, value, "built")
    host = _vm_host(ctx, item.file)
    chain, table = str(item.body.get("chain", "")), str(item.body.get("table", ""))
    rule = value if isinstance(value, str) and path[:1] == ("rules",) else ""
    vm = ctx.settings.vm
    steps: list[Step] = []
    dport = _DPORT.search(rule)
    dest = _DEST.search(rule)
    orig = _ORIG.search(rule)
    if not rule:
        steps = [Step("built", f"{format_path(path)} of chain {table}/{chain} (istio-iptables' layout)")]
    elif "MESHC_OUTPUT_DNS" in rule or (table == "raw") or (chain == "MESHC_EGRESS" and orig and orig.group(2) == "53"):
        steps = [ctx.env_step(("vm", "dnsCapture"), True, "DNS to the VM's nameservers goes to the agent"),
                 _dns_step(ctx, host)]
        if chain == "MESHC_EGRESS":
            steps.insert(0, ctx.env_step(("vm", "egressAllowList"), False))
    elif chain == "MESHC_INBOUND" and dport and rule.endswith("-j RETURN") and dport.group(1) != "15008":
        steps = [ctx.env_step(("vm", "excludeInboundPorts"), list(vm.exclude_inbound_ports),
                              "istioctl's VM defaults when not written")]
    elif chain == "MESHC_INBOUND" and rule.endswith("-j MESHC_IN_REDIRECT") and host is not None:
        ports_path = ("endpoints", host.index, "ports")
        if dport:
            steps = ctx.declared(host.service.name, ports_path) or ctx.made_from(host.service.name, ports_path)
            steps = [replace(s, text=f"inbound port {dport.group(1)}: {s.text}") if s.role == "set" else s
                     for s in steps]
        else:
            steps = ctx.made_from(host.service.name, ("endpoints", host.index),
                                  "endpoint without ports: every inbound port is captured")
    elif chain == "MESHC_OUTPUT" and dport and rule.endswith("-j RETURN") and "owner" not in rule \
            and "-o lo" not in rule:
        steps = [ctx.env_step(("vm", "excludeOutboundPorts"), list(vm.exclude_outbound_ports))]
    elif chain == "MESHC_OUTPUT" and dest and rule.endswith("-j RETURN") and dest.group(1) != "127.0.0.1/32" \
            and "-o lo" not in rule:
        steps = [ctx.env_step(("vm", "excludeOutboundCIDRs"), list(vm.exclude_outbound_cidrs))]
    elif chain == "MESHC_OUTPUT" and rule.endswith("-j MESHC_REDIRECT"):
        steps = [ctx.env_step(("vm", "includeOutboundCIDRs"), list(vm.include_outbound_cidrs),
                              "every destination is captured by default")]
    elif chain == "MESHC_EGRESS" and orig:
        steps = [ctx.env_step(("vm", "egressAllowList"), False)] + _destination_steps(
            ctx, orig.group(1), int(orig.group(2)))
    elif chain == "MESHC_EGRESS" or (table == "filter" and "MESHC_EGRESS" in rule):
        steps = [ctx.env_step(("vm", "egressAllowList"), False),
                 Step("built", "the allow-list's fixed rules (proxy/iptables/build.py _egress)")]
    if not steps:
        steps = [Step("built", "istio-iptables' capture rule, fixed (proxy/iptables/build.py, docs/iptables.md)")]
    roles = [s.role for s in steps]
    out.origin = ("declared" if "set" in roles or "from" in roles else "env" if "env" in roles else
                  "default" if "default" in roles else "built")
    out.steps = steps
    return out


def _destination_steps(ctx: Context, cidr: str, port: int) -> list[Step]:
    """The declarations behind an allow-list destination (proxy/vmcapture.py destinations)."""
    steps: list[Step] = []
    for svc in ctx.env.services:
        for n, addr in enumerate(svc.addresses):
            try:
                same = net(addr) == cidr
            except ValueError:
                same = False
            if same and any(p.number == port for p in svc.ports):
                steps += ctx.made_from(svc.name, ("addresses", n), f"address of {svc.name}")
        for n, ep in enumerate(svc.endpoints):
            try:
                same = net(ep.address) == cidr
            except ValueError:
                same = False
            if same:
                steps += ctx.made_from(svc.name, ("endpoints", n, "address"), f"endpoint of {svc.name}")
    return steps or [Step("built", f"destination {cidr}:{port}")]


def chain_summary(ctx: Context, item: Item) -> list[Step]:
    host = _vm_host(ctx, item.file)
    steps: list[Step] = []
    if host is not None:
        steps += ctx.made_from(host.service.name, ("endpoints", host.index),
                               f"VM host {host.name}: endpoint {host.service.endpoints[host.index].address} of "
                               f"{host.service.name}")
        steps += ctx.made_from(host.service.name, ("endpoints", host.index, "serviceAccount"),
                               "serviceAccount (the endpoint runs a sidecar)")
    steps.append(Step("env", "vm: (the capture settings of every VM)", _vm_position(ctx)))
    steps.append(Step("built", f"rules as istio-iptables writes them; chain starts at {item.line}"))
    return steps


def _vm_position(ctx: Context) -> Position | None:
    written, pos, _ = env_setting(ctx.settings.source, ("vm",))
    return pos if written else ctx.env_position()


# ----------------------------------------------------------------------------- checks

Hits = list[tuple[DataPath | None, CheckHit]]


@dataclass
class CheckResult:
    """The findings of one environment by what they are about: an emitted object (`str(ObjectId)`,
    path in its body), a service's declaration (`service NAME`, path in the declaration: compile
    warnings), a VM's capture (`VM NAME`), or a place in the Envoy configuration (the bundle file,
    None for the egress proxy's whole configuration, and the path in it)."""

    ran: bool
    note: str
    by_object: dict[str, Hits] = field(default_factory=dict)
    envoy: list[tuple[str | None, DataPath, CheckHit]] = field(default_factory=list)


def sort_findings(diags: Sequence[Diagnostic], waived: Sequence[Diagnostic], env: str, waivers: Sequence[Waiver],
                  today: dt.date, ran: bool = True, note: str = "") -> CheckResult:
    """Findings of `env`, each with the waiver that accepted it (the first unexpired one that
    matches, as check.waivers.apply_waivers picks it)."""
    out = CheckResult(ran, note)
    for is_waived, items in ((False, diags), (True, waived)):
        for d in items:
            if d.env != env or not d.object:
                continue
            index = waiver_index(d, waivers, today) if is_waived else None
            waiver = waivers[index] if index is not None else None
            hit = CheckHit(d.code, d.severity.label, d.message, d.path, d.position, waiver, is_waived)
            if d.path.startswith("envoy: "):
                rel, sep, rest = d.path[len("envoy: "):].partition(": ")
                out.envoy.append((rel if sep else None, _finding_path(rest if sep else rel) or (), hit))
                continue
            out.by_object.setdefault(str(d.object), []).append((_finding_path(d.path), hit))
    return out


def run_checks(project: Any, result: Any, env: str, today: dt.date | None = None) -> CheckResult:
    """Every check layer on one environment, then the waivers (api.check_compiled)."""
    outcome = api.check_compiled(project, result, api.check_options(project), today)
    day = today or dt.date.today()
    if outcome.input_error:
        problems = [d for d in outcome.diagnostics if d.severity.label == "error"]
        note = "did not run: " + ("; ".join(f"{d.code} {d.message}" for d in problems[:2]) or "input error")
        return sort_findings(result.diagnostics, (), env, (), day, False, note)
    waivers: list[Waiver] = []
    path = project.resolve(project.waivers)
    if path is not None and path.is_file():
        waivers, _ = load_waivers(path, str(project.waivers))
    if result.cache is not None:
        result.cache.save()
    return sort_findings(outcome.diagnostics, outcome.waived, env, waivers, day)


def _finding_path(text: str) -> DataPath | None:
    if not text or text.startswith(("envoy:", "vm:")):
        return None
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def _attach(exp: Explanation, hits: Hits, asked: DataPath | None, declared: bool = False) -> None:
    """Each finding to the fields below its path (a path in the body, or with `declared` in the
    service's declaration); the rest to the object: all of them for the whole object, for one
    field those without a path and those inside the field asked for."""
    used: set[int] = set()
    for n, (path, hit) in enumerate(hits):
        if path is None:
            continue
        for f in exp.fields:
            own = f.decl_path if declared else f.path
            if own is not None and tuple(own[:len(path)]) == path:
                f.checks.append(hit)
                used.add(n)
    for n, (path, hit) in enumerate(hits):
        if n in used or any(h is hit for h in exp.object_checks):
            continue
        if asked is None or path is None or (not declared and tuple(path[:len(asked)]) == asked):
            exp.object_checks.append(hit)


def _envoy_findings(ctx: Context, ran: CheckResult, item: Item) -> Hits:
    """The envoy layer's findings inside this cluster or listener (they name a path in the egress
    proxy's whole configuration or in one file's static part)."""
    out: Hits = []
    section = "clusters" if item.id.kind == "EnvoyCluster" else "listeners"
    for rel, path, hit in ran.envoy:
        if len(path) < 3 or path[:2] != ("static_resources", section) or not isinstance(path[2], int):
            continue
        if rel is None:
            if item.file not in _ENVOY_ORDER:
                continue
            static = ctx.whole().get("static_resources") or {}
        elif rel != item.file or ctx.env.envoy is None:
            continue
        else:
            static = ctx.env.envoy.static_part(rel)
        entries = static.get(section) or []
        if path[2] < len(entries) and entries[path[2]].get("name") == item.id.name:
            out.append((tuple(path[3:]), hit))
    return out


# ----------------------------------------------------------------------------- entry point

@dataclass
class Session:
    """One compiled environment (and its findings) to explain objects of."""

    ctx: Context
    checks: CheckResult


def open_env(root: Path, env: str, *, checks: bool = True, today: dt.date | None = None,
             progress: Callable[[str], None] | None = None) -> Session:
    """Compile `env` in memory (with the build cache, like `meshc render`) and, unless `checks` is
    False, run every check layer and the waivers on it; raises ExplainError."""
    project, result = api.compile_repo(root, [env], progress=progress, proxy=ProxyOptions(check_envoy=checks))
    if has_errors(result.diagnostics) or env not in result.envs:
        unknown = [d for d in result.diagnostics if d.code == "L001"]
        if unknown:
            raise ExplainError(unknown[0].message, unknown[0].hint)
        raise ExplainError(f"{env} does not compile: fix the errors above first", f"meshc check --env {env}",
                           result.diagnostics)
    env_result = result.envs[env]
    templates = project.resolve(project.templates) if project.templates is not None else None
    ctx = Context(env_result, project.root, templates, Catalog(env_result))
    if checks:
        return Session(ctx, run_checks(project, result, env, today))
    # the compile's own warnings (V0xx at the declaration) are known without the check layers
    return Session(ctx, sort_findings(result.diagnostics, (), env, (), today or dt.date.today(), False,
                                      "not run (--no-checks)"))


def explain_in(session: Session, object_text: str, field_text: str | None = None,
               namespace: str = "") -> Explanation:
    """The explanation of one object of the session's environment (or of one field of it)."""
    ctx = session.ctx
    item, also = find_object(ctx.catalog, object_text, namespace)
    asked: DataPath | None = None
    if field_text:
        try:
            asked = resolve_field(item.body, field_text)
        except _FieldError as exc:
            at = format_path(exc.at) or "the top"
            raise ExplainError(
                f"{item.id} has no field {exc.word!r} at {at}{did_you_mean(exc.word, exc.choices)}",
                ("fields there: " + ", ".join(exc.choices[:20])) if exc.choices else
                f"{format_path(exc.at)} is a value, not a map or list") from None
    exp = build(ctx, item, asked or (), also)
    exp.asked = shown_prefix(item.id.kind, item.body, asked) if asked else ""
    ran = session.checks
    exp.checks_ran, exp.checks_note = ran.ran, ran.note
    by_object = ran.by_object
    _attach(exp, by_object.get(str(item.id), []), asked)
    if item.id.kind in ENVOY_KINDS:
        _attach(exp, _envoy_findings(ctx, ran, item), asked)
    if item.id.kind == CHAIN_KIND:
        _attach(exp, [(None, h) for _, h in by_object.get(f"VM {_stem(item.file)}", [])], asked)
    if exp.service:
        _attach(exp, by_object.get(f"service {exp.service}", []), asked, declared=True)
    for f in exp.fields:
        if f.via is not None:
            ident, inner = f.via
            _attach_field(inner, by_object.get(str(ident), []))
            art = ctx.artifact(ident)
            if art is not None and art.service:
                _attach_field(inner, by_object.get(f"service {art.service}", []), declared=True)
    return exp


def explain(root: Path, env: str, object_text: str, field_text: str | None = None, *, namespace: str = "",
            checks: bool = True, today: dt.date | None = None,
            progress: Callable[[str], None] | None = None) -> Explanation:
    """`meshc explain`: one object of `env` (or one field of it); raises ExplainError."""
    return explain_in(open_env(root, env, checks=checks, today=today, progress=progress), object_text, field_text,
                      namespace)


def _attach_field(f: FieldExplanation, hits: Hits, declared: bool = False) -> None:
    own = f.decl_path if declared else f.path
    for path, hit in hits:
        if path is not None and own is not None and tuple(own[:len(path)]) == path:
            f.checks.append(hit)


def build(ctx: Context, item: Item, under: DataPath = (), also: Sequence[str] = ()) -> Explanation:
    ident = item.id
    art = item.artifact
    fields: list[FieldExplanation] = []
    summary: list[Step]
    if art is not None:
        summary = _istio_summary(ctx, art)
        for path, shown, value in leaves(ident.kind, art.body, under):
            fields.append(explain_istio_field(ctx, art, path, shown, value))
    elif ident.kind in ENVOY_KINDS:
        summary = envoy_summary(ctx, item, also)
        for path, shown, value in leaves(ident.kind, item.body, under):
            fields.append(explain_envoy_field(ctx, item, path, shown, value))
    else:
        summary = chain_summary(ctx, item)
        for path, shown, value in leaves(ident.kind, item.body, under):
            fields.append(explain_rule(ctx, item, path, shown, value))
    return Explanation(ctx.name, ident, art.service if art is not None else "", item.file, summary, fields,
                       False, also_in=tuple(also))


def _istio_summary(ctx: Context, art: Artifact) -> list[Step]:
    if art.source is not None:
        return [Step("verbatim", f"kept verbatim from {_passthrough_scope(art.source.file, ctx.name)} "
                     "(no declaration, no template)", art.source)]
    if not art.service:
        names = sorted({s.name for s in ctx.env.services if s.name in _text(art.body)
                        or any(h in _text(art.body) for h in s.hosts)})
        return [Step("env", f"object of the whole environment {ctx.name} (expand/egress.py), made from env.yaml",
                     ctx.env_position())] + [Step("service", n, ctx.services[n].decl.position) for n in names]
    svc = ctx.services.get(art.service)
    if svc is None:
        return []
    steps = []
    for n, layer in enumerate(svc.decl.layers):
        entry, where_ = ctx.layer_of(layer)
        steps.append(Step("declared" if n == 0 else "changed", entry, layer.position, layer=where_))
    return steps + [ctx.template_step(art.identity.kind, art.body)]


# ----------------------------------------------------------------------------- text

_LABELS = {"set": "set by", "over": "over", "env": "env.yaml", "default": "default", "template": "template",
           "from": "from", "object": "object", "built": "built", "verbatim": "verbatim", "service": "service",
           "declared": "declared", "changed": "changed"}


def _step_text(step: Step) -> str:
    text = step.text + (f" ({step.layer})" if step.layer else "") + (f" ({step.note})" if step.note else "")
    return text + (f": {show_value(step.value)}" if step.has_value and not step.quiet else "")


def _step_line(step: Step, width: int) -> str:
    label = _LABELS.get(step.role, step.role)
    pos = where(step.position)
    body = f"{pos:<{width}}  {_step_text(step)}" if pos else _step_text(step)
    return f"{label:<8} {body}" + ("   <- wins" if step.wins else "")


def _check_lines(hits: Sequence[CheckHit], indent: str, shown: set[int] | None = None) -> list[str]:
    out = []
    for h in hits:
        if shown is not None:
            if id(h) in shown:
                continue
            shown.add(id(h))
        at = f" (at {h.path})" if h.path and shown is not None else ""
        out.append(f"{indent}{'waived' if h.waived else 'check':<8} {h.code} {h.severity}: {h.message}{at}")
        if h.position is not None:
            out.append(f"{indent}{'':<8} placed at {where(h.position)}")
        if h.waiver is not None:
            w = h.waiver
            out.append(f"{indent}{'':<8} waiver {where(w.position)} ({w.owner}, until {w.expires}): {w.reason}")
    return out


def _chain_lines(f: FieldExplanation, indent: str) -> list[str]:
    width = max((len(where(s.position)) for s in f.steps), default=0)
    lines = [indent + _step_line(s, width) for s in f.steps]
    if f.via is not None:
        _, inner = f.via
        lines += _chain_lines(inner, indent + "  ")
        lines += _check_lines(inner.checks, indent + "  ")
    return lines


def render_text(exp: Explanation) -> str:
    """One field: its value and the chain, a line per step. The whole object (or a part of it):
    the object's own sources, then the fields grouped by parent, a line each."""
    out: list[str] = []
    if exp.asked and len(exp.fields) == 1:
        f = exp.fields[0]
        out.append(f"{exp.id}  {f.shown} = {show_value(f.value)}")
        out += _chain_lines(f, "  ")
        out += _check_lines(f.checks, "  ")
        out += _check_lines(exp.object_checks, "  ")
        out.append(_checks_footer(exp))
        return "\n".join(out) + "\n"
    context = [exp.env] + ([f"service {exp.service}"] if exp.service else []) + ([exp.file] if exp.file else [])
    out.append(f"{exp.id}  ({', '.join(context)})" + (f"  {exp.asked}" if exp.asked else ""))
    width = max((len(where(s.position)) for s in exp.summary), default=0)
    out += ["  " + _step_line(s, width) for s in exp.summary]
    shown: set[int] = set()
    out += _check_lines(exp.object_checks, "  ", shown)
    groups: dict[str, list[FieldExplanation]] = {}
    for f in exp.fields:
        groups.setdefault(_group(f.shown), []).append(f)
    for group, items in groups.items():
        out.append(group or "(top)")
        names = [f.shown[len(group):].lstrip(".") or f.shown for f in items]
        name_w = min(max((len(n) for n in names), default=0), 36)
        value_w = min(max((len(show_value(f.value)) for f in items), default=0), 36)
        for name, f in zip(names, items, strict=True):
            line = _compact(f, exp.id.kind == "EnvoyListener")
            out.append(f"  {name:<{name_w}} = {show_value(f.value):<{value_w}}  {line}".rstrip())
            out += _check_lines(f.checks, "      ", shown)
    out.append(_checks_footer(exp))
    return "\n".join(out) + "\n"


def _group(shown: str) -> str:
    """A field's group: its parent (`spec.trafficPolicy.connectionPool.tcp` for `...tcp.maxConnections`)."""
    depth, cut, quoted = 0, 0, False
    for n, ch in enumerate(shown):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "[":
            if depth == 0:
                cut = n
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "." and depth == 0:
            cut = n
    return shown[:cut]


def _compact(f: FieldExplanation, objects: bool = False) -> str:
    """One line: where the value comes from (the winner, the layers it overrides, the default);
    `objects`: name the Istio object an Envoy item's part was made for (listeners: one per chain)."""
    parts: list[str] = []
    for s in f.steps:
        pos = where(s.position)
        if s.role == "set":
            parts.append(f"{pos} ({s.layer})" + (f" written {show_value(s.value)}" if s.has_value and not s.quiet
                                                  else ""))
        elif s.role == "over":
            parts.append(f"over {pos} ({s.layer}: {show_value(s.value)})")
        elif s.role == "template" and len(f.steps) > 1:
            continue
        elif s.role == "object" and f.via is not None:
            ident, inner = f.via
            parts.append(f"{ident} {inner.shown} <- {_compact(inner)}")
        elif s.role == "object" and len(f.steps) > 1:
            if objects:
                parts.append(s.text)  # else it is in the object's summary
        elif s.role == "built":
            parts.append("built: " + s.text.split("; ")[0])
        elif s.role == "verbatim":
            parts.append(f"verbatim {pos}")
        else:
            text = s.text + (f" ({s.layer})" if s.layer else "")
            if s.has_value and (s.role not in ("env", "from") or s.value != f.value):
                text += f" = {show_value(s.value)}"
            label = _LABELS.get(s.role, s.role)
            parts.append(f"{label} {pos} {text}" if pos and s.role != "default" else f"{label}: {text}")
    return "; ".join(parts)


def _checks_footer(exp: Explanation) -> str:
    hits = {id(h) for f in exp.fields for h in f.checks} | {id(h) for h in exp.object_checks}
    hits |= {id(h) for f in exp.fields if f.via is not None for h in f.via[1].checks}
    if exp.checks_ran:
        return f"checks: ran, {len(hits)} finding(s) here" if hits else "checks: ran, nothing found here"
    return f"checks: {exp.checks_note or 'not run'}" + (f"; {len(hits)} compile finding(s) here" if hits else "")


def render_json(exp: Explanation) -> bytes:
    return orjson.dumps(exp.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
