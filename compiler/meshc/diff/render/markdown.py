"""Markdown renderer of a `ChangeSet`: the body of the sticky pull-request comment.

Input: a masked `ChangeSet` and a size budget (`max_bytes`, UTF-8 bytes, default 65,536 = GitHub's
comment limit in characters; a byte is never less than a character, so fitting the bytes fits
the characters). Output: one Markdown string, never longer than the budget.
Order: the hidden marker ``<!-- meshc-diff -->`` (first line, used to find the comment again),
a title line, risk flags, an environment x kind table of counts, ignored changes, then one
``<details>`` per changed object holding a ```` ```diff ```` block (+/- in column 1).
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

from meshc.diff.model import ChangeSet, ObjectDiff, RiskFlag
from meshc.diff.render.plain import SYMBOL, Item, count_rows, object_lines, object_title
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


def _risks(risks: tuple[RiskFlag, ...], budget: int) -> list[str]:
    if not risks:
        return ["**No risk flags.**", ""]
    head = [f"### :warning: Risk flags ({len(risks)})", "",
            "| Risk | Env | Object | Declaration | What |", "|---|---|---|---|---|"]
    rows, left = _take((f"| `{r.code}` | {cell(r.env)} | `{code(r.object)}` | `{code(r.source or '-')}` | "
                        f"{cell(r.message)} |" for r in risks), budget - sum(map(size, head)) - 200)
    tail = [f"| … | | | | {left} more risk flag(s) not listed here; {FULL_REPORT} |"] if left else []
    return head + rows + tail + [""]


def _counts(cs: ChangeSet) -> list[str]:
    rows = count_rows(cs)
    if not rows:
        return ["No changes.", ""]
    out = ["### Changes", "", "| Env | Kind | Added | Removed | Changed | Renamed |",
           "|---|---|--:|--:|--:|--:|"]
    for env, kind, *counts in rows:
        prod = " (production)" if cs.envs[env].production else ""
        out.append(f"| {cell(env)}{prod} | {cell(kind)} | " + " | ".join(str(c) for c in counts) + " |")
    return out + [""]


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


def _details(env: str, what: str, item: Item) -> tuple[str, str, int]:
    """(details block, folded summary line, number of diff lines) of one object."""
    lines = object_lines(what, item)
    fence = _fence(lines)
    where = f" · {inline(item.source)}" if item.source else ""
    title = f"<code>{inline(env)}</code> {SYMBOL[what]} {inline(object_title(what, item))}"
    block = "\n".join([f"<details><summary>{title}{where}</summary>", "", f"{fence}diff", *lines, fence,
                       "", "</details>", ""])
    folded = f"- `{span(env)}` {SYMBOL[what]} `{span(object_title(what, item))}` ({len(lines)} diff lines)"
    return block, folded, len(lines)


def _by_priority(cs: ChangeSet) -> list[tuple[int, str, str, Item]]:
    """Objects with a risk flag first, then other Istio objects, then derived ones (Envoy,
    iptables); by environment and report order within each tier."""
    flagged = {(r.env, r.object) for r in cs.risks}
    rows = []
    for name, env in sorted(cs.envs.items()):
        for what, item in env.objects():
            label = f"{item.old} -> {item.id}" if isinstance(item, ObjectDiff) and item.old else str(item.id)
            tier = 0 if (name, label) in flagged else 1 if item.id.kind in ISTIO_KINDS else 2
            rows.append((tier, name, what, item))
    return sorted(rows, key=lambda r: r[0])


def render_markdown(cs: ChangeSet, max_bytes: int = DEFAULT_BUDGET) -> str:
    title = (f"## meshc diff\n\nbase `{span(cs.base.label)}` → head `{span(cs.head.label)}` · "
             + ", ".join(f"{n} {k}" for k, n in cs.counts().items()) + f" · {len(cs.ignored)} ignored\n")
    parts = [MARKER, title]
    parts += _risks(cs.risks, max_bytes // 2)
    parts += _counts(cs)
    parts += _ignored(cs, max_bytes // 8)
    notes, _ = _take((f"> note: {cell(n)}" for n in cs.notes), 2_000)
    parts += notes + ([""] if notes else [])
    text = "\n".join(parts)
    blocks = [_details(name, what, item) for _, name, what, item in _by_priority(cs)]
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
