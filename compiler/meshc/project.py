"""Project settings: meshc.yaml at the repository root (all keys optional).

    istio: "1.31"                             # the Istio release the estate targets (default: the shipped one)
    crds: path/to/crds.yaml                   # your own CRDs (`kubectl get crd -o yaml`); default: shipped
    templates: templates                      # your template overrides, by file name
    policies: policies                        # CUE policies
    out: out                                  # where bundles are written
    waivers: waivers.yaml
    diff: {ignoreFile: .meshc-diffignore, mask: [...]}

Codes: C001 meshc.yaml is malformed (unknown key, wrong type), C005 an Istio release meshc does
not ship (README "Istio CRD schemas").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .diagnostics import Diagnostic, Position, Severity
from .release import DEFAULT_ISTIO, shipped_crds, shipped_releases
from .source import locate, parse

CONFIG_FILE = "meshc.yaml"
_KEYS = {"istio", "crds", "templates", "policies", "out", "waivers", "diff"}
_PATH_KEYS = ("crds", "templates", "policies", "out", "waivers")
SCHEMA_HELP = "README.md#istio-crd-schemas"


@dataclass(frozen=True)
class Project:
    root: Path
    crds: Path | None = None
    templates: Path | None = None
    policies: Path | None = None
    out: Path = Path("out")
    waivers: Path | None = None
    diff: Mapping[str, Any] = field(default_factory=dict)
    istio: str = DEFAULT_ISTIO
    positions: Mapping[str, Position] = field(default_factory=dict)

    def resolve(self, p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else self.root / p)

    def crd_file(self) -> Path:
        """The CRDs the schema layer validates against: the user's when `crds:` names a file
        (they win), else the schemas meshc ships for the target release."""
        own = self.resolve(self.crds)
        return own if own is not None else shipped_crds(self.istio)

    def where(self, key: str) -> Position:
        return self.positions.get(key, Position(CONFIG_FILE, 1, 1))


def load_project(root: Path) -> tuple[Project, list[Diagnostic]]:
    path = root / CONFIG_FILE
    if not path.exists():
        return Project(root, templates=Path("templates"), policies=Path("policies")), []
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Project(root), [Diagnostic("C001", Severity.ERROR, f"cannot read meshc.yaml: {exc.strerror or exc}",
                                          Position(CONFIG_FILE), hint="make meshc.yaml a readable file")]
    docs, diags = parse(CONFIG_FILE, data)
    if diags:
        return Project(root), diags
    doc = docs[0] if docs else None
    raw = doc.value if doc is not None else None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return Project(root), [Diagnostic("C001", Severity.ERROR, "meshc.yaml must be a mapping of settings",
                                          Position(CONFIG_FILE, 1, 1), hint="see docs/declarations.md#project-settings")]

    def at(key: str, on_key: bool = False) -> Position:
        if doc is None or doc.node is None:
            return Position(CONFIG_FILE, 1, 1)
        return locate(CONFIG_FILE, doc.node, (key,), on_key=on_key)[0]

    problems: list[Diagnostic] = []
    for key in sorted(set(raw) - _KEYS):
        problems.append(Diagnostic("C001", Severity.ERROR, f"unknown key {key!r} in meshc.yaml", at(key, True),
                                   hint=f"known keys: {', '.join(sorted(_KEYS))}"))
    for key in _PATH_KEYS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(Diagnostic("C001", Severity.ERROR, f"{key}: must be a path (a non-empty string)",
                                       at(key), hint=f"write e.g. `{key}: {_EXAMPLE[key]}`, or remove the key"))
    if raw.get("diff") is not None and not isinstance(raw.get("diff"), dict):
        problems.append(Diagnostic("C001", Severity.ERROR, "diff: must be a mapping", at("diff"),
                                   hint="see docs/diff.md for ignoreFile and mask"))
    istio = raw.get("istio", DEFAULT_ISTIO)
    if isinstance(istio, float):  # `istio: 1.31` unquoted: YAML reads a number
        istio = f"{istio}"
    istio = str(istio)
    if istio not in shipped_releases() and raw.get("crds") is None:
        problems.append(Diagnostic(
            "C005", Severity.ERROR, f"istio: {istio!r} is not a release meshc ships schemas for "
            f"(shipped: {', '.join(shipped_releases())})", at("istio"),
            hint=f"set istio: to a shipped release, or name your cluster's CRDs with crds: "
                 f"(`kubectl get crd -o yaml`); see {SCHEMA_HELP}"))
    if problems:
        return Project(root), problems

    def opt(key: str, default: str | None = None) -> Path | None:
        value = raw.get(key, default)
        return Path(str(value)) if value is not None else None

    positions = {key: at(key) for key in raw}
    return Project(root, crds=opt("crds"), templates=opt("templates", "templates"),
                   policies=opt("policies", "policies"), out=Path(str(raw.get("out", "out"))),
                   waivers=opt("waivers"), diff=raw.get("diff") or {}, istio=istio,
                   positions=positions), []


_EXAMPLE = {"crds": "crds/istio.yaml", "templates": "templates", "policies": "policies", "out": "out",
            "waivers": "waivers.yaml"}
