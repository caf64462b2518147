"""One call per command. The CLI parses flags and prints; everything else happens here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .check import CheckInputError, CheckOptions, parse_layers, run_checks
from .waivers import apply_waivers, load_waivers

from .diagnostics import Diagnostic, has_errors
from .emit import write_bundle
from .pipeline import CompileResult, compile_estate


from .project import Project, load_project
from .tree import DiskTree


@dataclass
class BuildOutcome:
    result: CompileResult
    diagnostics: list[Diagnostic] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _templates(project: Project) -> list[Path]:
    path = project.resolve(project.templates)
    return [path] if path is not None else []


def compile_repo(root: Path, envs: Sequence[str] = ()) -> tuple[Project, CompileResult]:
    project, diags = load_project(root)
    if has_errors(diags):
        result = CompileResult()
        result.diagnostics.extend(diags)
        return project, result
    result = compile_estate(DiskTree(root), envs or None, _templates(project))
    return project, result


@dataclass
class CheckOutcome:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    waived: list[Diagnostic] = field(default_factory=list)
    input_error: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def check_options(project: Project, layers: Sequence[str] = (), crds: Path | None = None) -> CheckOptions:
    return CheckOptions(layers=parse_layers(layers), crds=crds or project.resolve(project.crds),
                        policies=project.resolve(project.policies), repo_root=project.root)


def check_compiled(project: Project, result: CompileResult, opts: CheckOptions,
                   today: dt.date | None = None) -> CheckOutcome:
    """The check pass over a compile result, then waivers. Input errors set `input_error`."""
    outcome = CheckOutcome(list(result.diagnostics), timings=opts.timings)
    if has_errors(result.diagnostics):
        outcome.input_error = True
        return outcome
    try:
        outcome.diagnostics.extend(run_checks(result, opts))
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
        outcome.diagnostics, outcome.waived = apply_waivers(
            outcome.diagnostics, waivers, today or dt.date.today())
    return outcome


def check(root: Path, envs: Sequence[str] = (), layers: Sequence[str] = (),
          crds: Path | None = None, today: dt.date | None = None) -> CheckOutcome:
    project, result = compile_repo(root, envs)
    return check_compiled(project, result, check_options(project, layers, crds), today)


def build(root: Path, envs: Sequence[str] = (), out: Path | None = None,
          checks: bool = True) -> BuildOutcome:
    project, result = compile_repo(root, envs)
    outcome = BuildOutcome(result, list(result.diagnostics))
    if outcome.ok and checks:
        checked = check_compiled(project, result, check_options(project))
        outcome.diagnostics = checked.diagnostics
    if not outcome.ok:
        return outcome
    out_root = out if out is not None else project.resolve(project.out) or root / "out"
    for env in sorted(result.envs):
        bundle = result.envs[env].bundle
        assert bundle is not None
        outcome.written.append(write_bundle(out_root, bundle))
    return outcome


def lint(root: Path, paths: Sequence[str], crds: Path | None = None) -> CheckOutcome:
    from .crd import CrdError, CrdSet
    from .diagnostics import Position, Severity
    from .lint import lint_docs, read_inputs

    project, _ = load_project(root)
    inputs = read_inputs(paths)
    outcome = CheckOutcome(list(inputs.errors), input_error=bool(inputs.errors))
    crd_path = crds or project.resolve(project.crds)
    crd_set = None
    if crd_path is not None:
        try:
            crd_set = CrdSet.load(crd_path)
        except CrdError as exc:
            outcome.diagnostics.append(Diagnostic("C002", Severity.ERROR, str(exc), Position(str(crd_path)),
                                                  hint="pass --crds with a valid CRD file"))
            outcome.input_error = True
            return outcome
    outcome.diagnostics.extend(lint_docs(inputs.docs, crd_set))
    return outcome
