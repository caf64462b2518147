"""One call per command. The CLI parses flags and prints; everything else happens here."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from meshc import __version__
from meshc.check.common import CheckKey
from meshc.check.cue import fast as cue_fast
from meshc.check.cue import layer as cue_layer
from meshc.check.layers import LAYERS, CheckInputError, CheckOptions, check_run, parse_layers
from meshc.check.lint import lint_docs, read_inputs
from meshc.check.schema.crd import CrdError, CrdSet
from meshc.check.waivers import apply_waivers, load_waivers
from meshc.emit.bundle import Staged, stage_bundle
from meshc.emit.write import cache_error as _cache_error
from meshc.emit.write import discard, write_error, write_staged
from meshc.emit.write import why as _why
from meshc.expand.templating import BUILTIN_TEMPLATES, template_fingerprint
from meshc.files.confine import ConfinementError, list_files
from meshc.files.tree import DiskTree, MemoryTree
from meshc.front.load import list_envs
from meshc.front.project import Project, load_project
from meshc.model.diagnostics import Diagnostic, Position, Severity, has_errors
from meshc.model.results import EnvResult
from meshc.pipeline import CompileResult, ProxyOptions, compile_estate, compile_streamed
from meshc.runtime import faults, outdir
from meshc.runtime.cache import CACHE_DIR, BuildCache, inputs_key
from meshc.runtime.workers import Forkserver


@dataclass
class BuildOutcome:
    """A build's diagnostics and the folders it wrote; `result` holds the compile's diagnostics and
    cache (a build does not keep its environments: each was checked, staged and released)."""

    result: CompileResult
    diagnostics: list[Diagnostic] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    up_to_date: bool = False

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _templates(project: Project) -> list[Path]:
    path = project.resolve(project.templates)
    return [path] if path is not None else []


def code_fingerprint() -> bytes:
    """meshc's own code, built-in templates and shipped schemas: a cache from other code is never reused."""
    h = hashlib.sha256(__version__.encode())
    here = Path(__file__).parent
    for path in (sorted(here.rglob("*.py")) + sorted(BUILTIN_TEMPLATES.glob("*.j2"))
                 + sorted((here / "data").glob("*.json"))):
        h.update(path.relative_to(here).as_posix().encode() + path.read_bytes())
    return h.digest()


def compile_repo(root: Path, envs: Sequence[str] = (), use_cache: bool = True,
                 progress: Callable[[str], None] | None = None,
                 proxy: ProxyOptions | None = None) -> tuple[Project, CompileResult]:
    project, diags = load_project(root)
    if has_errors(diags):
        result = CompileResult()
        result.diagnostics.extend(diags)
        return project, result
    templates = _templates(project)
    cache = _open_cache(root, project, use_cache)
    result = compile_estate(DiskTree(root), envs or None, templates, cache,
                            progress=progress or (lambda _m: None), proxy=proxy or ProxyOptions())
    if cache is not None:
        result.diagnostics.extend(_cache_notes(cache))
        result.cache = cache
    return project, result


def _cache_notes(cache: BuildCache) -> list[Diagnostic]:
    return [Diagnostic("K001", Severity.INFO, note, Position(CACHE_DIR), hint=fix) for note, fix in cache.notes]


def _open_cache(root: Path, project: Project, use_cache: bool) -> BuildCache | None:
    return BuildCache.open(root, code_fingerprint() + template_fingerprint(_templates(project), root)) \
        if use_cache else None


def compile_files(project: Project, files: Mapping[str, bytes], envs: Sequence[str] = (),
                  until: str = "bundle") -> CompileResult:
    """An estate held in memory (repository path -> bytes) compiled with `project`'s templates,
    without a cache, up to the pass `until`: what `meshc import` proposes, compiled before
    anything is written."""
    return compile_estate(MemoryTree(files), envs or None, _templates(project), None, until=until)


