"""The pipeline: the pass order, written down once, as data (`PASSES`).

    load -> merge -> templates -> [validate -> expand -> render] per service
         -> assemble -> proxy -> bundle | check -> waivers -> write

Each pass is a function from one typed value to the next (`Pass.run`), given the run's
`Context`. The bracketed passes are one unit of work per (environment, service): the executor
(meshc.runtime.executor) takes a unit from the previous build's cache when its inputs are
unchanged and forks the rest over every core; the result is the same bytes as a serial clean
build. Passes never write shared state: what they learn for the next build comes back as a
`CacheDelta` in their `Step`, applied once by the driver. The driver gates between passes:
nothing is expanded when loading or merging failed, nothing is bundled when a service failed.
`compile_estate` runs the passes up to `bundle` and never writes; `meshc.api.build` runs the
rest (check, waivers, write: meshc.check, meshc.emit.write).

`compile_streamed` (what `meshc build` runs) drives the same passes one environment at a time:
the estate passes once, then units -> assemble -> proxy -> bundle of one environment, whose
result goes to the caller's sink (check and stage) and is released before the next environment
is compiled, so nothing proportional to the whole estate's output is held at once. It gives the
diagnostics `compile_estate` would give, in the same order, and the same gates (an environment
bundled before a later one failed is void).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import orjson

from meshc.check.envoy.layer import validate_config
from meshc.check.schema.crd import CrdSet
from meshc.emit import bundle as emit
from meshc.expand.services import Expander, TemplateLoadError
from meshc.expand.templating import make_environment
from meshc.files.tree import SourceTree
from meshc.front.load import Estate, load
from meshc.front.merge import merge_estate
from meshc.front.passthrough import passthrough_artifacts
from meshc.front.validate import build_service, cross_check, validate_service
from meshc.model.bundle import ENVOY_CLUSTERS, Bundle, Spooled, SpooledFiles, bundle_entries
from meshc.model.core import Artifact, EnvSettings, Service, ServiceDecl
from meshc.model.diagnostics import Diagnostic, Finding, has_errors
from meshc.model.release import DEFAULT_ISTIO, schema_release, shipped_crds
from meshc.model.results import CompileResult, EnvoyConfig, EnvResult, UnitOut
from meshc.proxy.envoy.proxies import Proxy, build_proxy_files, gateway_proxy
from meshc.proxy.vmcapture import vm_rules
from meshc.proxy.workloads import egress_proxy, unselected_credentials, workload_proxies
from meshc.runtime.cache import BuildCache, Spilled
from meshc.runtime.executor import CacheDelta, Executor, apply
from meshc.runtime.workers import Forkserver, Pending

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
Scope = Literal["estate", "unit", "env", "build"]


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


@dataclass(frozen=True)
class Context:
    """What every pass of one run may read: the sources, and the executor that runs it."""

    tree: SourceTree
    envs: tuple[str, ...] | None = None
    templates: tuple[Path, ...] = ()
    executor: Executor = Executor()
    progress: Callable[[str], None] = _quiet


@dataclass(frozen=True)
class Step(Generic[Out]):
    """A pass's result: the value for the next pass (None: the run stops here), the diagnostics
    it found, and what it learned for the next build."""

    value: Out | None
    diagnostics: tuple[Diagnostic, ...] = ()
    learned: CacheDelta = CacheDelta()


@dataclass(frozen=True)
class Pass(Generic[In, Out]):
    """One pass: its name, the scope it works at (the whole estate, one unit = one service in one
    environment, one environment, or the whole build), what it does, and the function."""

    name: str
    scope: Scope
    summary: str
    run: Callable[[Context, In], Step[Out]] | None = field(default=None, compare=False, repr=False)


# ----------------------------------------------------------------------------- the values passed on

@dataclass(frozen=True)
class Merged:
    estate: Estate
    decls: dict[str, list[ServiceDecl]]


@dataclass(frozen=True)
class Prepared:
    merged: Merged
    settings: dict[str, EnvSettings]
    expanders: dict[str, Expander]


@dataclass(frozen=True)
class Units:
    prepared: Prepared
    outs: dict[str, list[UnitOut]]
    cached: int = 0  # how many units the previous build's cache answered


@dataclass(frozen=True)
class Assembled:
    units: Units
    envs: dict[str, EnvResult]


@dataclass(frozen=True)
class Proxied:
    assembled: Assembled
    vm_files: dict[str, dict[str, bytes]]


# ----------------------------------------------------------------------------- estate passes

def load_pass(ctx: Context, tree: SourceTree) -> Step[Estate]:
    """environments/ -> an Estate of schema-valid declaration layers with their positions."""
    cache = ctx.executor.cache
    parse = dict(cache.parse) if cache is not None else None  # the parse cache, grown into a copy
    estate, diags = load(tree, list(ctx.envs) if ctx.envs else None, parse)
    return Step(estate if not has_errors(diags) else None, tuple(diags), CacheDelta(parse=parse))


def merge_pass(ctx: Context, estate: Estate) -> Step[Merged]:
    """base + overlays -> one ServiceDecl per service and environment, provenance kept per layer."""
    decls, diags = merge_estate(estate)
    return Step(Merged(estate, decls), tuple(diags))


def templates_pass(ctx: Context, merged: Merged) -> Step[Prepared]:
    """The sandboxed template environment and one Expander per environment (X003 on a bad template)."""
    jenv = make_environment(list(ctx.templates), getattr(ctx.tree, "root", None))
    settings = {name: source.settings for name, source in merged.estate.envs.items()}
    try:
        expanders = {name: Expander(jenv, s) for name, s in settings.items()}
    except TemplateLoadError as exc:
        return Step(None, (exc.diag,))
    return Step(Prepared(merged, settings, expanders))


# ----------------------------------------------------------------------------- unit passes

def validate_pass(settings: EnvSettings, decl: ServiceDecl) -> tuple[Service | None, list[Diagnostic]]:
    """A merged declaration -> a typed Service, or the reasons it is not one."""
    return validate_service(settings, decl)


def expand_pass(expander: Expander, service: Service) -> tuple[list[Artifact], list[Diagnostic]]:
    """A typed Service -> its Istio objects, through the sandboxed templates."""
    return expander.expand(service)


def render_pass(decl: ServiceDecl, service: Service,
                artifacts: list[Artifact]) -> tuple[str, bytes, tuple[dict[str, str], ...]]:
    """Artifacts -> the service's manifest file (path, bytes) and its index.json entries."""
    path = emit.service_file(service.namespace, service.name)
    data, shas = emit.render_service(artifacts)
    source = str(decl.position).removeprefix("./")
    return path, data, tuple(emit.index_entry(a, path, sha, source) for a, sha in shas)


