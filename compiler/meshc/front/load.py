"""Pass `load`: environments/ on a SourceTree -> `Estate` (validated declaration layers).

Input: a SourceTree holding environments/base/*.yaml and environments/<env>/{env.yaml,*.yaml}.
Output: `Estate` with every file checked against the declaration schemas, or diagnostics.
Invariants: every Layer's data is schema-valid for its role; files are read in sorted order.
Codes: Y0xx (see meshc.files.source), D001-D004 (see meshc.front.declschema), L001 no environments,
L002 env.yaml name does not match its directory, L003 overrides in base, L004 bad file name,
L006 a folder under environments/ without env.yaml, L007 a declaration file that declares
nothing (warning), L008 a link out of the repository or a file name with control characters
(meshc.files.confine).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshc.files.confine import ConfinementError
from meshc.files.source import Document, compose_all, locate, parse
from meshc.files.tree import SourceTree
from meshc.front import declschema
from meshc.front.passthrough import PassDoc, is_passthrough, load_passthrough
from meshc.model.core import EnvSettings, Layer, NodeSource
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.model.settings import (
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_TRUST_DOMAIN,
    EgressSettings,
    GatewaySettings,
    ProxySettings,
    VmSettings,
    WaypointSettings,
)
from meshc.model.values import duration_nanos

ROOT = "environments"
BASE = "base"
ENV_FILE = "env.yaml"


@dataclass(frozen=True, slots=True)
class DeclFile:
    file: str
    services: tuple[Layer, ...]
    overrides: tuple[Layer, ...]


@dataclass(frozen=True, slots=True)
class EnvSource:
    settings: EnvSettings
    files: tuple[DeclFile, ...]


@dataclass(frozen=True, slots=True)
class Estate:
    base: tuple[DeclFile, ...]
    envs: dict[str, EnvSource]
    # objects kept verbatim, per layer ("base" and environment names; front.passthrough)
    passthrough: Mapping[str, tuple[PassDoc, ...]] = field(default_factory=dict)


def _err(code: str, message: str, pos: Position, hint: str) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, pos, hint=hint)


def _read(tree: SourceTree, path: str) -> tuple[list[Document], list[Diagnostic]]:
    try:
        data = tree.read(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return [], [_err("Y001", f"cannot read file: {reason}", Position(path),
                         "check the file exists and is readable")]
    return parse(path, data)


def _line(doc: Document) -> int:
    """The 1-based line a parsed document starts on (parse gives every document its node)."""
    return doc.node.start_mark.line + 1 if doc.node is not None else 1


def _is_yaml(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


ParseCache = dict[str, Any]  # sha256 of a file's bytes -> its items (see _items); only clean files


def load_decl_file(tree: SourceTree, path: str, allow_overrides: bool,
                   cache: ParseCache | None = None) -> tuple[DeclFile, list[Diagnostic]]:
    try:
        raw = tree.read(path)
    except OSError as exc:
        return DeclFile(path, (), ()), [_err("Y001", f"cannot read file: {exc.strerror or type(exc).__name__}",
                                              Position(path), "check the file exists and is readable")]
    key = hashlib.sha256(raw).hexdigest() + ("o" if allow_overrides else "b")
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return _decl_file(path, hit, NodeSource(path, raw, compose=compose_all)), []
    docs, diags = parse(path, raw)
    items: list[tuple[str, int, int, int, int, Any]] = []
    for d, doc in enumerate(docs):
        problems = declschema.validate("declarations", doc.value, path, doc.node)
        if not problems and doc.value.get("overrides") and not allow_overrides:
            problems = [_err("L003", "overrides: is only allowed in an environment directory",
                             Position(path, _line(doc), 1),
                             "declare base services under services:, and change them per "
                             "environment under overrides: in environments/<env>/")]
        diags.extend(problems)
        if not problems:
            items.extend(_items(d, doc))
    if cache is not None and not diags:
        cache[key] = items
    return _decl_file(path, items, NodeSource(path, raw, [d.node for d in docs if d.node is not None])), diags


def _items(d: int, doc: Document) -> list[tuple[str, int, int, int, int, Any]]:
    """(section, document, item index, line, col, data) of every service entry in a document."""
    out = []
    for key in ("services", "overrides"):
        for i, (node, value) in enumerate(zip(_child_seq(doc, key), doc.value.get(key) or [], strict=False)):
            out.append((key, d, i, node.start_mark.line + 1, node.start_mark.column + 1, value))
    return out


def _decl_file(path: str, items: list[tuple[str, int, int, int, int, Any]], source: NodeSource) -> DeclFile:
    layers = {"services": [], "overrides": []}  # type: dict[str, list[Layer]]
    for key, d, i, line, col, value in items:
        layers[key].append(Layer(path, value, line, col, source, (d, key, i)))
    return DeclFile(path, tuple(layers["services"]), tuple(layers["overrides"]))


def _child_seq(doc: Document, key: str) -> list[Any]:
    for knode, vnode in getattr(doc.node, "value", []):
        if getattr(knode, "value", None) == key:
            return list(vnode.value) if isinstance(vnode.value, list) else []
    return []


def load_env_settings(tree: SourceTree, env: str) -> tuple[EnvSettings | None, list[Diagnostic]]:
    path = f"{ROOT}/{env}/{ENV_FILE}"
    docs, diags = _read(tree, path)
    if diags:
        return None, diags
    if len(docs) != 1 or not isinstance(docs[0].value, dict):
        return None, [_err("D002", "env.yaml must hold one mapping", Position(path, 1, 1),
                           "see docs/declarations.md for the env.yaml keys")]
    doc = docs[0]
    problems = declschema.validate("env", doc.value, path, doc.node)
    if problems:
        return None, problems
    raw = doc.value
    if raw["name"] != env:
        pos = Position(path, _line(doc), 1)
        return None, [_err("L002", f"env.yaml name {raw['name']!r} does not match directory {env!r}",
                           pos, f"set name: {env}")]
    timing = _proxy_durations(path, doc, raw.get("proxy") or {})
    if timing:
        return None, timing
    trust_domain = raw.get("trustDomain", DEFAULT_TRUST_DOMAIN)
    cluster_domain = raw.get("clusterDomain", DEFAULT_CLUSTER_DOMAIN)
    return EnvSettings(
        name=env, namespace=raw["namespace"], trust_domain=trust_domain, cluster_domain=cluster_domain,
        networks=tuple(raw.get("networks", ())), policy_profile=raw.get("policyProfile", "standard"),
        production=bool(raw.get("production", False)),
        proxy=ProxySettings(trust_domain=trust_domain, cluster_domain=cluster_domain,
                            **_fields(raw.get("proxy") or {}, _PROXY_KEYS)),
        vm=VmSettings(**_fields(raw.get("vm") or {}, _VM_KEYS)),
        dataplane=raw.get("dataplane", "sidecar"), egress=_egress(raw.get("egress") or {}),
        namespaces=tuple(sorted((ns, tuple(v.get("serviceAccounts") or ())) for ns, v in raw["namespaces"].items()))
        if isinstance(raw.get("namespaces"), dict) else None, raw=raw,
        source=Layer(path, raw, 1, 1, NodeSource(path, b"", [d.node for d in docs if d.node is not None]), (0,))), []


# Envoy refuses a cluster whose connect timeout is not above 0 (PGV `gt: {}`) or a DNS refresh rate
# under 1 ms (`gte: 0.001s`), and any duration past protobuf's limit (315,576,000,000 s).
_PROXY_DURATIONS = {"connectTimeout": 1, "dnsRefreshRate": 1_000_000}
_MAX_DURATION_NS = 315_576_000_000 * 10**9


def _proxy_durations(path: str, doc: Document, proxy: Mapping[str, Any]) -> list[Diagnostic]:
    """L009: an env.yaml proxy duration Envoy would refuse, at its line (not later, per cluster)."""
    out: list[Diagnostic] = []
    for key, least in _PROXY_DURATIONS.items():
        if not isinstance(proxy.get(key), str):
            continue
        nanos = duration_nanos(proxy[key])
        if nanos is not None and least <= nanos <= _MAX_DURATION_NS:
            continue
        pos = locate(path, doc.node, ("proxy", key))[0] if doc.node is not None else Position(path, _line(doc), 1)
        floor = "more than 0" if least == 1 else "at least 1ms"
        out.append(_err("L009", f"proxy.{key} {proxy[key]!r} is not a duration Envoy accepts here ({floor}, at "
                                "most 315,576,000,000s)", pos, f"write a duration such as 10s for proxy.{key}"))
    return out


# env.yaml keys of the proxy: and vm: blocks -> fields of ProxySettings and VmSettings (whose
# defaults apply to the keys left out)
_PROXY_KEYS = {"dnsRefreshRate": "dns_refresh_rate", "connectTimeout": "connect_timeout",
               "locality": "locality", "outboundTrafficPolicy": "outbound_policy", "labels": "labels",
               "configDir": "config_dir"}
_VM_KEYS = {"dnsCapture": "dns_capture", "egressAllowList": "egress_allow_list",
            "excludeInboundPorts": "exclude_inbound_ports", "includeOutboundCIDRs": "include_outbound_cidrs",
            "excludeOutboundCIDRs": "exclude_outbound_cidrs", "excludeOutboundPorts": "exclude_outbound_ports",
            "dnsServers": "dns_servers", "dnsServersByNetwork": "dns_servers_by_network"}


def _egress(block: Mapping[str, Any]) -> EgressSettings:
    """env.yaml `egress:` (schema-valid) as typed settings."""
    gw, wp = block.get("gateway"), block.get("waypoint")
    return EgressSettings(
        mode=block.get("mode", "direct"),
        gateway=GatewaySettings(gw["name"], gw["namespace"], tuple(sorted(gw["selector"].items())),
                                tuple(gw.get("ports") or ())) if gw else None,
        waypoint=WaypointSettings(wp["name"], wp["namespace"], bool(wp.get("managed", False)),
                                  wp.get("tlsOrigination", "DestinationRule")) if wp else None,
        control_plane_namespace=block.get("controlPlaneNamespace", "istio-system"),
        sidecar_hosts=tuple(block.get("sidecarHosts", ())))


def _fields(block: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """The keys a schema-valid block sets, as field values (lists as tuples, maps as sorted pairs:
    settings are frozen)."""
    return {field: _frozen(block[key]) for key, field in keys.items() if key in block}


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else str(v)) for k, v in value.items()))
    return tuple(value) if isinstance(value, list) else value


def list_envs(tree: SourceTree) -> list[str]:
    names = {p.split("/")[1] for p in tree.list(ROOT) if p.count("/") >= 2}
    return sorted(n for n in names if n != BASE and tree.is_dir(f"{ROOT}/{n}")
                  and _has(tree, f"{ROOT}/{n}/{ENV_FILE}"))


def _has(tree: SourceTree, path: str) -> bool:
    return path in tree.list(path.rsplit("/", 1)[0])


def _folders_without_env_file(tree: SourceTree) -> list[Diagnostic]:
    """Folders under environments/ that are not base and hold no env.yaml: never skipped silently."""
    out = []
    names = sorted({p.split("/")[1] for p in tree.list(ROOT) if p.count("/") >= 2})
    for name in names:
        folder = f"{ROOT}/{name}"
        if name == BASE or not tree.is_dir(folder) or _has(tree, f"{folder}/{ENV_FILE}"):
            continue
        near = [p.rsplit("/", 1)[1] for p in tree.list(folder) if p.rsplit("/", 1)[1].lower() in _ENV_LOOKALIKES]
        hint = (f"rename {folder}/{near[0]} to {ENV_FILE}" if near else
                f"add {folder}/{ENV_FILE} (name, namespace, ...; see docs/declarations.md), or move the folder "
                "out of environments/")
        out.append(_err("L006", f"{folder}/ has no {ENV_FILE}: it is not an environment, and its files would "
                        "be ignored", Position(folder), hint))
    return out


_ENV_LOOKALIKES = {"env.yml", "env.yaml.yaml", "environment.yaml", "environment.yml", "env.json", "env.yaml~",
                   "env.yaml"}


def load(tree: SourceTree, only: list[str] | None = None,
         cache: ParseCache | None = None) -> tuple[Estate | None, list[Diagnostic]]:
    try:
        return _load(tree, only, cache)
    except ConfinementError as exc:  # a link out of the repository, a name with control characters
        return None, [_err("L008", str(exc), Position(_relative(tree, exc.path) or ROOT),
                           "replace the link with the file itself, or rename the file; meshc reads only "
                           "regular files inside the repository")]


def _relative(tree: SourceTree, path: str) -> str:
    root = str(getattr(tree, "root", ""))
    return path[len(root) + 1:] if root and path.startswith(root + "/") else path


def _load(tree: SourceTree, only: list[str] | None,
          cache: ParseCache | None) -> tuple[Estate | None, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    if tree.is_dir(ROOT):
        strays = _folders_without_env_file(tree)
        if strays:
            return None, strays
    envs = list_envs(tree)
    if not envs:
        return None, [_err("L001", "no environments found", Position(ROOT),
                           "create environments/<env>/env.yaml (see docs/declarations.md)")]
    for name in only or []:
        if name not in envs:
            return None, [_err("L001", f"unknown environment {name!r}{declschema.did_you_mean(name, envs)}",
                               Position(ROOT), f"known environments: {', '.join(envs)}")]
    base = _load_dir(tree, f"{ROOT}/{BASE}", False, diags, (), cache)
    sources: dict[str, EnvSource] = {}
    kept: dict[str, tuple[PassDoc, ...]] = {}
    for layer in (BASE, *(only or envs)):
        kept[layer], problems = load_passthrough(tree, f"{ROOT}/{layer}")
        diags.extend(problems)
    for env in only or envs:
        settings, problems = load_env_settings(tree, env)
        diags.extend(problems)
        files = _load_dir(tree, f"{ROOT}/{env}", True, diags, (f"{ROOT}/{env}/{ENV_FILE}",), cache)
        if settings is not None:
            sources[env] = EnvSource(settings, files)
    return Estate(base, sources, {k: v for k, v in kept.items() if v}), diags


def _load_dir(tree: SourceTree, directory: str, overlay: bool, diags: list[Diagnostic],
              skip: tuple[str, ...], cache: ParseCache | None) -> tuple[DeclFile, ...]:
    out: list[DeclFile] = []
    for path in tree.list(directory) if tree.is_dir(directory) else []:
        if path in skip or is_passthrough(path):
            continue
        if not _is_yaml(path):
            diags.append(Diagnostic("L004", Severity.WARNING, "not a .yaml file; ignored",
                                    Position(path), hint="rename it to .yaml or move it out"))
            continue
        decl, problems = load_decl_file(tree, path, overlay, cache)
        diags.extend(problems)
        if not problems and not decl.services and not decl.overrides:
            what = "services: or overrides:" if overlay else "services:"
            diags.append(Diagnostic(
                "L007", Severity.WARNING, f"declares nothing (no entries under {what}); if it held services, "
                "they are gone from every environment this layer reaches", Position(path, 1, 1),
                hint="declare services in it, or delete the file if removing them was intended"))
        out.append(decl)
    return tuple(out)