def _input_files(project: Project) -> list[str]:
    """Every file a build reads, listed as confined readers see them; a listing meshc refuses
    (a link out of the repository, a name with control characters) gives a list no build record
    matches, so the build runs and reports it."""
    root = project.root
    try:
        paths = [p for p in DiskTree(root).list("environments")] if (root / "environments").is_dir() else []
        for extra in (project.templates, project.policies):
            d = project.resolve(extra)
            if d is not None and (d.is_dir() or d.is_symlink()):
                paths.extend(p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
                             for p in list_files(root, d))
    except ConfinementError as exc:
        return [f"\0refused: {exc}"]
    for single in (project.crds, project.waivers, Path("meshc.yaml")):
        f = project.resolve(single)
        if f is not None and f.is_file():
            paths.append(str(f))
    return paths


@dataclass
class CheckOutcome:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    waived: list[Diagnostic] = field(default_factory=list)
    input_error: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def check_options(project: Project, layers: Sequence[str] = (), crds: Path | None = None,
                  envoy_binary: bool = False) -> CheckOptions:
    crds_at = None if crds is not None else (project.where("crds") if project.crds is not None else None)
    return CheckOptions(layers=parse_layers(layers), crds=crds or project.crd_file(), crds_at=crds_at,
                        policies=project.resolve(project.policies), repo_root=project.root,
                        envoy_binary=envoy_binary, releases=project.releases)


def check_compiled(project: Project, result: CompileResult, opts: CheckOptions,
                   today: dt.date | None = None) -> CheckOutcome:
    """The check pass over a compile result, then waivers. Input errors set `input_error`."""
    outcome = CheckOutcome(list(result.diagnostics))
    if result.cache is not None and opts.cache is None:
        opts = replace(opts, cache=result.cache.checks)
    if has_errors(result.diagnostics):
        outcome.input_error = True
        return outcome
    try:
        run = check_run(result, opts)
        outcome.diagnostics.extend(run.diagnostics)
        outcome.timings = run.timings
        if result.cache is not None and opts.cache is result.cache.checks:
            result.cache.checks.update(run.learned)  # the check pass's delta, kept for the next build
    except CheckInputError as exc:
        outcome.diagnostics.extend(exc.diags)
        outcome.input_error = True
        return outcome
    return _waive(project, opts, outcome, list(result.envs), today)


def _waive(project: Project, opts: CheckOptions, outcome: CheckOutcome, envs: Sequence[str],
           today: dt.date | None) -> CheckOutcome:
    """The waivers pass over a check's diagnostics (`envs`: the environments checked)."""
    waiver_path = project.resolve(project.waivers)
    if waiver_path is not None:
        waivers, problems = load_waivers(waiver_path, str(project.waivers))
        if problems:
            outcome.diagnostics.extend(problems)
            outcome.input_error = True
            return outcome
        complete = set(opts.layers) == set(LAYERS) and set(envs) == set(list_envs(DiskTree(project.root)))
        outcome.diagnostics, outcome.waived = apply_waivers(
            outcome.diagnostics, waivers, today or dt.date.today(), complete)
    return outcome


def check(root: Path, envs: Sequence[str] = (), layers: Sequence[str] = (),
          crds: Path | None = None, today: dt.date | None = None,
          envoy_binary: bool = False, use_cache: bool = True) -> CheckOutcome:
    proxy = ProxyOptions(check_envoy="envoy" in parse_layers(layers))
    project, result = compile_repo(root, envs, use_cache, proxy=proxy)
    outcome = check_compiled(project, result, check_options(project, layers, crds, envoy_binary), today)
    if result.cache is not None:
        result.cache.save()
    return outcome


