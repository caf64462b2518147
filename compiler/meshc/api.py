"""One call per command. The CLI parses flags and prints; everything else happens here."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from meshc import __version__
from meshc.check.layers import LAYERS, CheckInputError, CheckOptions, check_run, parse_layers
from meshc.check.lint import lint_docs, read_inputs
from meshc.check.schema.crd import CrdError, CrdSet
from meshc.check.waivers import apply_waivers, load_waivers
from meshc.emit.write import cache_error as _cache_error
from meshc.emit.write import why as _why
from meshc.emit.write import write_bundles
from meshc.expand.templating import BUILTIN_TEMPLATES, template_fingerprint
from meshc.files.confine import ConfinementError, list_files
from meshc.files.tree import DiskTree, MemoryTree
from meshc.front.load import list_envs
from meshc.front.project import Project, load_project
from meshc.model.diagnostics import Diagnostic, Position, Severity, has_errors
from meshc.pipeline import CompileResult, ProxyOptions, compile_estate
from meshc.runtime import faults, outdir
from meshc.runtime.cache import CACHE_DIR, BuildCache, inputs_key


@dataclass
class BuildOutcome:
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
    cache = BuildCache.open(root, code_fingerprint() + template_fingerprint(templates, root)) if use_cache else None
    result = compile_estate(DiskTree(root), envs or None, templates, cache,
                            progress=progress or (lambda _m: None), proxy=proxy or ProxyOptions())
    if cache is not None:
        result.diagnostics.extend(Diagnostic("K001", Severity.INFO, note, Position(CACHE_DIR), hint=fix)
                                  for note, fix in cache.notes)
    if cache is not None:
        result.cache = cache
    return project, result


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
    waiver_path = project.resolve(project.waivers)
    if waiver_path is not None:
        waivers, problems = load_waivers(waiver_path, str(project.waivers))
        if problems:
            outcome.diagnostics.extend(problems)
            outcome.input_error = True
            return outcome
        complete = set(opts.layers) == set(LAYERS) and set(result.envs) == set(list_envs(DiskTree(project.root)))
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
    """Compile, check, save the cache; then, with no error: delete the record of out_root, swap
    each environment's bundle in, write the record. Killed anywhere, out/<env> is the whole old
    or the whole new bundle and no record claims a bundle that is not there."""
    project, result = compile_repo(root, envs, use_cache, progress, proxy)
    faults.point("build.compiled")
    outcome = BuildOutcome(result, list(result.diagnostics))
    if outcome.ok and checks:
        if progress:
            progress("checking")
        checked = check_compiled(project, result, check_options(project))
        outcome.diagnostics = checked.diagnostics
    faults.point("build.checked")
    cache = result.cache
    if cache is not None:
        try:
            cache.save()
        except OSError as exc:
            outcome.diagnostics.append(_cache_error(root, exc))
            return outcome
    if not outcome.ok:
        return outcome
    bundles = {env: result.envs[env].bundle for env in sorted(result.envs)}
    written, problems = write_bundles(root, out_root, bundles, key if use_cache else None, progress)
    outcome.written.extend(written)
    outcome.diagnostics.extend(problems)
    return outcome


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
