"""Renderers of a `ChangeSet`: text (terminals) and JSON (schema meshc.diff/v1, docs/diff.md),
plus the pieces the Markdown renderer (meshc.diff_markdown) shares: object titles, the
per-object diff lines (+/- in column 1, ``@@ path @@`` before each field change) and the
environment x kind count table.

Input: a masked `ChangeSet`. Output: a string. Invariants: renderers only read the change set;
the order is fixed (risk flags, counts, ignored changes, objects by environment, notes);
keyed and set-like lists are shown as lists again; masked values print as
``<masked: len N, sha256:xxxxxxxx>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import click
import orjson

from meshc.diff.causes import DERIVED, Cause, group_causes
from meshc.diff.model import ChangeSet, FieldChange, ItemKey, Masked, ObjectDiff, ObjectSnapshot, SideInfo
from meshc.files.yamlout import dump

SCHEMA = "meshc.diff/v1"
SYMBOL = {"added": "+", "removed": "-", "modified": "~", "renamed": ">"}
Item = ObjectSnapshot | ObjectDiff


def plain(value: Any, structured: bool = False) -> Any:
    """Printable data: keyed lists back to lists, other keys to str, `Masked` to its text
    (or, when `structured`, to ``{"$masked": {"length": N, "hmacSha256": "xxxxxxxx"}}``)."""
    if isinstance(value, Masked):
        return {"$masked": {"length": value.length, "hmacSha256": value.digest}} if structured else str(value)
    if isinstance(value, dict):
        if value and all(isinstance(k, ItemKey) for k in value):
            return [plain(v, structured) for v in value.values()]
        return {str(k): plain(v, structured) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, structured) for v in value]
    return value


def _block(sign: str, value: Any) -> list[str]:
    return [f"{sign} {line}".rstrip() for line in dump(plain(value)).splitlines()]


def change_lines(change: FieldChange) -> list[str]:
    masked = isinstance(change.before, Masked) or isinstance(change.after, Masked)
    note: list[str] = [change.kind] if change.kind != "changed" else []
    note += ["masked value"] if masked else []
    lines = [f"@@ {change.where}" + (f" ({', '.join(note)})" if note else "") + " @@"]
    if change.kind != "added":
        lines += _block("-", change.before)
    if change.kind != "removed":
        lines += _block("+", change.after)
    return lines


def object_lines(what: str, item: Item) -> list[str]:
    if isinstance(item, ObjectSnapshot):
        return _block("+" if what == "added" else "-", item.body)
    return [line for change in item.changes for line in change_lines(change)]


def object_title(what: str, item: Item) -> str:
    if isinstance(item, ObjectDiff) and item.old is not None:
        return f"{item.old} -> {item.id} (renamed, similarity {item.similarity:.2f})"
    return f"{item.id} ({what})"


def count_rows(cs: ChangeSet) -> list[tuple[str, str, int, int, int, int]]:
    """(env, kind, added, removed, changed, renamed) for every environment and kind with changes."""
    cells: dict[tuple[str, str], list[int]] = {}
    column = {"added": 0, "removed": 1, "modified": 2, "renamed": 3}
    for name, env in sorted(cs.envs.items()):
        for what, item in env.objects():
            cells.setdefault((name, item.id.kind), [0, 0, 0, 0])[column[what]] += 1
    return [(env, kind, added, removed, changed, renamed)
            for (env, kind), (added, removed, changed, renamed) in sorted(cells.items())]


def side_text(info: SideInfo) -> str:
    return info.label


def render_text(cs: ChangeSet, color: bool = False) -> str:
    style: Callable[..., str] = click.style if color else (lambda text, **_: text)
    out = [f"meshc diff: base {side_text(cs.base)} -> head {side_text(cs.head)}"]
    if cs.empty:
        out.append("no changes")
    if cs.risks:
        out.append(style(f"Risk flags ({len(cs.risks)}):", bold=True, fg="red"))
        out += [style(f"  ! {r.code}  {r.env}  {r.object}: {r.message}", fg="red") +
                (f"  [{r.source}]" if r.source else "") for r in cs.risks]
    out += list(_text_causes(cs))
    out += list(_text_counts(cs))
    out += list(_text_ignored(cs))
    for name, env in sorted(cs.envs.items()):
        if env.empty:
            continue
        out.append(style(f"== {name}{' (production)' if env.production else ''} ==", bold=True))
        for what, item in env.objects():
            source = f"  [{item.source}]" if item.source else ""
            out.append(style(f"{SYMBOL[what]} {object_title(what, item)}", bold=True) + source)
            out += [_colour_line(line, style) for line in object_lines(what, item)]
    out += [f"note: {n}" for n in cs.notes]
    return "\n".join(out) + "\n"


def _colour_line(line: str, style: Callable[..., str]) -> str:
    colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1])
    return "    " + (style(line, fg=colour) if colour else line)


def _text_causes(cs: ChangeSet) -> Iterator[str]:
    causes = group_causes(cs)
    if causes:
        yield f"Changes by cause ({len(causes)}):"
    for cause in causes:
        flags = "".join(f" [{c}]" for c, _, _ in cause.flags())
        yield f"  * {cause.title}{flags}" + (f"  at {', '.join(cause.where)}" if cause.where else "")
        yield from (f"   - {line}" for line in cause.summary)
        yield from (f"   - proxy: {line}" for line in cause.proxy)
        yield from (f"   - iptables: {line}" for line in cause.iptables)


def _cause_json(cause: Cause) -> dict[str, Any]:
    return {"service": cause.service if cause.service != DERIVED else None, "environments": list(cause.envs),
            "declaredAt": list(cause.where), "summary": list(cause.summary),
            "risks": [{"code": c, "message": m, "count": n} for c, m, n in cause.flags()],
            "objects": [{"env": env, "change": what, "kind": item.id.kind, "namespace": item.id.namespace,
                         "name": item.id.name} for env, what, item in cause.objects],
            "proxy": list(cause.proxy), "iptables": list(cause.iptables),
            "derivedObjects": len(cause.derived)}


def _text_counts(cs: ChangeSet) -> Iterator[str]:
    rows = count_rows(cs)
    if rows:
        yield "Changes (env, kind: added removed changed renamed):"
        for env, kind, *counts in rows:
            yield f"  {env:<12} {kind:<18} " + " ".join(f"{c:>7}" for c in counts)


def _text_ignored(cs: ChangeSet) -> Iterator[str]:
    if cs.ignored:
        yield f"Ignored ({len(cs.ignored)} change(s) suppressed by the ignore file):"
        for ig in cs.ignored:
            yield f"  {ig.env} {ig.object} {ig.what} {ig.path or '(whole object)'}  <- {ig.rule}"


def _side_json(info: SideInfo) -> dict[str, Any]:
    return {"spec": info.spec, "kind": info.kind, "commit": info.commit or None}


def _item_json(what: str, item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": item.id.kind, "namespace": item.id.namespace, "name": item.id.name,
                           "source": item.source or None}
    if isinstance(item, ObjectSnapshot):
        out["body"] = plain(item.body, True)
        return out
    if item.old is not None:
        out["from"] = {"kind": item.old.kind, "namespace": item.old.namespace, "name": item.old.name,
                       "source": item.base_source or None}
        out["similarity"] = item.similarity
    out["changes"] = [{"path": c.where, "change": c.kind,
                       **({"before": plain(c.before, True)} if c.kind != "added" else {}),
                       **({"after": plain(c.after, True)} if c.kind != "removed" else {})} for c in item.changes]
    return out


def to_json(cs: ChangeSet) -> dict[str, Any]:
    causes = group_causes(cs)
    envs = []
    for name, env in sorted(cs.envs.items()):
        entry: dict[str, Any] = {"name": name, "production": env.production, "changed": not env.empty}
        for what in ("added", "removed", "modified", "renamed"):
            entry[what] = [_item_json(what, item) for w, item in env.objects() if w == what]
        envs.append(entry)
    return {
        "schema": SCHEMA, "base": _side_json(cs.base), "head": _side_json(cs.head),
        "summary": {**cs.counts(), "risks": len(cs.risks), "ignored": len(cs.ignored), "changed": not cs.empty,
                    "declarationChanges": sum(1 for c in causes if c.service != DERIVED),
                    "istioObjects": sum(len(c.objects) for c in causes),
                    "derivedObjects": sum(len(c.derived) for c in causes)},
        "causes": [_cause_json(c) for c in causes],
        "risks": [{"code": r.code, "env": r.env, "object": r.object, "message": r.message,
                   "source": r.source or None} for r in cs.risks],
        "environments": envs,
        "ignored": [{"env": i.env, "object": str(i.object), "change": i.what, "path": i.path or None,
                     "rule": i.rule} for i in cs.ignored],
        "notes": list(cs.notes),
    }


def render_json(cs: ChangeSet) -> str:
    return orjson.dumps(to_json(cs), option=orjson.OPT_INDENT_2).decode() + "\n"