def build(root: Path, envs: Sequence[str] = (), out: Path | None = None,
          checks: bool = True, use_cache: bool = True,
          progress: Callable[[str], None] | None = None) -> BuildOutcome:
    """Compile and write one bundle per environment into the output folder, one build at a time
    per folder (`outdir`: lock, atomic swap, record of the last build, leftovers of killed builds)."""
    project, problems = load_project(root)
    if has_errors(problems):  # reported by the compile; the output folder is not even made
        _, result = compile_repo(root, envs, use_cache, progress)
        return BuildOutcome(result, list(result.diagnostics))
    out_root = out if out is not None else project.resolve(project.out) or root / "out"
    key = inputs_key(root, _input_files(project), code_fingerprint() + repr(
        (sorted(envs), checks, str(out_root.resolve()))).encode())
    try:
        with outdir.locked(out_root, progress):
            outdir.clean_out(out_root)
            if use_cache:
                outdir.clean_cache(root)
            outcome = _locked_build(root, envs, out_root, key, checks, use_cache, progress,
                                    use_cache and not problems)
    except outdir.Busy as exc:
        return _failed("B002", f"another meshc build is writing {exc.folder}: {exc.holder}; "
                               f"waited {exc.waited:.0f} s",
                       f"let it finish and build again, or set {outdir.LOCK_TIMEOUT_ENV} (seconds) to wait "
                       f"longer; two builds never write the same output folder at once")
    except outdir.Unusable as exc:
        return _failed("B001", f"cannot write the output folder {out_root}: {_why(exc.error)}",
                       "make it (or meshc.yaml's out:, or --out) a folder meshc can create and write; "
                       "nothing in it was changed")
    faults.point("build.done")
    return outcome


def _locked_build(root: Path, envs: Sequence[str], out_root: Path, key: str, checks: bool,
                  use_cache: bool, progress: Callable[[str], None] | None,
                  shortcut: bool) -> BuildOutcome:
    notes: list[Diagnostic] = []
    if shortcut:
        current, changed = _up_to_date(root, key, out_root)
        if current:
            return BuildOutcome(CompileResult(), up_to_date=True)
        if changed:
            notes.append(Diagnostic("B005", Severity.INFO, f"no input changed, but {changed} since the "
                                                           "last build: rebuilding"))
    try:
        spool = Path(tempfile.mkdtemp(prefix=f".meshc-spool-{os.getpid()}-", dir=_spool_parent(root, use_cache)))
        mark = outdir.claim(spool)  # a live build's spool, even seen from another PID namespace
    except OSError as exc:
        return _cache_failed(root, exc)
    faults.point("spool.dir")
    try:
        outcome = _build(root, envs, out_root, key, checks, use_cache, progress,
                         ProxyOptions(spool=spool, check_envoy=checks))
    finally:
        faults.point("spool.remove")
        shutil.rmtree(spool, ignore_errors=True)
        os.close(mark)
    outcome.diagnostics[:0] = notes
    return outcome


def _spool_parent(root: Path, use_cache: bool) -> Path | None:
    """Where large bundle files wait to be linked into place: the cache directory (usually on
    the output's filesystem), else the system's temporary directory."""
    if not use_cache:
        return None
    path = root / CACHE_DIR
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():  # meshc's working folder in a repository is never committed
        faults.point("cache.gitignore")
        part = ignore.with_name(f".gitignore.tmp-{os.getpid()}")
        part.write_text("*\n")
        part.replace(ignore)
    return path


def _build(root: Path, envs: Sequence[str], out_root: Path, key: str, checks: bool, use_cache: bool,
           progress: Callable[[str], None] | None, proxy: ProxyOptions) -> BuildOutcome:
    """Compile, check and stage one environment at a time (`pipeline.compile_streamed`: each is
    released before the next is compiled), then waivers, save the cache; then, with no error:
    delete the record of out_root, swap every staged bundle in, write the record. Killed
    anywhere, out/<env> is the whole old or the whole new bundle and no record claims a bundle
    that is not there; on any error no out/<env> changes (the staged bundles are removed)."""
    project, problems = load_project(root)
    if has_errors(problems):  # build() reports these before taking the lock
        return BuildOutcome(CompileResult(diagnostics=list(problems)), list(problems))
    with Forkserver() as server:  # forked before the cache is read: its jobs never hold it
        cache = _open_cache(root, project, use_cache)
        opts = check_options(project) if checks else None
        if opts is not None and cache is not None:  # a rebuild leaves a core to start the CUE engine on
            cue_layer.prestart(opts, cache.checks)
        try:
            return _streamed_build(root, project, envs, out_root, key, opts, cache, progress, proxy, server)
        finally:
            cue_fast.discard()  # an engine started and not needed


