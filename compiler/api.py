"""One call per command. The CLI parses flags and prints; everything else happens here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

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


def build(root: Path, envs: Sequence[str] = (), out: Path | None = None) -> BuildOutcome:
    project, result = compile_repo(root, envs)
    outcome = BuildOutcome(result, list(result.diagnostics))
    if not outcome.ok:
        return outcome
    out_root = out if out is not None else project.resolve(project.out) or root / "out"
    for env in sorted(result.envs):
        bundle = result.envs[env].bundle
        assert bundle is not None
        outcome.written.append(write_bundle(out_root, bundle))
    return outcome