def compile_unit(settings: EnvSettings, decl: ServiceDecl, expander: Expander) -> UnitOut:
    """validate -> expand -> render of one service in one environment: the unit of work."""
    svc, diags = validate_pass(settings, decl)
    if svc is None:
        return UnitOut(False, [], diags)
    arts, errors = expand_pass(expander, svc)
    if errors:
        return UnitOut(True, [], diags + errors)
    path, data, entries = render_pass(decl, svc, arts)
    return UnitOut(True, arts, diags, path, data, entries)


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


def units_pass(ctx: Context, prepared: Prepared) -> Step[Units]:
    """Every (environment, service) unit, from the previous build where its inputs are unchanged."""
    decls, settings = prepared.merged.decls, prepared.settings
    ctx.progress(f"compiling {sum(len(d) for d in decls.values())} services in {len(decls)} environment(s)")
    items = [(env, i) for env, lst in decls.items() for i in range(len(lst))]
    fps = {env: _env_fingerprint(settings[env]) for env in decls}
    keys = [unit_key(fps[env], decls[env][i]) for env, i in items]
    known = {key: hit for (env, _), key in zip(items, keys, strict=True)
             if (hit := ctx.executor.known("units", env).get(key)) is not None}
    done = ctx.executor.cached_map(
        lambda u: compile_unit(settings[u[0]], decls[u[0]][u[1]], prepared.expanders[u[0]]), items, keys, known)
    outs: dict[str, list[UnitOut]] = {env: [] for env in decls}
    table: dict[str, dict[str, Any]] = {env: {} for env in decls}
    for (env, _), key, out in zip(items, keys, done, strict=True):
        outs[env].append(out)
        table[env][key] = out
    learned: dict[str, Mapping[str, Any]] = dict(table)
    cached = sum(1 for key in keys if key in known)
    return Step(Units(prepared, outs, cached), learned=CacheDelta(units=learned))


