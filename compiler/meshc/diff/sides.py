"""Resolving one side of `meshc diff` into bundles: a git ref, a repository, or bundle directories.

Input: the side as the user gave it (``None`` = the working tree at `root`), the repository root
and the environments asked for. Output: `Side`: per environment a `BundleView` plus whether it is
a production environment and where env.yaml is, and that side's masking rules (meshc.yaml).
Resolution order: an existing directory (holding environments/ -> compiled; holding index.json
or <env>/index.json -> read as bundles), else a git revision of the repository at `root`.
Invariants: a git ref is compiled from `git archive` output in a temporary directory that is
removed before returning; the working tree and the index are never touched; both sides are
compiled by this meshc. Failures raise `DiffError` (the CLI prints it and exits 2).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from meshc.api import compile_repo
from meshc.diff.model import SideInfo
from meshc.diff.objects import BundleView
from meshc.files.tree import DiskTree
from meshc.front.load import ROOT, list_envs
from meshc.front.project import load_project
from meshc.model.bundle import Spooled, content
from meshc.model.diagnostics import Diagnostic, has_errors


class DiffError(Exception):
    """An input problem: bad ref or directory, a side that does not compile, a bad ignore file."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = tuple(diagnostics)


class DirView:
    """A bundle directory on disk, read lazily."""

    def __init__(self, env: str, root: Path) -> None:
        self.env, self.root = env, root

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())


class MemView:
    """A bundle compiled in memory (path -> bytes, or a file spooled to disk)."""

    def __init__(self, env: str, files: Mapping[str, bytes | Spooled]) -> None:
        self.env, self.files = env, files

    def read(self, rel: str) -> bytes:
        try:
            return content(self.files[rel])
        except KeyError:
            raise FileNotFoundError(rel) from None

    def list(self, prefix: str) -> list[str]:
        return sorted(p for p in self.files if p.startswith(prefix.rstrip("/") + "/"))


@dataclass(frozen=True)
class EnvData:
    view: BundleView
    production: bool = False
    source: str = ""
    index: Mapping[str, Any] | None = field(default=None, repr=False)   # when already parsed


@dataclass(frozen=True)
class Side:
    info: SideInfo
    envs: Mapping[str, EnvData]
    mask_rules: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = field(default=())


def resolve_side(spec: str | None, role: str, root: Path, envs: Sequence[str]) -> Side:
    if spec is None:
        return compile_side(root, SideInfo("working tree", "worktree"), role, envs)
    path = Path(spec)
    if path.is_dir():
        if (path / ROOT).is_dir():
            return compile_side(path, SideInfo(spec, "repo"), role, envs)
        return bundle_side(path, SideInfo(spec, "bundle"), role, envs)
    return git_side(spec, role, root, envs)


def compile_side(root: Path, info: SideInfo, role: str, envs: Sequence[str]) -> Side:
    available = list_envs(DiskTree(root))
    chosen = [e for e in envs if e in available] if envs else available
    masks = load_mask_rules(root)
    if not chosen:
        return Side(info, {}, masks)
    # a tree unpacked from git is compiled without any build cache it might carry
    _, result = compile_repo(root, chosen, use_cache=info.kind != "git")
    if has_errors(result.diagnostics):
        raise DiffError(f"the {role} side ({info.label}) does not compile", result.diagnostics)
    out: dict[str, EnvData] = {}
    for name, env in sorted(result.envs.items()):
        assert env.bundle is not None
        source = env.settings.source
        where = str(source.position).removeprefix("./") if source is not None else ""
        out[name] = EnvData(MemView(name, env.bundle.files), env.settings.production, where)
    return Side(info, out, masks)


def load_mask_rules(root: Path) -> tuple[Mapping[str, Any], ...]:
    project, diags = load_project(root)
    if has_errors(diags):
        raise DiffError(f"cannot read {root / 'meshc.yaml'}", diags)
    rules = (project.diff or {}).get("mask") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) and "path" in r for r in rules):
        raise DiffError("meshc.yaml diff.mask must be a list of {kind, path} mappings")
    return tuple(rules)


def bundle_side(path: Path, info: SideInfo, role: str, envs: Sequence[str]) -> Side:
    if (path / "index.json").is_file():
        dirs = [path]
    else:
        dirs = sorted(p.parent for p in path.glob("*/index.json") if not p.parent.name.startswith("."))
    if not dirs:
        raise DiffError(f"the {role} side {info.spec!r} is a directory holding neither environments/ "
                        "nor a bundle (index.json or <env>/index.json)")
    out: dict[str, EnvData] = {}
    for directory in dirs:
        try:
            index = orjson.loads((directory / "index.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise DiffError(f"the {role} side: cannot read {directory / 'index.json'}: {exc}") from None
        name = str(index.get("environment") or directory.name)
        if not envs or name in envs:
            out[name] = EnvData(DirView(name, directory), bool(index.get("production", False)),
                                str(index.get("environmentSource", "")), index)
    return Side(info, out)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)


def git_side(spec: str, role: str, root: Path, envs: Sequence[str]) -> Side:
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise DiffError(f"the {role} side {spec!r} is not a directory, and {root} is not in a git "
                        "repository, so it cannot be a git ref either")
    found = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{spec}^{{commit}}")
    if found.returncode != 0 or spec.startswith("-"):
        raise DiffError(f"the {role} side {spec!r} is neither a directory nor a git revision "
                        f"(commit, branch or tag) of the repository at {top.stdout.decode().strip()}")
    commit = found.stdout.decode().strip()
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.decode().strip()
    info = SideInfo(spec, "git", commit)
    with tempfile.TemporaryDirectory(prefix="meshc-diff-") as tmp:
        _extract(Path(top.stdout.decode().strip()), commit, Path(tmp))
        repo = Path(tmp) / prefix
        if not (repo / ROOT).is_dir():
            return Side(info, {}, (), (f"{role} {info.label} has no {ROOT}/: treated as empty",))
        return compile_side(repo, info, role, envs)


def _extract(top: Path, commit: str, dest: Path) -> None:
    """The tree of `commit` in `dest`, as data: a link that leaves the tree (absolute, or `..` past
    its root) is refused by name, never followed."""
    archive = _git(top, "archive", "--format=tar", commit)
    if archive.returncode != 0:
        raise DiffError(f"git archive {commit} failed: {archive.stderr.decode().strip()}")
    refused: list[str] = []

    def data_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            refused.append(member.name)
            return None

    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter=data_only)
    if refused:
        listed = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise DiffError(f"{commit[:12]}: the tree holds links that leave the repository ({listed}); meshc "
                        "compiles a git ref only from files inside it: replace the links with the files, "
                        "or compare against a ref without them")
