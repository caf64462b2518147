"""The `envoy` layer of pass `check`: the emitted Envoy bootstrap, parsed strictly by Envoy's own
protos (xds-protos) and checked against their validate rules, and optionally `envoy --mode validate`.

Input: compiled environments (their bootstrap and its sources table). Output: diagnostics at the
declaration behind the Istio object each problem came from. Codes: E001-E003 (docs/envoy.md).
The egress gateway's `envoy/gateway.json` is validated whole (it is a complete static Bootstrap);
its sources table maps its listeners to the Gateway (filter chains) and VirtualServices (routes,
tcp_proxy), its clusters to their DestinationRule or ServiceEntry.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from meshc.check.common import CheckKey, CheckOptions, CheckRun, Placer
from meshc.check.envoy.validate import Located, envoy_validate_binary, validate_bootstrap
from meshc.front.provenance import locate_in_layer
from meshc.model.bundle import ENVOY_GATEWAY
from meshc.model.diagnostics import DataPath, Diagnostic, Finding, format_path
from meshc.model.results import CompileResult, EnvoyConfig, EnvResult
from meshc.runtime.workers import run_all

Sources = Mapping[tuple[Any, ...], tuple[str, str, str]]  # bootstrap path prefix -> (kind, namespace, name)


FORK_ARTIFACTS = 3000  # below this many objects, forking costs more than it saves


def run_envoy(result: CompileResult, run: CheckRun) -> list[Diagnostic]:
    """Every environment's bootstrap validated (one forked worker per environment when the estate
    is large), the findings placed at their declarations."""

    configs = [(env, env.envoy) for env in result.envs.values() if env.envoy is not None]
    envs = [env for env, _ in configs]
    pending = any(envoy.findings is None for _, envoy in configs)
    big = pending and sum(len(env.artifacts) for env in envs) >= FORK_ARTIFACTS
    out: list[Diagnostic] = []
    opts = run.opts
    checked = run_all(lambda env: _validate_env(env, opts), envs, min_items=2 if big else len(envs) + 1)
    for (env, envoy), (found, learned) in zip(configs, checked, strict=False):
        if opts.cache is not None:
            run.learned.update(learned)
        names = _ClusterNames(envoy)
        placer = Placer(env)  # one artifact index per environment, not per finding
        for path, finding in found:
            rel = path[0] if path and isinstance(path[0], str) and path[0] in envoy.workload_sources else None
            if rel is None:
                out.append(_place(placer, envoy.sources, tuple(path), finding, names))
            else:
                out.append(_place(placer, envoy.workload_sources[rel], tuple(path[1:]), finding,
                                  _WorkloadNames(envoy, rel), rel))
        if opts.envoy_binary:
            out.extend(_binary(env))
    return out


class _ClusterNames:
    """The names of an environment's clusters in bootstrap order, decoded on first use (only when
    a finding needs one: the bootstrap is ~130 MB at 10,000 services)."""

    def __init__(self, envoy: EnvoyConfig) -> None:
        self.envoy = envoy
        self.names: list[str] | None = None

    def __call__(self) -> list[str]:
        if self.names is None:
            clusters = self.envoy.bootstrap().get("static_resources", {}).get("clusters", [])
            self.names = [str(c.get("name", "")) for c in clusters]
        return self.names


class _WorkloadNames:
    """The names of a workload file's own static clusters, in file order."""

    def __init__(self, envoy: EnvoyConfig, rel: str) -> None:
        self.envoy, self.rel = envoy, rel

    def __call__(self) -> list[str]:
        return [str(c.get("name", "")) for c in self.envoy.static_part(self.rel).get("clusters") or []]


class _Overlay(dict[CheckKey, Any]):
    """A memo that reads through to `base` and keeps only what is new (to send back to the parent)."""

    def __init__(self, base: Mapping[CheckKey, Any] | None) -> None:
        super().__init__()
        self.base: Mapping[CheckKey, Any] = base if base is not None else {}

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def __getitem__(self, key: CheckKey) -> Any:
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self.base[key]