# ----------------------------------------------------------------------------- environment passes

def assemble_pass(ctx: Context, units: Units) -> Step[Assembled]:
    """Per environment: the valid services and their artifacts, then the cross-service checks."""
    diags: list[Diagnostic] = []
    envs: dict[str, EnvResult] = {}
    prepared = units.prepared
    for name in prepared.merged.estate.envs:
        settings = prepared.settings[name]
        env_result = EnvResult(settings)
        for decl, out in zip(prepared.merged.decls[name], units.outs[name], strict=True):
            diags.extend(out.diagnostics)
            if out.valid:
                env_result.services.append(build_service(settings, decl))
                env_result.artifacts.extend(out.artifacts)
        diags.extend(cross_check(settings, env_result.services))
        shared, problems = prepared.expanders[name].expand_env(env_result.services)
        diags.extend(problems)
        env_result.artifacts.extend(shared)
        env_result.shared.extend(shared_out(settings, art) for art in shared)
        kept_docs = [*prepared.merged.estate.passthrough.get("base", ()),
                     *prepared.merged.estate.passthrough.get(name, ())]
        kept, problems = passthrough_artifacts(settings, env_result.artifacts, kept_docs,
                                               _passthrough_schema() if kept_docs else lambda _b: ())
        diags.extend(problems)
        env_result.artifacts.extend(kept)
        env_result.shared.extend(shared_out(settings, art) for art in kept)
        envs[name] = env_result
    return Step(Assembled(units, envs), tuple(diags))


def proxy_pass(ctx: Context, assembled: Assembled) -> Step[Proxied]:
    """Per environment: the Envoy configuration and the VM iptables rules for its objects."""
    return proxy_collect(ctx, assembled, proxy_start(ctx, assembled))


ProxyOut = tuple[EnvoyConfig, Mapping[str, bytes], dict[tuple[str, ...], Any]]


def proxy_start(ctx: Context, assembled: Assembled) -> list[Pending[ProxyOut]]:
    """The first half of `proxy_pass`: each environment's Envoy configuration, under way. In a
    streamed build a large environment compiled alone gets its own made in a process of the fork
    server (the caller may do other work meanwhile); otherwise all are made now (forked over the
    cores when there are enough objects)."""
    ctx.progress("building Envoy and iptables configuration")
    envs = list(assembled.envs.values())
    executor = ctx.executor
    memo = executor.cache.envoy if executor.cache is not None else None
    checks = executor.cache.checks if executor.cache is not None else None
    options = ProxyOptions(executor.spool, executor.check_envoy)
    if executor.server is not None and len(envs) == 1 and len(envs[0].artifacts) >= ISOLATE_FROM:
        return [executor.isolated(envoy_config, proxy_job(envs[0], memo, options, _envoy_checks(checks), executor))]
    big = sum(len(e.artifacts) for e in envs) >= 3000  # else forking costs more than it saves
    configs = executor.map(lambda e: proxy_config(e, memo, options, checks), envs,
                           min_items=2 if big else len(envs) + 1)
    return [Pending(value=config) for config in configs]


def proxy_collect(ctx: Context, assembled: Assembled, pending: list[Pending[ProxyOut]]) -> Step[Proxied]:
    """The second half of `proxy_pass`: the Envoy configurations, the VM iptables rules."""
    envs = list(assembled.envs.values())
    executor = ctx.executor
    configs = [p.result() for p in pending]
    learned_checks: dict[tuple[str, ...], Any] = {}
    diags: list[Diagnostic] = []
    vm_files: dict[str, dict[str, bytes]] = {}
    out_envs: dict[str, EnvResult] = {}
    for env_result, (envoy, _, learned) in zip(envs, configs, strict=True):
        learned_checks.update(learned)
        name = env_result.settings.name
        out_envs[name] = replace(env_result, envoy=envoy)
        vm_files[name], problems = vm_rules(env_result.settings, env_result.services)
        diags.extend(problems)
        diags.extend(unselected_credentials(env_result.settings, env_result.services,
                                            [egress_proxy(env_result.settings),
                                             *workload_proxies(env_result.settings, env_result.services)]))
    memo = executor.cache.envoy if executor.cache is not None else None
    delta = CacheDelta(envoy=merged_memo([used for _, used, _ in configs]) if memo is not None else None,
                       checks=learned_checks if executor.cache is not None else None)
    value = Proxied(replace(assembled, envs=out_envs), vm_files)
    return Step(value, tuple(diags), delta)