def _streamed_build(root: Path, project: Project, envs: Sequence[str], out_root: Path, key: str,
                    opts: CheckOptions | None, cache: BuildCache | None, progress: Callable[[str], None] | None,
                    proxy: ProxyOptions, server: Forkserver) -> BuildOutcome:
    checks = opts is not None
    stager = _Stager(project, out_root, opts, cache, progress)
    try:
        streamed = compile_streamed(DiskTree(root), stager, envs or None, _templates(project), cache,
                                    progress=progress or (lambda _m: None), proxy=proxy, server=server,
                                    meanwhile=stager.assembled if checks else None)
        if streamed.bundled:
            stager.flush()
        result = CompileResult(diagnostics=streamed.diagnostics + (_cache_notes(cache) if cache else []),
                               cache=cache)
        outcome = BuildOutcome(result, list(result.diagnostics))
        if outcome.ok and checks:
            outcome.diagnostics = stager.checked(result.diagnostics, streamed.envs).diagnostics
        if cache is not None:
            try:
                cache.save()
            except OSError as exc:
                outcome.diagnostics.append(_cache_error(root, exc))
                return outcome
        if not outcome.ok:
            return outcome
        if stager.failed is not None:
            outcome.diagnostics.append(write_error(out_root, stager.failed, []))
            return outcome
        written, problems = write_staged(root, out_root, stager.take(), key if cache is not None else None,
                                         progress)
        outcome.written.extend(written)
        outcome.diagnostics.extend(problems)
        return outcome
    finally:
        stager.discard()  # what was staged and not swapped in (everything, after an error)
        if cache is not None:
            cache.drop_spills()


BATCH_OBJECTS = 8000  # compiled objects a build holds for one check run before it checks and stages them
ENVOY_LAYER = "envoy"  # the layer that checks the proxy pass's output; the others check the objects