def _validate_env(env: EnvResult, opts: CheckOptions) -> tuple[Located, dict[CheckKey, Any]]:
    """Findings of one environment's bootstrap, and the check-cache entries this call computed
    (none when the proxy worker that built the bootstrap already checked it)."""
    envoy = env.envoy
    assert envoy is not None
    if envoy.findings is not None:
        return envoy.findings, {}
    key = ("envoy", envoy.sha256)  # as CheckOptions.memo; the files' bytes have sorted keys
    if opts.cache is not None and key in opts.cache:
        return opts.cache[key], {}
    return validate_config(envoy.bootstrap(), envoy, opts.cache)


def validate_config(bootstrap: dict[str, Any], envoy: EnvoyConfig, cache: Mapping[CheckKey, Any] | None
                    ) -> tuple[Located, dict[CheckKey, Any]]:
    """The envoy layer on an environment's Envoy files: the egress proxy's whole configuration
    (`bootstrap`) and each workload file's own static part (findings' paths start with the file);
    findings (path, Finding), and the check-cache entries computed (read through `cache`, which is
    not modified)."""

    memo = _Overlay(cache)
    key = ("envoy", envoy.sha256)
    if key not in memo:
        found = list(validate_bootstrap(bootstrap, memo))
        for rel in sorted(envoy.workload_sources):
            whole = orjson.loads(envoy.files[rel]) if rel == ENVOY_GATEWAY else {
                "static_resources": envoy.static_part(rel)}
            found += [((rel, *path), finding) for path, finding in validate_bootstrap(whole, memo)]
        memo[key] = found
    result: Located = memo[key]
    return result, dict(dict.items(memo))


def _place(placer: Placer, sources: Sources, path: DataPath, finding: Finding,
           names: Callable[[], list[str]] = list, rel: str = "") -> Diagnostic:
    """At the declaration behind the Istio object the bootstrap path came from: at the field of
    its traffic policy (or of the ServiceEntry) that made the Envoy field, when one did."""
    env = placer.env
    for cut in range(len(path), -1, -1):
        ident = sources.get(tuple(path[:cut]))
        if ident is not None:
            art = placer.by_identity(ident)
            if art is not None:
                where = object_path(art.body, path, names)
                if where == ENV_TIMEOUT:
                    break
                diag = placer(art, Finding(finding.code, finding.severity, finding.message, where,
                                           finding.istio_code, finding.hint))
                return Diagnostic(diag.code, diag.severity, diag.message, diag.position,
                                  f"envoy: {rel + ': ' if rel else ''}{format_path(path)}", diag.hint, diag.env,
                                  diag.object)
    source = env.settings.source
    at = None
    if source is not None and len(path) >= 4 and path[:2] == ("static_resources", "clusters") \
            and path[3] == "connect_timeout":  # meshc's own clusters, and services without a policy
        at = locate_in_layer(source, ENV_TIMEOUT[1:])
    return Diagnostic(finding.code, finding.severity, finding.message, at,
                      f"envoy: {rel + ': ' if rel else ''}{format_path(path)}", finding.hint, env.settings.name,
                      "envoy bootstrap")


# The Envoy cluster field -> the traffic-policy field it is made from (istiod's cluster builder:
# connectionPool -> circuit breakers, timeouts, keepalive, HTTP options; outlierDetection;
# loadBalancer -> lb_policy and its config; tls -> the transport socket).
_POLICY_FIELDS: dict[str, tuple[str, ...]] = {
    "connect_timeout": ("connectionPool", "tcp", "connectTimeout"),
    "circuit_breakers": ("connectionPool",),
    "typed_extension_protocol_options": ("connectionPool", "http"),
    "upstream_connection_options": ("connectionPool", "tcp", "tcpKeepalive"),
    "outlier_detection": ("outlierDetection",),
    "lb_policy": ("loadBalancer",), "ring_hash_lb_config": ("loadBalancer",),
    "maglev_lb_config": ("loadBalancer",), "least_request_lb_config": ("loadBalancer",),
    "round_robin_lb_config": ("loadBalancer",), "common_lb_config": ("loadBalancer",),
    "transport_socket": ("tls",), "transport_socket_matches": ("tls",),
}
# ... and the ServiceEntry field a cluster field is made from.
_ENTRY_FIELDS: dict[str, tuple[str, ...]] = {
    "load_assignment": ("spec", "endpoints"), "type": ("spec", "resolution"),
    "dns_lookup_family": ("spec", "resolution"), "name": ("spec", "hosts"), "alt_stat_name": ("spec", "hosts"),
}