ISOLATE_FROM = 1000  # objects: an environment this large gets its Envoy configuration from a process of its own


def _envoy_checks(checks: Mapping[tuple[str, ...], Any] | None) -> dict[tuple[str, ...], Any] | None:
    """The entries of the check cache the envoy layer reads (its keys start with "envoy"; CheckKey
    in meshc.check.common): what a proxy job is sent instead of the whole check cache."""
    if checks is None:
        return None
    return {k: v for k, v in checks.items() if str(k[0]).startswith("envoy")}


def merged_memo(parts: Sequence[Mapping[str, bytes]]) -> Mapping[str, bytes]:
    """The Envoy memo entries several environments used, as one cache section (spilled parts stay
    on disk)."""
    spilled = [p for p in parts if isinstance(p, Spilled)]
    if parts and len(spilled) == len(parts):
        return Spilled("envoy", None, [path for part in spilled for path in part.paths])
    out: dict[str, bytes] = {}
    for part in parts:
        out.update(part)
    return out


def bundle_pass(ctx: Context, proxied: Proxied) -> Step[CompileResult]:
    """Per environment: the bundle (manifests, kustomization.yaml, index.json, envoy/, iptables/)."""
    assembled = proxied.assembled
    result = CompileResult()
    for name, env_result in assembled.envs.items():
        bundle = bundle_for(env_result, assembled.units.outs[name], proxied.vm_files.get(name))
        result.envs[name] = replace(env_result, bundle=bundle)
    return Step(result)


# ----------------------------------------------------------------------------- the order

PASSES: tuple[Pass[Any, Any], ...] = (
    Pass("load", "estate", "environments/ (base + overlays) -> schema-valid declaration layers", load_pass),
    Pass("merge", "estate", "layers -> one ServiceDecl per service and environment", merge_pass),
    Pass("templates", "estate", "the sandboxed template environment, one Expander per environment",
         templates_pass),
    Pass("validate", "unit", "ServiceDecl -> typed Service (front.validate)"),
    Pass("expand", "unit", "Service -> Istio objects (expand.services)"),
    Pass("render", "unit", "objects -> manifest file and index entries (emit.bundle)"),
    Pass("units", "unit", "runs validate -> expand -> render per unit, cached and forked", units_pass),
    Pass("assemble", "env", "valid services and artifacts per environment, cross-service checks",
         assemble_pass),
    Pass("proxy", "env", "Envoy configuration and VM iptables rules per environment", proxy_pass),
    Pass("bundle", "env", "the files of out/<env>", bundle_pass),
    Pass("check", "build", "schema, istio, cue and envoy layers over the objects (check.layers)"),
    Pass("waivers", "build", "accepted findings removed, expired waivers reported (check.waivers)"),
    Pass("write", "build", "bundles swapped into the output folder, the build recorded (emit.write)"),
)
"""The order. Entries without `run` are carried out inside another entry: validate, expand and
render by `units` (`compile_unit`), check, waivers and write by meshc.api.build, in this order."""


def compile_passes(until: str = "bundle") -> tuple[Pass[Any, Any], ...]:
    """The passes `compile_estate` runs, in order: those with a function, up to `bundle` (or `until`)."""
    last = next(i for i, p in enumerate(PASSES) if p.name == until)
    return tuple(p for p in PASSES[:last + 1] if p.run is not None)