class _Stager:
    """The sink of a streamed build. An environment of at least BATCH_OBJECTS objects is checked
    on its own: the object layers while its Envoy configuration is being made (`assembled`), the
    envoy layer when it is bundled; then its bundle is staged beside out/<env> and it is
    released. Smaller ones are held until they reach BATCH_OBJECTS together (a small estate: all
    of them, so the check layers' fixed costs, the CUE engines, are paid once), then checked
    together, staged and released. The layers see environments in compile order. It keeps the
    findings (per layer), what the checks learned for the cache and the staged folders."""

    def __init__(self, project: Project, out_root: Path, opts: CheckOptions | None, cache: BuildCache | None,
                 progress: Callable[[str], None] | None) -> None:
        self.project, self.out_root, self.progress = project, out_root, progress or (lambda _m: None)
        self.learned: dict[CheckKey, Any] = {}
        if opts is not None and cache is not None and opts.cache is None:
            # what this build learned first, then the last build's: as one check run reads them
            opts = replace(opts, cache=ChainMap(self.learned, cache.checks))
        self.opts, self.cache = opts, cache
        self.held: dict[str, EnvResult] = {}
        self.early: set[str] = set()  # environments whose object layers ran while their proxy pass did
        self.found: dict[str, list[Diagnostic]] = {}  # layer -> findings, check run after check run
        self.input_error: list[Diagnostic] | None = None
        self.staged: dict[str, Staged] = {}
        self.failed: OSError | None = None
        self.runs: list[tuple[tuple[str, ...], tuple[str, ...]]] = []  # (environments, layers) of each check run

    def assembled(self, name: str, env: EnvResult) -> None:
        """An environment whose Envoy configuration is being made: when it is large, the held
        environments (compiled before it) are checked and staged, then its object layers run."""
        if self.opts is None or len(env.artifacts) < BATCH_OBJECTS:
            return
        self.flush()
        self.progress(f"checking {name}")
        self._check({name: env}, tuple(layer for layer in self.opts.layers if layer != ENVOY_LAYER))
        self.early.add(name)

    def __call__(self, name: str, env: EnvResult) -> None:
        faults.point("build.compiled", name)
        if name in self.early:
            assert self.opts is not None
            self._check({name: env}, tuple(layer for layer in self.opts.layers if layer == ENVOY_LAYER))
            self._stage(name, env)
            return
        self.held[name] = env
        if sum(len(e.artifacts) for e in self.held.values()) >= BATCH_OBJECTS:
            self.flush()

    def flush(self) -> None:
        """Check the environments held (every layer), stage their bundles, release them."""
        if not self.held:
            return
        held, self.held = self.held, {}
        if self.opts is not None:
            self.progress(f"checking {', '.join(held)}")
            self._check(held, self.opts.layers)
        for name in list(held):
            self._stage(name, held.pop(name))

    def _stage(self, name: str, env: EnvResult) -> None:
        faults.point("build.checked", name)
        if self.input_error is None and self.failed is None and env.bundle is not None:
            self.progress(f"staging {name}")
            try:
                self.staged[name] = stage_bundle(self.out_root, env.bundle)
            except OSError as exc:  # reported only when the build has no other error, as a write's
                self.failed = exc

    def _check(self, envs: dict[str, EnvResult], layers: tuple[str, ...]) -> None:
        assert self.opts is not None
        if self.input_error is not None or not layers:
            return
        self.runs.append((tuple(envs), layers))
        batch = CompileResult(envs=envs)
        try:
            for layer in layers:
                run = check_run(batch, replace(self.opts, layers=(layer,)))
                self.learned.update(run.learned)
                self.found.setdefault(layer, []).extend(run.diagnostics)
        except CheckInputError as exc:
            self.input_error = exc.diags

    def checked(self, compiled: list[Diagnostic], envs: Sequence[str], today: dt.date | None = None) -> CheckOutcome:
        """What `check_compiled` gives for the whole build: the compile's diagnostics, every
        layer's findings (layer by layer; within a layer, environments in the order the layer
        reports them: by name for cue, which the batches keep with a stable sort, else as
        compiled), then waivers."""
        assert self.opts is not None
        outcome = CheckOutcome(list(compiled))
        if self.input_error is not None:
            outcome.diagnostics.extend(self.input_error)
            outcome.input_error = True
            return outcome
        for layer in self.opts.layers:
            found = self.found.get(layer, [])
            outcome.diagnostics.extend(sorted(found, key=lambda d: d.env) if layer == "cue" else found)
        if self.cache is not None:
            self.cache.checks.update(self.learned)  # the check pass's delta, kept for the next build
        return _waive(self.project, self.opts, outcome, envs, today)

    def take(self) -> dict[str, Staged]:
        """The staged bundles, now the caller's to swap in."""
        staged, self.staged = self.staged, {}
        return staged

    def discard(self) -> None:
        self.held = {}
        self.early.clear()
        discard(self.staged.values())
        self.staged = {}


def _up_to_date(root: Path, key: str, out_root: Path) -> tuple[bool, str]:
    """True when the last build recorded for out_root had these inputs and every bundle file it
    wrote is on disk unchanged (same set of files, same sha256); else False and, when only the
    files differ, what differs."""
    record = outdir.read_record(root, out_root)
    if record is None or record.key != key:
        return False, ""
    changed = outdir.verify(out_root, record.envs)
    return changed is None, changed or ""


def _failed(code: str, message: str, hint: str) -> BuildOutcome:
    return BuildOutcome(CompileResult(), [Diagnostic(code, Severity.ERROR, message, hint=hint)])


def _cache_failed(root: Path, exc: OSError) -> BuildOutcome:
    return BuildOutcome(CompileResult(), [_cache_error(root, exc)])


def lint(root: Path, paths: Sequence[str], crds: Path | None = None) -> CheckOutcome:

    project, _ = load_project(root)
    inputs = read_inputs(paths)
    outcome = CheckOutcome(list(inputs.errors), input_error=has_errors(inputs.errors))
    crd_path = crds or project.crd_file()
    try:
        crd_set = CrdSet.load(crd_path, eager=crds is not None or project.crds is not None)
    except CrdError as exc:
        outcome.diagnostics.append(Diagnostic("C002", Severity.ERROR, str(exc), Position(str(crd_path)),
                                              hint="pass --crds with a valid CRD file, or leave it out to use "
                                                   "the shipped schemas"))
        outcome.input_error = True
        return outcome
    outcome.diagnostics.extend(lint_docs(inputs.docs, crd_set))
    return outcome
