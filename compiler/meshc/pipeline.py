"""The pipeline: the pass order, written down once.

    load -> merge -> validate -> expand -> emit(render) -> proxy (Envoy bootstrap, VM iptables) -> bundle
         (check runs over the expanded artifacts: see meshc.check)

`compile_estate` runs the passes for the chosen environments and returns every diagnostic at
once. It gates between stages (nothing is expanded when loading or merging failed) and never
writes: writing is `emit.write_bundle`'s job, called by the API only when there is no error.
validate -> expand -> render is one unit of work per (environment, service): units are cached by
content hash (meshc.cache) and run on every core (meshc.workers); the result is the same
bytes as a serial clean build, whatever was cached or parallel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from meshc.check.envoy.layer import validate_config
from meshc.emit import bundle as emit
from meshc.expand.services import Expander, TemplateLoadError
from meshc.expand.templating import make_environment
from meshc.files.tree import SourceTree
from meshc.front.load import Estate, load
from meshc.front.merge import merge_estate
from meshc.front.validate import build_service, cross_check, validate_service
from meshc.model.core import EnvSettings, ServiceDecl
from meshc.model.diagnostics import Diagnostic, has_errors
from meshc.model.results import CompileResult, EnvoyConfig, EnvResult, UnitOut
from meshc.proxy.envoy.bootstrap import ProxySettings, build_bootstrap
from meshc.proxy.vmcapture import vm_rules
from meshc.runtime.cache import BuildCache
from meshc.runtime.workers import run_all


def front(tree: SourceTree, envs: Sequence[str] | None,
          cache: BuildCache | None = None) -> tuple[Estate | None, dict, list[Diagnostic]]:
    """load + merge."""
    estate, diags = load(tree, list(envs) if envs else None, cache.parse if cache else None)
    if estate is None or has_errors(diags):
        return estate, {}, diags
    merged, more = merge_estate(estate)
    return estate, merged, diags + more


def _env_fingerprint(settings: EnvSettings) -> bytes:
    return orjson.dumps([settings.name, settings.namespace, dict(settings.raw)],
                        option=orjson.OPT_SORT_KEYS, default=repr)


def unit_key(env_fp: bytes, decl: ServiceDecl) -> str:
    h = hashlib.sha256(env_fp)
    try:
        h.update(orjson.dumps(decl.data, option=orjson.OPT_SORT_KEYS, default=repr))
    except orjson.JSONEncodeError:
        h.update(repr(decl.data).encode())
    for layer in decl.layers:
        h.update(f"\0{layer.file}:{layer.line}:{layer.col}".encode())
    return h.hexdigest()


def compile_unit(settings: EnvSettings, decl: ServiceDecl, expander: Expander) -> UnitOut:

    svc, diags = validate_service(settings, decl)
    if svc is None:
        return UnitOut(False, [], diags)
    arts, errors = expander.expand(svc)
    if errors:
        return UnitOut(True, [], diags + errors)
    path = emit.service_file(svc.namespace, svc.name)
    data, shas = emit.render_service(arts)
    source = str(decl.position).removeprefix("./")
    entries = tuple(emit.index_entry(a, path, sha, source) for a, sha in shas)
    return UnitOut(True, arts, diags, path, data, entries)


def _quiet(message: str) -> None:
    """Default progress sink: say nothing."""


@dataclass(frozen=True)
class ProxyOptions:
    """How the proxy pass hands over each environment's Envoy bootstrap: `spool` (a directory on
    the output's filesystem) has the worker write it to disk instead of sending it back; with
    `check_envoy` the worker also runs the envoy check layer on the dict it already holds (the
    layer then reads the findings instead of decoding the bootstrap again)."""

    spool: Path | None = None
    check_envoy: bool = False


def compile_estate(tree: SourceTree, envs: Sequence[str] | None = None,
                   templates: Sequence[Path] = (), cache: BuildCache | None = None,
                   workers: int | None = None,
                   progress: Callable[[str], None] = _quiet,
                   proxy: ProxyOptions = ProxyOptions()) -> CompileResult:
    result = CompileResult()
    progress("loading declarations")
    estate, merged, diags = front(tree, envs, cache)
    result.diagnostics.extend(diags)
    if estate is None or has_errors(diags):
        return result
    jenv = make_environment(templates, getattr(tree, "root", None))
    settings = {name: source.settings for name, source in estate.envs.items()}
    try:
        expanders = {name: Expander(jenv, s) for name, s in settings.items()}
    except TemplateLoadError as exc:
        result.diagnostics.append(exc.diag)
        return result
    progress(f"compiling {sum(len(d) for d in merged.values())} services in {len(merged)} environment(s)")
    outs = _run_units(settings, merged, expanders, cache, workers)
    for name in estate.envs:
        result.envs[name] = _assemble(settings[name], merged[name], outs[name], result.diagnostics)
    if result.ok:

        progress("building Envoy and iptables configuration")
        envs = list(result.envs.values())
        memo = cache.envoy if cache is not None else None
        big = sum(len(e.artifacts) for e in envs) >= 3000  # else forking costs more than it saves
        checks = cache.checks if cache is not None else None
        configs = run_all(lambda e: proxy_config(e, memo, proxy, checks), envs, workers,
                          min_items=2 if big else len(envs) + 1)
        if cache is not None:
            cache.envoy = {k: v for _, used, _ in configs for k, v in used.items()}
        for env_result, (envoy, _, learned) in zip(envs, configs, strict=False):
            if cache is not None:
                cache.checks.update(learned)
            env_result.envoy = envoy
            vm_files, problems = vm_rules(env_result.settings, env_result.services)
            result.diagnostics.extend(problems)
            env_result.bundle = bundle_for(env_result, outs[env_result.settings.name], vm_files)
        if not result.ok:
            for env_result in result.envs.values():
                env_result.bundle = None
    return result


def _run_units(settings: dict[str, EnvSettings], merged: dict[str, list[ServiceDecl]],
               expanders: dict[str, Expander], cache: BuildCache | None,
               workers: int | None) -> dict[str, list[UnitOut]]:
    keys: dict[tuple[str, int], str] = {}
    todo: list[tuple[str, int]] = []
    outs: dict[str, list[UnitOut | None]] = {}
    for env, decls in merged.items():
        fp = _env_fingerprint(settings[env])
        known = cache.units.get(env, {}) if cache else {}
        outs[env] = [None] * len(decls)
        for i, decl in enumerate(decls):
            keys[(env, i)] = key = unit_key(fp, decl)
            hit = known.get(key)
            if hit is None:
                todo.append((env, i))
            else:
                outs[env][i] = hit
    done = run_all(lambda u: compile_unit(settings[u[0]], merged[u[0]][u[1]], expanders[u[0]]),
                   todo, workers)
    for unit, out in zip(todo, done, strict=False):
        outs[unit[0]][unit[1]] = out
    if cache is not None:
        cache.units = {env: {keys[(env, i)]: out for i, out in enumerate(lst)}
                       for env, lst in outs.items()}
    return {env: [o for o in lst if o is not None] for env, lst in outs.items()}


def _assemble(settings: EnvSettings, decls: list[ServiceDecl], outs: list[UnitOut],
              diags: list[Diagnostic]) -> EnvResult:

    env_result = EnvResult(settings)
    for decl, out in zip(decls, outs, strict=False):
        diags.extend(out.diagnostics)
        if out.valid:
            env_result.services.append(build_service(settings, decl))
            env_result.artifacts.extend(out.artifacts)
    diags.extend(cross_check(settings, env_result.services))
    return env_result


def proxy_config(env_result: EnvResult, memo: dict | None = None,
                 options: ProxyOptions = ProxyOptions(),
                 checks: dict | None = None) -> tuple[EnvoyConfig, dict, dict]:
    """The Envoy bootstrap a sidecar (or a standalone egress Envoy) needs for these objects,
    with its sources table; the per-service cluster memo entries it used; and, with
    `options.check_envoy`, the check-cache entries the envoy layer computed reading `checks`
    (all for the cache)."""

    s = env_result.settings
    proxy = s.proxy
    settings = ProxySettings(
        trust_domain=s.trust_domain, dns_refresh_rate=proxy.get("dnsRefreshRate", "60s"),
        connect_timeout=proxy.get("connectTimeout", "10s"), locality=proxy.get("locality", ""),
        outbound_policy=proxy.get("outboundTrafficPolicy", "ALLOW_ANY"))
    used: dict = {}
    bootstrap, sources = build_bootstrap([a.body for a in env_result.artifacts], settings,
                                         memo, used if memo is not None else None)
    data = emit.json_bytes(bootstrap)
    sha = hashlib.sha256(data).hexdigest()
    file = data if options.spool is None else emit.spool(options.spool, f"{s.name}-envoy.json", data, sha)
    del data  # on disk when spooled: not held while the dict is validated
    findings, learned = None, {}
    if options.check_envoy:

        findings, learned = validate_config(bootstrap, sha, checks)
    return EnvoyConfig(file, sha, sources, findings), used, learned


def bundle_for(env_result: EnvResult, outs: list[UnitOut],
               vm_files: dict[str, bytes] | None = None) -> emit.Bundle:
    files = {out.file: out.data for out in outs if out.file}
    entries = [e for out in outs for e in out.entries]
    extra_files: dict[str, bytes] = dict(vm_files or {})
    if env_result.envoy is not None:
        extra_files[emit.ENVOY_FILE] = env_result.envoy.file
    source = env_result.settings.source
    extra = {"production": env_result.settings.production,
             "environmentSource": source.file if source is not None else ""}
    return emit.finish(env_result.settings.name, files, entries, extra, extra_files)


__all__ = ["CompileResult", "EnvResult", "EnvoyConfig", "ProxyOptions", "UnitOut", "compile_estate", "front"]
