"""Markdown renderer of a `ChangeSet`: the body of the sticky pull-request comment.

Input: a masked `ChangeSet` and a size budget (`max_bytes`, UTF-8 bytes, default 65,536 = GitHub's
comment limit in characters; a byte is never less than a character, so fitting the bytes fits
the characters). Output: one Markdown string, never longer than the budget.
Order: the hidden marker ``<!-- meshc-diff -->`` (first line, used to find the comment again),
a title line with counts a reviewer trusts (declaration changes and Istio objects; derived Envoy
and iptables objects apart), risk flags one row per cause and code (meshc.diff.causes), the
changes by cause (what each declaration change does, where it was declared, the environments it
lands in, production first, and its consequences: proxy configuration and iptables one line per
file or workload group), the environment x kind table (collapsed), ignored changes, then one
``<details>`` per changed object holding a ```` ```diff ```` block (+/- in column 1), in cause
order; the objects of risky causes are open.
Budget: the header sections take what they need (risk flags at most half the budget, ignored
changes at most an eighth, the rest counted in a line); objects follow, those with a risk flag
first, then other Istio objects, then Envoy/iptables ones (by environment and report order
within each), and each is shown whole or not at all; objects that do not fit are folded into one summary line each while
those fit, then counted. When anything is left out, a closing paragraph says exactly how many
objects and diff lines were left out and where the full report is.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from meshc.diff.causes import DERIVED, Cause, group_causes
from meshc.diff.causes import ISTIO_KINDS as CAUSE_KINDS
from meshc.diff.maps import mermaid, same_change
from meshc.diff.model import ChangeSet, RiskFlag
from meshc.diff.render.plain import SYMBOL, Item, count_rows, object_lines, object_title
from meshc.diff.risk import ORDER
from meshc.model.diagnostics import printable

MARKER = "<!-- meshc-diff -->"
DEFAULT_BUDGET = 65_536
MIN_BUDGET = 4_096
FULL_REPORT = "run `meshc diff --format text` or see the text report in the CI artifact meshc-report"
_RESERVE = 700   # room kept for the closing "left out" paragraph
ISTIO_KINDS = {"ServiceEntry", "WorkloadEntry", "DestinationRule"}


def size(text: str) -> int:
    return len(text.encode("utf-8"))


_MD_PUNCT = re.compile(r"([\\\[\]|])")  # links and images need [ ]; columns break on |


def cell(text: str) -> str:
    """Plain text in a table cell: no HTML, no column breaks, no links, images or @-mentions
    (brackets, pipes and backslashes escaped, a zero-width space after each @)."""
    escaped = _MD_PUNCT.sub(r"\\\1", html.escape(printable(text.replace("\n", " ")), quote=False))
    return escaped.replace("@", "@\u200b")


def code(text: str) -> str:
    """Text inside a `code span` in a table cell (entities would show literally there)."""
    return text.replace("`", "'").replace("|", "\\|").replace("\n", " ")


def span(text: str) -> str:
    """Text inside a `code span` outside tables."""
    return text.replace("`", "'").replace("\n", " ")


def inline(text: str) -> str:
    """Text inside an HTML element such as <summary>."""
    return html.escape(printable(text.replace("\n", " ")), quote=False).replace("@", "@\u200b")


def _fence(lines: list[str]) -> str:
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _take(rows: Iterable[str], budget: int) -> tuple[list[str], int]:
    """Rows in order while they fit in `budget`; and how many did not."""
    out: list[str] = []
    rows = list(rows)
    used = 0
    for row in rows:
        if used + size(row) + 1 > budget:
            break
        out.append(row)
        used += size(row) + 1
    return out, len(rows) - len(out)


def _risks(risks: tuple[RiskFlag, ...], causes: tuple[Cause, ...], budget: int) -> list[str]:
    if not risks:
        return ["**No risk flags.**", ""]
    rows_in = [(code_, cause.title, cause.rank, ", ".join(cause.where[:2]), message, count)
               for cause in causes for code_, message, count in cause.flags()]
    placed = {flag for cause in causes for flag in cause.risks}
    rows_in += [(r.code, f"environment {r.env}", ORDER.index(r.code) if r.code in ORDER else len(ORDER), r.source,
                 r.message, 1) for r in risks if r not in placed]
    rows_in.sort(key=lambda r: (r[2], ORDER.index(r[0]) if r[0] in ORDER else len(ORDER), r[1]))
    head = [f"### :warning: Risk flags ({len(rows_in)})", "",
            "| Risk | Cause | Declared at | What |", "|---|---|---|---|"]
    rows, left = _take((f"| `{c}` | {cell(title)} | `{code(where or '-')}` | "
                        f"{cell(message)}{f' (and {n - 1} more like it)' if n > 1 else ''} |"
                        for c, title, _, where, message, n in rows_in), budget - sum(map(size, head)) - 200)
    tail = [f"| … | | | {left} more risk flag(s) not listed here; {FULL_REPORT} |"] if left else []
    return head + rows + tail + [""]


def _causes(causes: tuple[Cause, ...], budget: int) -> list[str]:
    """One entry per declaration change: where, what it does, its consequences in one line each."""
    if not causes:
        return []
    out = [f"### Changes by cause ({len(causes)})", ""]
    entries = []
    for cause in causes:
        flags = " ".join(f"`{c}`" for c, _, _ in cause.flags())
        where = f"`{span(', '.join(cause.where[:3]))}` " if cause.where else ""
        lines = [f"- {where}**{inline(cause.title)}**{' ' + flags if flags else ''}"]
        lines += [f"  - {cell(text)}" for text in cause.summary[:8]]
        if len(cause.summary) > 8:
            lines.append(f"  - … and {len(cause.summary) - 8} more change(s) (objects below)")
        lines += [f"  - proxy: {cell(text)}" for text in cause.proxy[:6]]
        lines += [f"  - iptables: {cell(text)}" for text in cause.iptables[:6]]
        entries.append("\n".join(lines))
    shown, left = _take(entries, budget - 300)
    out += shown
    if left:
        out.append(f"- … {left} more cause(s) not listed here; {FULL_REPORT}")
    return out + [""]


MAX_MAPS = 6


def _maps(cs: ChangeSet, causes: tuple[Cause, ...], budget: int) -> list[str]:
    """A Mermaid map per cause (riskiest first): the service in its first environment, the
    environments with the same change named; within the budget, at most MAX_MAPS."""
    blocks: list[str] = []
    for cause in causes:
        if cause.service == DERIVED or not cause.envs:
            continue
        env = cause.envs[0]
        pair = cs.envs[env].maps.get(cause.service) if env in cs.envs else None
        if pair is None or (pair[0] is None and pair[1] is None):
            continue
        also = [e for e in cause.envs[1:] if e in cs.envs and same_change(cs.envs[e].maps.get(cause.service,
                                                                                              (None, None)), pair)]
        blocks.append(mermaid(env, pair[0], pair[1], also, prefix=f"m{len(blocks)}"))
    if not blocks:
        return []
    shown, left = _take(blocks[:MAX_MAPS], budget - 200)
    left += max(0, len(blocks) - MAX_MAPS)
    out = ["<details open><summary>Map of the change (green added, red removed, yellow changed)</summary>", "",
           *shown]
    if left:
        out.append(f"{left} more service map(s) not drawn here.")
    return out + ["", "</details>", ""]


def _counts(cs: ChangeSet) -> list[str]:
    rows = count_rows(cs)
    if not rows:
        return ["No changes.", ""]
    out = ["<details><summary>Objects per environment and kind</summary>", "",
           "| Env | Kind | Added | Removed | Changed | Renamed |", "|---|---|--:|--:|--:|--:|"]
    for env, kind, *counts in rows:
        prod = " (production)" if cs.envs[env].production else ""
        out.append(f"| {cell(env)}{prod} | {cell(kind)} | " + " | ".join(str(c) for c in counts) + " |")
    return out + ["", "</details>", ""]


def _ignored(cs: ChangeSet, budget: int) -> list[str]:
    if not cs.ignored:
        return []
    head = [f"<details><summary>Ignored: {len(cs.ignored)} change(s) suppressed by the ignore file "
            "(listed here, not shown above)</summary>", "", "| Env | Object | Change | Path | Rule |",
            "|---|---|---|---|---|"]
    rows, left = _take((f"| {cell(i.env)} | `{code(str(i.object))}` | {i.what} | `{code(i.path or '*')}` | "
                        f"{cell(i.rule)} |" for i in cs.ignored), budget - 600)
    tail = [f"| … | | | | {left} more not listed here |"] if left else []
    return head + rows + tail + ["", "</details>", ""]


def _details(env: str, what: str, item: Item, risky: bool = False) -> tuple[str, str, int]:
    """(details block, folded summary line, number of diff lines) of one object; open if risky."""
    lines = object_lines(what, item)
    fence = _fence(lines)
    where = f" · {inline(item.source)}" if item.source else ""
    title = f"<code>{inline(env)}</code> {SYMBOL[what]} {inline(object_title(what, item))}"
    block = "\n".join([f"<details{' open' if risky else ''}><summary>{title}{where}</summary>", "",
                       f"{fence}diff", *lines, fence, "", "</details>", ""])
    folded = f"- `{span(env)}` {SYMBOL[what]} `{span(object_title(what, item))}` ({len(lines)} diff lines)"
    return block, folded, len(lines)


def _by_priority(cs: ChangeSet, causes: tuple[Cause, ...]) -> list[tuple[int, str, str, Item, bool]]:
    """Istio objects in cause order (the riskiest cause first, production environments first
    within a cause), then the derived ones (Envoy, iptables) in the same order; whether each
    belongs to a cause with a risk flag."""
    production = {name for name, env in cs.envs.items() if env.production}
    rows = []
    for rank, cause in enumerate(causes):
        for tier, items in ((0, cause.objects), (1, cause.derived)):
            for env, what, item in sorted(items, key=lambda r: r[0] not in production):
                rows.append((tier * len(causes) + rank, env, what, item, bool(cause.risks)))
    return sorted(rows, key=lambda r: r[0])


def headline(cs: ChangeSet, causes: tuple[Cause, ...]) -> str:
    """Counts a reviewer trusts: declaration changes, Istio objects, derived objects apart."""
    istio: dict[str, int] = {"added": 0, "removed": 0, "modified": 0, "renamed": 0}
    derived = 0
    for env in cs.envs.values():
        for what, item in env.objects():
            if item.id.kind in CAUSE_KINDS:
                istio[what] += 1
            else:
                derived += 1
    declared = sum(1 for c in causes if c.service != DERIVED)
    parts = [f"{declared} declaration change(s)",
             f"{sum(istio.values())} Istio object(s) (" + ", ".join(f"{n} {k}" for k, n in istio.items()) + ")",
             f"{derived} derived Envoy/iptables object(s)", f"{len(cs.ignored)} ignored"]
    return " · ".join(parts)


def render_markdown(cs: ChangeSet, max_bytes: int = DEFAULT_BUDGET) -> str:
    causes = group_causes(cs)
    title = (f"## meshc diff\n\nbase `{span(cs.base.label)}` → head `{span(cs.head.label)}` · "
             + headline(cs, causes) + "\n")
    parts = [MARKER, title]
    parts += _risks(cs.risks, causes, max_bytes // 2)
    parts += _causes(causes, max_bytes // 4)
    parts += _maps(cs, causes, max_bytes // 8)
    parts += _counts(cs)
    parts += _ignored(cs, max_bytes // 8)
    notes, _ = _take((f"> note: {cell(n)}" for n in cs.notes), 2_000)
    parts += notes + ([""] if notes else [])
    text = "\n".join(parts)
    blocks = [_details(name, what, item, risky) for _, name, what, item, risky in _by_priority(cs, causes)]
    budget = max_bytes - size(text) - _RESERVE
    shown, folded = [], []
    for block, line, count in blocks:
        if size(block) + 1 <= budget:
            shown.append(block)
            budget -= size(block) + 1
        else:
            folded.append((line, count))
    out = [text]
    if shown:
        out += ["### Objects", "", *shown]
    out += _folded(folded, budget, len(blocks))
    return "\n".join(out).rstrip("\n") + "\n"


def _folded(folded: list[tuple[str, int]], budget: int, total: int) -> list[str]:
    if not folded:
        return []
    lines, rest = _take((line for line, _ in folded), budget - 100)
    out = ["<details><summary>Objects not shown in full</summary>", "", *lines]
    if rest:
        out.append(f"- … and {rest} more object(s)")
    out += ["", "</details>", ""]
    if not lines:
        out = []
    omitted_lines = sum(count for _, count in folded)
    out.append(f"**Left out:** {len(folded)} of {total} changed object(s) ({omitted_lines} diff line(s)) "
               f"did not fit in this comment; {FULL_REPORT} for the full report.")
    return out