def run_passes(ctx: Context, passes: Sequence[Pass[Any, Any]],
               value: Any) -> tuple[Any, list[Diagnostic], list[CacheDelta]]:
    """The driver: each pass on the previous one's value. The run stops after a pass that gives
    no value or leaves an error: the result is then the last value made (None if none was)."""
    diags: list[Diagnostic] = []
    deltas: list[CacheDelta] = []
    for p in passes:
        assert p.run is not None
        step = p.run(ctx, value)
        diags.extend(step.diagnostics)
        deltas.append(step.learned)
        if step.value is None:
            return (None if p is passes[0] else value), diags, deltas
        value = step.value
        if has_errors(diags):
            break
    return value, diags, deltas


def compile_estate(tree: SourceTree, envs: Sequence[str] | None = None,
                   templates: Sequence[Path] = (), cache: BuildCache | None = None,
                   workers: int | None = None,
                   progress: Callable[[str], None] = _quiet,
                   proxy: ProxyOptions = ProxyOptions(), until: str = "bundle") -> CompileResult:
    """Every pass up to `bundle` (or `until`, e.g. "assemble": the objects without Envoy and
    iptables) for the chosen environments, with every diagnostic at once; `cache` (when given)
    is read by the passes and then receives what they learned."""
    executor = Executor(cache, workers, proxy.spool, proxy.check_envoy)
    ctx = Context(tree, tuple(envs) if envs else None, tuple(templates), executor, progress)
    progress("loading declarations")
    value, diags, deltas = run_passes(ctx, compile_passes(until), tree)
    if cache is not None:
        apply(cache, deltas)
    result = CompileResult()
    result.envs.update(_envs(value, has_errors(diags)))
    result.diagnostics.extend(diags)
    return result


def _envs(value: Any, failed: bool) -> dict[str, EnvResult]:
    """The environments a stopped or finished run made: bundles only when nothing failed."""
    if isinstance(value, CompileResult):
        return {k: replace(v, bundle=None) if failed else v for k, v in value.envs.items()}
    if isinstance(value, Proxied):
        return dict(value.assembled.envs)
    if isinstance(value, Assembled):
        return dict(value.envs)
    return {}


# ----------------------------------------------------------------------------- streamed by environment

