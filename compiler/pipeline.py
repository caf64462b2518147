"""The pipeline: the pass order, written down once.

    load -> merge -> validate -> expand -> proxy (Envoy bootstrap, iptables rules) -> emit
         (check runs over the expanded artifacts: see compiler.check)

`compile_estate` runs the passes for the chosen environments and returns every diagnostic at
once; it gates between stages (nothing is expanded when loading or merging failed) and never
writes: writing is `emit.write_bundle`'s job, called by the API only when there is no error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import emit
from .diagnostics import Diagnostic, has_errors
from .expand import Expander
from .load import Estate, load
from .merge import merge_estate
from .model import Artifact, EnvSettings, Service
from .templating import make_environment
from .tree import SourceTree


@dataclass
class EnvResult:
    settings: EnvSettings
    services: list[Service] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    bundle: emit.Bundle | None = None
    envoy: tuple[dict, dict] | None = None  # (bootstrap, sources) once issue-5 artifacts are built


@dataclass
class CompileResult:
    envs: dict[str, EnvResult] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def front(tree: SourceTree, envs: Sequence[str] | None) -> tuple[Estate | None, dict, list[Diagnostic]]:
    """load + merge."""
    estate, diags = load(tree, list(envs) if envs else None)
    if estate is None or has_errors(diags):
        return estate, {}, diags
    merged, more = merge_estate(estate)
    return estate, merged, diags + more


def compile_estate(tree: SourceTree, envs: Sequence[str] | None = None,
                   templates: Sequence[Path] = ()) -> CompileResult:
    from .validate import validate_env

    result = CompileResult()
    estate, merged, diags = front(tree, envs)
    result.diagnostics.extend(diags)
    if estate is None or has_errors(diags):
        return result
    jenv = make_environment(templates)
    for name, source in estate.envs.items():
        services, problems = validate_env(source.settings, merged[name])
        result.diagnostics.extend(problems)
        env_result = EnvResult(source.settings, services)
        expander = Expander(jenv, source.settings)
        for svc in services:
            arts, errs = expander.expand(svc)
            env_result.artifacts.extend(arts)
            result.diagnostics.extend(errs)
        env_result.envoy = proxy_config(env_result)
        result.envs[name] = env_result
    if result.ok:
        for env_result in result.envs.values():
            env_result.bundle = bundle_for(env_result)
    return result


def proxy_config(env_result: EnvResult) -> tuple[dict, dict]:
    """The Envoy bootstrap a sidecar (or a standalone egress Envoy) needs for these objects."""
    from .envoy import ProxySettings, build_bootstrap

    s = env_result.settings
    proxy = s.proxy
    settings = ProxySettings(
        trust_domain=s.trust_domain, dns_refresh_rate=proxy.get("dnsRefreshRate", "60s"),
        connect_timeout=proxy.get("connectTimeout", "10s"), locality=proxy.get("locality", ""),
        outbound_policy=proxy.get("outboundTrafficPolicy", "ALLOW_ANY"))
    return build_bootstrap([a.body for a in env_result.artifacts], settings)


def bundle_for(env_result: EnvResult) -> emit.Bundle:
    by_service: dict[str, list[Artifact]] = {}
    for art in env_result.artifacts:
        by_service.setdefault(art.service, []).append(art)
    services = {s.name: s for s in env_result.services}
    files: dict[str, bytes] = {}
    entries: list[dict[str, str]] = []
    for name, arts in by_service.items():
        svc = services[name]
        path = emit.service_file(svc.namespace, name)
        data, shas = emit.render_service(arts)
        files[path] = data
        source = str(svc.decl.position).removeprefix("./")
        entries.extend(emit.index_entry(a, path, sha, source) for a, sha in shas)
    extra_files: dict[str, bytes] = {}
    if env_result.envoy is not None:
        extra_files[emit.ENVOY_FILE] = emit.json_bytes(env_result.envoy[0])
    return emit.finish(env_result.settings.name, files, entries,
                       {"production": env_result.settings.production}, extra_files)
