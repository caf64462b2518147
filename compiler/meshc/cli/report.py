"""Findings output: text grouped by file, JSON, SARIF 2.1.0 and GitHub workflow annotations.

Input: sorted diagnostics plus waived ones. Output: text for stdout. Renderers only render.
JSON schema: {"findings": [{code, severity, message, kind, namespace, name, path, file, line,
col, env, istio_code, hint}], "waived": [...same + waiver...], "summary": {errors, warnings,
info, waived}} (docs/checks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import orjson

from meshc.model.diagnostics import Diagnostic, Severity, merge_envs, normalise, printable, render_one
from meshc.model.ids import ObjectId


def _object_parts(d: Diagnostic) -> tuple[str, str, str]:
    """(kind, namespace, name) of the object a diagnostic is about; a text (`service NAME`) as name."""
    if isinstance(d.object, ObjectId):
        return d.object.kind, d.object.namespace, d.object.name
    return "", "", d.object


def as_record(d: Diagnostic) -> dict[str, Any]:
    kind, ns, name = _object_parts(d)
    pos = d.position
    return {"code": d.code, "severity": d.severity.label, "message": d.message, "kind": kind,
            "namespace": ns, "name": name, "path": d.path, "file": pos.file if pos else "",
            "line": pos.line if pos else 0, "col": pos.col if pos else 0, "env": d.env,
            "istio_code": d.istio_code, "hint": d.hint}


def summary(diags: Sequence[Diagnostic], waived: Sequence[Diagnostic]) -> dict[str, int]:
    return {"errors": sum(d.severity == Severity.ERROR for d in diags),
            "warnings": sum(d.severity == Severity.WARNING for d in diags),
            "info": sum(d.severity == Severity.INFO for d in diags), "waived": len(waived)}


def render(fmt: str, diags: Sequence[Diagnostic], waived: Sequence[Diagnostic] = ()) -> str:
    items = normalise(diags)
    return {"text": _text, "json": _json, "sarif": _sarif, "github": _github}[fmt](items, list(waived))


def _text(items: list[Diagnostic], waived: list[Diagnostic]) -> str:
    lines: list[str] = []
    items = merge_envs(items)
    for file, group in groupby(items, key=lambda d: d.position.file if d.position else ""):
        lines.append(f"== {file or '(no file)'}")
        lines.extend(render_one(d) for d in group)
    if waived:
        lines.append(f"== waived ({len(waived)})")
        lines.extend(f"  {render_one(d).splitlines()[0]}" for d in normalise(waived))
    s = summary(items, waived)
    lines.append(f"{s['errors']} error(s), {s['warnings']} warning(s), {s['info']} info, "
                 f"{s['waived']} waived")
    return "\n".join(lines) + "\n"


def _json(items: list[Diagnostic], waived: list[Diagnostic]) -> str:
    doc = {"findings": [as_record(d) for d in items], "waived": [as_record(d) for d in normalise(waived)],
           "summary": summary(items, waived)}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _sarif(items: list[Diagnostic], waived: list[Diagnostic]) -> str:
    rules = sorted({d.code for d in items})
    results = []
    for d in items:
        loc = {"physicalLocation": {"artifactLocation": {"uri": d.position.file},
                                    "region": {"startLine": max(d.position.line, 1),
                                               "startColumn": max(d.position.col, 1)}}} if d.position else {}
        results.append({"ruleId": d.code, "level": _SARIF_LEVEL[d.severity],
                        "message": {"text": f"{d.message} ({d.object} {d.path})".strip()},
                        "locations": [loc] if loc else []})
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "meshc", "informationUri": "https://meshc.dev/docs/checks",
                                         "rules": [{"id": r} for r in rules]}},
                     "results": results}]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _gh_data(text: str) -> str:
    """GitHub workflow-command escaping of a message (@actions/core escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """... and of a property value (escapeProperty): `:` and `,` too."""
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(items: list[Diagnostic], waived: list[Diagnostic]) -> str:
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
    out = []
    for d in merge_envs(items):
        props = [f"file={_gh_property(d.position.file)}", f"line={max(d.position.line, 1)}",
                 f"col={max(d.position.col, 1)}"] if d.position else []
        props.append(f"title={_gh_property(f'meshc {d.code}')}")
        where = f"{d.env} " if d.env else ""
        msg = _gh_data(printable(f"{d.message} [{d.code}] {where}{d.object} {d.path}".strip()))
        out.append(f"::{level[d.severity]} {','.join(props)}::{msg}")
    return "\n".join(out) + ("\n" if out else "")