@dataclass
class Streamed(Generic[T]):
    """What `compile_streamed` gives: the diagnostics `compile_estate` would give (same order), the
    environments compiled, and what the sink returned for each environment it was given. When
    `bundled` is False (an environment failed) what the sink returned is void: the caller undoes
    what it did (staged bundles)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    sunk: dict[str, T] = field(default_factory=dict)
    bundled: bool = False


BATCH_SERVICES = 5000  # environments whose services add up to at most this are compiled together


def compile_streamed(tree: SourceTree, sink: Callable[[str, EnvResult], T], envs: Sequence[str] | None = None,
                     templates: Sequence[Path] = (), cache: BuildCache | None = None,
                     workers: int | None = None, progress: Callable[[str], None] = _quiet,
                     proxy: ProxyOptions = ProxyOptions(), server: Forkserver | None = None,
                     meanwhile: Callable[[str, EnvResult], None] | None = None) -> Streamed[T]:
    """The passes of `compile_estate`, one environment at a time: load, merge and templates once;
    then per environment units -> assemble -> proxy -> bundle, and `sink(name, env_result)` with its
    bundle; the environment's values are released before the next one is compiled. Consecutive
    environments whose services add up to at most BATCH_SERVICES go through the passes together
    (a batch: memory is no concern at that size, and the passes keep their parallelism: one
    round of forked units, their Envoy configurations side by side). Gates as `run_passes`:
    after an assemble error no environment goes through proxy (and the proxy diagnostics of
    those that did are dropped), after a proxy error none is bundled, so the diagnostics are
    `compile_estate`'s.

    A fork server (`server`, the caller's, started before it read the cache; else one started
    here, before the estate is loaded) makes each large environment's Envoy configuration
    (`Executor.isolated`); `meanwhile(name, env_result)`, when given, is called with the
    assembled environment (no Envoy files yet) while that runs. Without `meanwhile` (nothing else
    runs beside a proxy pass), or when the cache answered most of a batch's units, the next batch
    is compiled while its proxy pass runs (`_EnvRun.start`).
    What the passes learn for the cache is spilled to disk as each batch is done
    (`Executor.spill`)."""
    out: Streamed[T] = Streamed()
    with Forkserver() if server is None else nullcontext(server) as running:
        executor = Executor(cache, workers, proxy.spool, proxy.check_envoy, server=running)
        ctx = Context(tree, tuple(envs) if envs else None, tuple(templates), executor, progress)
        progress("loading declarations")
        value, diags, deltas = run_passes(ctx, compile_passes("templates"), tree)
        if not isinstance(value, Prepared) or has_errors(diags):
            if cache is not None:
                apply(cache, deltas)
            out.diagnostics = diags
            return out
        out.envs = list(value.merged.estate.envs)
        state = _EnvRun(ctx, value, idle=meanwhile is None)

        def finish(flight: _Flight) -> None:
            for name, bundled in state.finish(flight):
                out.sunk[name] = sink(name, bundled)
                del bundled

        previous: _Flight | None = None
        for batch in _batches(value, out.envs):
            progress(f"environment {', '.join(batch)} ({out.envs.index(batch[-1]) + 1}/{len(out.envs)})")
            flight = state.start(batch)
            if previous is not None:  # compiled while this one's proxy pass ran
                finish(previous)
                previous = None
            if flight is None:
                continue
            if meanwhile is not None and flight.assembled is not None:
                for name in batch:
                    meanwhile(name, flight.assembled.envs[name])
            if flight.overlap:
                previous = flight
            else:
                finish(flight)
            del flight
        if previous is not None:
            finish(previous)
            del previous
        out.diagnostics = diags + [d for part in state.assembled for d in part]
        deltas.append(CacheDelta(units=state.units))
        if state.failed != "assemble":
            out.diagnostics += [d for part in state.proxied for d in part]
            deltas.append(CacheDelta(envoy=merged_memo(state.memos) if cache is not None else None,
                                     checks=state.checks if cache is not None else None))
        out.bundled = not state.failed
        if cache is not None:
            apply(cache, deltas)
    return out


def _batches(prepared: Prepared, names: Sequence[str]) -> Iterator[list[str]]:
    """Consecutive environments, together while their services add up to at most BATCH_SERVICES."""
    batch: list[str] = []
    size = 0
    for name in names:
        count = len(prepared.merged.decls[name])
        if batch and size + count > BATCH_SERVICES:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += count
    if batch:
        yield batch


@dataclass
class _Flight:
    """A batch of environments whose proxy pass is under way; `overlap`: the next batch may be
    compiled meanwhile."""

    names: list[str]
    assembled: Assembled | None  # None once finished (released)
    pending: list[Pending[ProxyOut]]
    overlap: bool


class _EnvRun:
    """The per-environment passes of one streamed run, and what they leave for the run's end:
    each batch's assemble and proxy diagnostics, what was learned for the cache, and the first
    gate that closed ("assemble" or "proxy")."""

    def __init__(self, ctx: Context, prepared: Prepared, idle: bool = False) -> None:
        self.ctx, self.prepared, self.idle = ctx, prepared, idle
        self.assembled: list[tuple[Diagnostic, ...]] = []
        self.proxied: list[tuple[Diagnostic, ...]] = []
        self.units: dict[str, Mapping[str, Any]] = {}
        self.memos: list[Mapping[str, bytes]] = []
        self.checks: dict[tuple[str, ...], Any] = {}
        self.failed = ""

    def start(self, names: list[str]) -> _Flight | None:
        """units -> assemble of a batch of environments, and its proxy pass started; None when the
        assemble gate is closed. When nothing else runs beside its proxy pass (`idle`: no
        checks) or the cache answered most of its units (a rebuild), the proxy pass is most of
        its time: the next batch may be compiled meanwhile (it then holds two; a clean build
        whose checks run beside each proxy pass holds one)."""
        ctx, executor = self.ctx, self.ctx.executor
        units = units_pass(ctx, _only(self.prepared, names))
        assert units.value is not None and units.learned.units is not None
        for name in names:
            if executor.cache is not None:
                # this build's units of the environment replace the last build's, which nothing reads again
                executor.cache.units.pop(name, None)
            self.units[name] = executor.spill("units", name, units.learned.units[name])
        rebuilt = 2 * units.value.cached >= sum(len(outs) for outs in units.value.outs.values()) > 0
        assembled = assemble_pass(ctx, units.value)
        del units
        self.assembled.append(assembled.diagnostics)
        if has_errors(assembled.diagnostics):
            self.failed = self.failed or "assemble"
        if self.failed == "assemble" or assembled.value is None:
            return None
        pending = proxy_start(ctx, assembled.value)
        overlap = (rebuilt or self.idle) and executor.cores() > 1 and any(not p.done for p in pending)
        return _Flight(names, assembled.value, pending, overlap)

    def finish(self, flight: _Flight) -> list[tuple[str, EnvResult]]:
        """The proxy pass's results collected, then bundle: each environment with its bundle
        (none when a gate is closed)."""
        assert flight.assembled is not None
        proxied = proxy_collect(self.ctx, flight.assembled, flight.pending)
        flight.assembled, flight.pending = None, []
        self.proxied.append(proxied.diagnostics)
        if proxied.learned.envoy is not None:  # (spilled by the job when it had a spill file)
            memo = proxied.learned.envoy
            self.memos.append(memo if isinstance(memo, Spilled) else self.ctx.executor.spill("envoy", None, memo))
        self.checks.update(proxied.learned.checks or {})
        if has_errors(proxied.diagnostics):
            self.failed = self.failed or "proxy"
        if self.failed or proxied.value is None:
            return []
        result = bundle_pass(self.ctx, proxied.value).value
        assert result is not None
        return [(name, result.envs[name]) for name in flight.names]


def _only(prepared: Prepared, names: Sequence[str]) -> Prepared:
    """The estate's values restricted to some environments (the passes loop over what they get)."""
    merged = prepared.merged
    return Prepared(Merged(replace(merged.estate, envs={n: merged.estate.envs[n] for n in names}),
                           {n: merged.decls[n] for n in names}),
                    {n: prepared.settings[n] for n in names}, {n: prepared.expanders[n] for n in names})