def object_path(body: Mapping[str, Any], path: DataPath, names: Callable[[], list[str]]) -> DataPath:
    """The path in the Istio object `body` behind a path in the bootstrap (a cluster's field); ()
    when the field is not made from one field of the object."""
    if len(path) < 4 or path[:2] != ("static_resources", "clusters") or not isinstance(path[2], int):
        return ()
    field = str(path[3])
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return ()
    if body.get("kind") == "ServiceEntry":
        return ENV_TIMEOUT if field == "connect_timeout" else _ENTRY_FIELDS.get(field, ())
    rel = _POLICY_FIELDS.get(field)
    if rel is None:
        return ()
    all_names = names()
    name = all_names[path[2]] if path[2] < len(all_names) else ""
    parts = name.split("|")
    port = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
    subset = parts[2] if len(parts) == 4 else ""
    candidates = _policies(spec, port, subset)
    for base, policy in candidates:  # the most specific policy that sets the field itself ...
        if _has(policy, rel):
            return base + rel
    if field == "connect_timeout":  # ... else env.yaml's proxy.connectTimeout, as istiod's mesh default
        return ENV_TIMEOUT
    for base, policy in candidates:  # ... else the one that sets its section
        if rel[0] in policy:
            return base + rel
    return ("spec", "trafficPolicy") if "trafficPolicy" in spec else ()


ENV_TIMEOUT: DataPath = ("<env.yaml>", "proxy", "connectTimeout")  # a value env.yaml made, not the object


def _has(value: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return False
        value = value[key]
    return True


def _policies(spec: Mapping[str, Any], port: int | None,
              subset: str) -> list[tuple[DataPath, Mapping[str, Any]]]:
    """The traffic policies that can set a cluster's fields, most specific first: the subset's
    port-level settings, the subset's policy, the port-level settings, the DestinationRule's policy."""
    out: list[tuple[DataPath, Mapping[str, Any]]] = []

    def add(base: DataPath, policy: Any) -> None:
        if not isinstance(policy, Mapping):
            return
        for j, level in enumerate(policy.get("portLevelSettings") or []):
            if isinstance(level, Mapping) and (level.get("port") or {}).get("number") == port:
                out.append((base + ("portLevelSettings", j), level))
        out.append((base, policy))

    subsets = spec.get("subsets") or []
    for k, item in enumerate(subsets if subset else []):
        if isinstance(item, Mapping) and item.get("name") == subset:
            add(("spec", "subsets", k, "trafficPolicy"), item.get("trafficPolicy"))
    add(("spec", "trafficPolicy"), spec.get("trafficPolicy"))
    return out


def _binary(env: EnvResult) -> list[Diagnostic]:


    if shutil.which("envoy") is None or env.envoy is None:
        return []
    out: list[Diagnostic] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_bytes(orjson.dumps(env.envoy.bootstrap()))
        out += [Diagnostic(f.code, f.severity, f.message, None, "", f.hint, env.settings.name,
                           "envoy bootstrap") for f in envoy_validate_binary(str(path))]
        gateway = env.envoy.files.get(ENVOY_GATEWAY)
        if gateway is not None:  # the egress gateway's whole configuration
            path = Path(tmp) / "gateway.json"
            path.write_bytes(gateway)
            out += [Diagnostic(f.code, f.severity, f.message, None, "", f.hint, env.settings.name,
                               "envoy gateway") for f in envoy_validate_binary(str(path))]
    return out
