"""Project settings: meshc.yaml at the repository root (all keys optional).

    istio: "1.31"                             # the Istio release the estate targets (default: the shipped one),
                                              # or a fleet in migration: ["1.29", "1.31"]
    crds: path/to/crds.yaml                   # your own CRDs (`kubectl get crd -o yaml`); default: shipped
    templates: templates                      # your template overrides, by file name
    policies: policies                        # CUE policies
    out: out                                  # where bundles are written
    waivers: waivers.yaml
    diff: {ignoreFile: .meshc-diffignore, mask: [...]}

`istio:` names releases of meshc's release table (data/istio-releases.yaml, 1.22 .. 1.31): the
lowest is the one emitted objects are gated on (meshc.check.release), all are validated against
the shipped CRD schemas.

Codes: C001 meshc.yaml is malformed (unknown key, wrong type), C005 an Istio release outside
meshc's release table (README "Istio CRD schemas"), C006 a path outside the repository (meshc.confine),
C007 an `out:` folder that is the repository, or holds or sits inside a source folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshc.files.confine import ConfinementError, read_regular, resolve_inside
from meshc.files.source import child, locate, parse
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.model.release import DEFAULT_ISTIO, known_releases, release_key, schema_release, shipped_crds

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
    istio: str = DEFAULT_ISTIO  # the lowest target release: the one fields are gated on
    releases: tuple[str, ...] = (DEFAULT_ISTIO,)  # every target release, oldest first
    positions: Mapping[str, Position] = field(default_factory=dict)

    def resolve(self, p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else self.root / p)

    def crd_file(self) -> Path:
        """The CRDs the schema layer validates against: the user's when `crds:` names a file
        (they win), else the schemas meshc ships for the target release."""
        own = self.resolve(self.crds)
        return own if own is not None else shipped_crds(schema_release(self.istio))

    def where(self, key: str) -> Position:
        return self.positions.get(key, Position(CONFIG_FILE, 1, 1))


def load_project(root: Path) -> tuple[Project, list[Diagnostic]]:
    path = root / CONFIG_FILE
    if not path.exists():
        return Project(root, templates=Path("templates"), policies=Path("policies")), []
    try:
        data = read_regular(path)
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
                                          Position(CONFIG_FILE, 1, 1),
                                          hint="see docs/declarations.md#project-settings")]

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
    releases, release_problems = _releases(raw, doc.node if doc is not None else None, at)
    problems.extend(release_problems)
    problems.extend(_confined_paths(root, raw, at))
    if problems:
        return Project(root), problems

    def opt(key: str, default: str | None = None) -> Path | None:
        value = raw.get(key, default)
        return Path(str(value)) if value is not None else None

    positions = {key: at(key) for key in raw}
    return Project(root, crds=opt("crds"), templates=opt("templates", "templates"),
                   policies=opt("policies", "policies"), out=Path(str(raw.get("out", "out"))),
                   waivers=opt("waivers"), diff=raw.get("diff") or {}, istio=releases[0],
                   releases=releases, positions=positions), []


def _release_text(value: Any, node: Any) -> str | None:
    """A release as written: `istio: 1.30` unquoted is the number 1.3 to YAML, so a number is read
    back from its scalar's text; None for anything that is no release at all."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, (int, float)) and isinstance(getattr(node, "value", None), str):
        return str(node.value)
    return str(value)


def _releases(raw: Mapping[str, Any], root: Any, at: Any) -> tuple[tuple[str, ...], list[Diagnostic]]:
    """`istio:` as the target releases, oldest first (default: the shipped release); C001 for a
    value that is neither a release nor a list of them, C005 for each release outside the table."""
    value = raw.get("istio", DEFAULT_ISTIO)
    _, node = child(root, "istio") if root is not None else (None, None)
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    if isinstance(value, list) and not value:
        items = [(None, None)]
    known = known_releases()
    out: list[str] = []
    problems: list[Diagnostic] = []
    for i, item in items:
        item_node = child(node, i)[1] if (node is not None and i is not None) else node
        where = locate(CONFIG_FILE, root, ("istio", i))[0] if (root is not None and i is not None) else at("istio")
        text = _release_text(item, item_node)
        if text is None:
            problems.append(Diagnostic("C001", Severity.ERROR, "istio: must be an Istio release or a non-empty list "
                                       "of releases", where, hint='write e.g. `istio: "1.31"` or '
                                       '`istio: ["1.29", "1.31"]`'))
        elif text not in known:
            problems.append(Diagnostic(
                "C005", Severity.ERROR, f"istio: {text!r} is not a release meshc ships schemas for: it knows "
                f"Istio {known[0]} to {known[-1]} (validated against the shipped {DEFAULT_ISTIO} CRD schemas)",
                where, hint=f"set istio: to a release from {known[0]} to {known[-1]}, or a list of them for a "
                            f"fleet in migration; see {SCHEMA_HELP}"))
        elif text not in out:
            out.append(text)
    return tuple(sorted(out, key=release_key)) or (DEFAULT_ISTIO,), problems


_SOURCE_DIRS = ("environments", "templates", "policies", ".git", ".meshc-cache")


def _confined_paths(root: Path, raw: Mapping[str, Any], at: Any) -> list[Diagnostic]:
    """Paths meshc.yaml names must stay inside the repository (a stranger may have written it),
    and `out:` must be a folder of its own: not the repository, not a source folder, not above one."""

    out: list[Diagnostic] = []
    named = [(k, raw.get(k, {"templates": "templates", "policies": "policies"}.get(k)))
             for k in ("crds", "templates", "policies", "waivers")]
    diff = raw.get("diff")
    if isinstance(diff, dict) and isinstance(diff.get("ignoreFile"), str):
        named.append(("diff", diff["ignoreFile"]))
    for key, value in named:
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            resolve_inside(root, root / value, value)
        except ConfinementError as exc:
            out.append(Diagnostic("C006", Severity.ERROR, f"{key}: {exc}", at(key),
                                  hint="name a path inside the repository; the person running meshc can allow an "
                                       "outside path with `meshc --allow-outside PATH`"))
    value = raw.get("out", "out")
    if isinstance(value, str) and value.strip():
        real_root = Path(os.path.realpath(root))
        try:
            real = resolve_inside(root, root / value, value)
        except ConfinementError:
            return out + [Diagnostic("C007", Severity.ERROR, f"out: {value!r} is outside the repository "
                                     f"({os.path.realpath(root / value)}); meshc writes bundles only inside it",
                                     at("out"), hint="write bundles to a folder inside the repository, e.g. out: out")]
        sources = [Path(os.path.realpath(root / d)) for d in _SOURCE_DIRS]
        sources += [Path(os.path.realpath(root / str(raw[k]))) for k in ("templates", "policies")
                    if isinstance(raw.get(k), str) and raw.get(k)]
        sources = [src for src in sources if src.is_relative_to(real_root) and src != real_root]
        clash = next((src for src in sources if real == src or real.is_relative_to(src) or src.is_relative_to(real)),
                     None)
        what = "is the repository itself" if real == real_root else None
        if what is None and clash is not None:
            what = f"overlaps {clash.relative_to(real_root) if clash.is_relative_to(real_root) else clash}"
        if what is not None:
            out.append(Diagnostic("C007", Severity.ERROR, f"out: {value!r} {what}: a build replaces the folders "
                                  "it writes, so it must not hold or sit inside the sources", at("out"),
                                  hint="write bundles to a folder of their own, e.g. out: out"))
    return out


_EXAMPLE = {"crds": "crds/istio.yaml", "templates": "templates", "policies": "policies", "out": "out",
            "waivers": "waivers.yaml"}