# ----------------------------------------------------------------------------- pass helpers

@dataclass(frozen=True)
class ProxyJob:
    """What one environment's Envoy configuration is made of, sent as it is to the process that
    makes it: the environment's objects, its proxies, the last build's cluster memo, the check
    cache entries of the envoy layer, and where the memo entries used go (`memo_spill`: a file of
    the build's spill folder; None: they come back with the configuration)."""

    env: str
    manifests: list[Mapping[str, Any]]
    egress: Proxy
    groups: list[Proxy]
    gateway: Proxy | None = None
    memo: Mapping[str, bytes] | None = None
    options: ProxyOptions = ProxyOptions()
    checks: Mapping[tuple[str, ...], Any] | None = None
    memo_spill: Path | None = None


def proxy_job(env_result: EnvResult, memo: Mapping[str, bytes] | None = None,
              options: ProxyOptions = ProxyOptions(), checks: Mapping[tuple[str, ...], Any] | None = None,
              executor: Executor | None = None) -> ProxyJob:
    s = env_result.settings
    spill = executor.spill_path(f"envoy-{s.name}") if executor is not None and memo is not None else None
    return ProxyJob(s.name, [a.body for a in env_result.artifacts], egress_proxy(s),
                    workload_proxies(s, env_result.services), gateway_proxy(s), memo, options, checks, spill)


def proxy_config(env_result: EnvResult, memo: Mapping[str, bytes] | None = None,
                 options: ProxyOptions = ProxyOptions(),
                 checks: Mapping[tuple[str, ...], Any] | None = None
                 ) -> tuple[EnvoyConfig, Mapping[str, bytes], dict[tuple[str, ...], Any]]:
    """The Envoy files of an environment's proxies (the egress Envoy, each VM workload group and,
    when Gateways select it, the egress gateway) with their sources tables; the per-service
    cluster memo entries they used; and, with
    `options.check_envoy`, the check-cache entries the envoy layer computed reading `checks`
    (all for the cache)."""
    return envoy_config(proxy_job(env_result, memo, options, checks))


SPOOL_FROM = 256 << 10  # bytes: with a spool folder, an Envoy file this large goes there


