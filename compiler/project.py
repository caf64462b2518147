"""Project settings: meshc.yaml at the repository root (all keys optional).

    crds: ../shared/schemas/istio-crds.yaml   # CRDs of the Istio release you run
    templates: templates                      # your template overrides, by file name
    policies: policies                        # CUE policies
    out: out                                  # where bundles are written
    waivers: waivers.yaml
    diff: {ignoreFile: .meshc-diffignore, mask: [...]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .diagnostics import Diagnostic, Position, Severity
from .source import parse

CONFIG_FILE = "meshc.yaml"
_KEYS = {"crds", "templates", "policies", "out", "waivers", "diff"}


@dataclass(frozen=True)
class Project:
    root: Path
    crds: Path | None = None
    templates: Path | None = None
    policies: Path | None = None
    out: Path = Path("out")
    waivers: Path | None = None
    diff: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else self.root / p)


def load_project(root: Path) -> tuple[Project, list[Diagnostic]]:
    path = root / CONFIG_FILE
    if not path.exists():
        return Project(root, templates=Path("templates"), policies=Path("policies")), []
    docs, diags = parse(CONFIG_FILE, path.read_bytes())
    if diags:
        return Project(root), diags
    raw = docs[0].value if docs and isinstance(docs[0].value, dict) else {}
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        return Project(root), [Diagnostic("C001", Severity.ERROR, f"unknown key {unknown[0]!r} in meshc.yaml",
                                          Position(CONFIG_FILE, 1, 1), hint=f"known keys: {', '.join(sorted(_KEYS))}")]

    def opt(key: str, default: str | None = None) -> Path | None:
        value = raw.get(key, default)
        return Path(str(value)) if value is not None else None

    return Project(root, crds=opt("crds"), templates=opt("templates", "templates"),
                   policies=opt("policies", "policies"), out=Path(str(raw.get("out", "out"))),
                   waivers=opt("waivers"), diff=raw.get("diff") or {}), []