def envoy_config(job: ProxyJob) -> tuple[EnvoyConfig, Mapping[str, bytes], dict[tuple[str, ...], Any]]:
    """`proxy_config` of a job. With a spool folder, the shared clusters file (~130 MB of JSON at
    10,000 services: written piece by piece as it is serialised) and every other file of at least
    SPOOL_FROM bytes go there (the writer links them into the bundle; `EnvoyConfig.files` reads
    them back on access), and each document is released once serialised: the largest files are
    never held twice, nor sent back."""
    used: dict[str, bytes] = {}
    built = build_proxy_files(job.manifests, job.egress, job.groups, job.memo,
                              used if job.memo is not None else None, job.gateway)
    spool = job.options.spool
    digest = hashlib.sha256()
    file: bytes | Spooled
    if spool is None:
        file = emit.json_bytes(built.files.pop(ENVOY_CLUSTERS))
        digest.update(file)
    else:  # written as it is serialised: never one buffer, not held while the dict is validated
        file = emit.spool(spool, f"{job.env}-envoy.json", emit.json_pieces(built.files.pop(ENVOY_CLUSTERS)), "",
                          digest)
    files: dict[str, bytes | Spooled] = {}
    for number, rel in enumerate(sorted(built.files)):
        blob = emit.json_bytes(built.files.pop(rel))
        digest.update(f"\0{rel}\0{len(blob)}\0".encode() + blob)
        if spool is not None and len(blob) >= SPOOL_FROM:
            files[rel] = emit.spool(spool, f"{job.env}-{number}.json", blob, hashlib.sha256(blob).hexdigest())
        else:
            files[rel] = blob
        del blob
    sha = digest.hexdigest()
    shadowed = emit.json_bytes(built.shadowed) if built.shadowed else b""
    kept: Mapping[str, bytes] = SpooledFiles(files) if any(isinstance(f, Spooled) for f in files.values()) \
        else {rel: blob for rel, blob in files.items() if isinstance(blob, bytes)}
    config = EnvoyConfig(file, sha, built.sources, None, kept, built.workload_sources, shadowed)
    memo: Mapping[str, bytes] = used
    if job.memo_spill is not None:
        try:
            memo = Spilled.write(job.memo_spill, "envoy", None, used.items())
        except OSError:
            pass  # kept in memory: saving the cache reports the folder
    if job.options.check_envoy:
        findings, learned = validate_config(built.bootstrap, config, job.checks)
        return replace(config, findings=findings), memo, learned
    return config, memo, {}


@functools.cache
def _passthrough_schema() -> Callable[[Mapping[str, Any]], Sequence[Finding]]:
    """The shipped CRD schemas (every release validates against them; docs/declarations.md), for
    pass-through objects before the proxy pass reads them (front.passthrough)."""
    return CrdSet.load(shipped_crds(schema_release(DEFAULT_ISTIO)), eager=False).validate


def shared_out(settings: EnvSettings, art: Artifact) -> UnitOut:
    """An environment-wide object as its own manifest file (`<namespace>/_<kind>-<name>.yaml`: a
    service name never starts with `_`), placed at env.yaml, or at its pass-through file."""
    path = emit.shared_file(art.identity)
    data, shas = emit.render_service([art])
    if art.source is not None:
        source = str(art.source).removeprefix("./")
    else:
        source = settings.source.file if settings.source is not None else ""
    return UnitOut(True, [art], [], path, data, tuple(emit.index_entry(a, path, sha, source) for a, sha in shas))


def bundle_for(env_result: EnvResult, outs: list[UnitOut],
               vm_files: dict[str, bytes] | None = None) -> Bundle:
    outs = [*outs, *env_result.shared]
    files = {out.file: out.data for out in outs if out.file}
    entries = [e for out in outs for e in out.entries]
    extra_files: dict[str, bytes | Spooled] = dict(vm_files or {})
    if env_result.envoy is not None:
        extra_files[ENVOY_CLUSTERS] = env_result.envoy.file
        extra_files.update(bundle_entries(env_result.envoy.files))
    source = env_result.settings.source
    extra = {"production": env_result.settings.production,
             "environmentSource": source.file if source is not None else ""}
    return emit.finish(env_result.settings.name, files, entries, extra, extra_files)


__all__ = ["PASSES", "CompileResult", "Context", "EnvResult", "EnvoyConfig", "Pass", "ProxyOptions", "Step",
           "Streamed", "UnitOut", "compile_estate", "compile_passes", "compile_streamed", "run_passes"]
