"""`meshc diff` command line: parse flags, call `meshc.diff.run`, print one format or write several.

Register with ``main.add_command(diff_command)`` in compiler/meshc/cli.py.
Exit codes: 0 no changes (or changes without --exit-code), 1 changes found with --exit-code,
2 usage or input error (bad ref or directory, a side that does not compile, bad ignore file,
bad --output or --checks).
Everything but the report goes to stderr, so stdout stays machine-clean.

``--output FORMAT=PATH`` (repeatable) writes several formats from one run, each file atomically
(a temporary file in the same directory, then a rename); stdout then stays empty. ``--checks FILE``
takes the JSON of ``meshc check --format json`` run on the head: when it has errors, the markdown
opens (after the hidden marker) with a "Checks fail on the head" section, within the same
--max-bytes budget, and the text report with the same list; the JSON report always carries
``"checks": {passed, errors, warnings}``. When the diff cannot run (exit 2), an ``--output
markdown=`` file is still written, saying why and listing the failing checks, so that a pull-request
comment never goes stale; the other formats are not written then.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from click.core import ParameterSource

from meshc.cli.report import as_record
from meshc.diff.render.markdown import DEFAULT_BUDGET, MARKER, MIN_BUDGET, cell, code, render_markdown, size
from meshc.diff.render.plain import render_json, render_text, to_json
from meshc.model.diagnostics import Diagnostic
from meshc.model.diagnostics import render_text as render_diagnostics

SALT_ENV = "MESHC_DIFF_SALT"
FORMATS = ("text", "markdown", "json")
CHECK_ROWS = 50          # failing findings listed in the markdown at most (the rest are counted)
CHECKS_SHARE = 4         # the checks section takes at most 1/CHECKS_SHARE of --max-bytes


# --- --output ----------------------------------------------------------------------------------

def _parse_outputs(ctx: click.Context, param: click.Parameter,
                   values: Sequence[str]) -> tuple[tuple[str, Path], ...]:
    outputs: list[tuple[str, Path]] = []
    for spec in values:
        fmt, sep, path = spec.partition("=")
        fmt = fmt.strip()
        if not sep:
            raise click.BadParameter(f"{spec!r} is not FORMAT=PATH (for example markdown=comment.md)",
                                     ctx, param)
        if fmt not in FORMATS:
            raise click.BadParameter(f"unknown format {fmt!r} in {spec!r}; use one of {', '.join(FORMATS)}",
                                     ctx, param)
        if not path:
            raise click.BadParameter(f"no path after '=' in {spec!r}", ctx, param)
        if any(f == fmt for f, _ in outputs):
            raise click.BadParameter(f"format {fmt!r} given twice", ctx, param)
        target = Path(path)
        if any(os.path.abspath(p) == os.path.abspath(target) for _, p in outputs):
            raise click.BadParameter(f"path {path!r} given twice", ctx, param)
        outputs.append((fmt, target))
    return tuple(outputs)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a
    reader sees the old file or the new one, never a part (parent directories are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # mode as umask allows
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(outputs: Iterable[tuple[Path, str]]) -> None:
    for path, text in outputs:
        try:
            write_atomic(path, text)
        except OSError as exc:
            click.echo(f"error: cannot write {path}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        click.echo(f"wrote {path}", err=True)


# --- --checks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checks:
    """What `meshc check --format json` found on the head: the error findings, and counts."""

    errors: tuple[dict[str, Any], ...]
    warnings: int

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {"passed": self.passed, "errors": len(self.errors), "warnings": self.warnings}

    @classmethod
    def from_diagnostics(cls, diags: Sequence[Diagnostic]) -> Checks:

        records = [as_record(d) for d in diags]
        return cls(tuple(r for r in records if r["severity"] == "error"),
                   sum(r["severity"] == "warning" for r in records))


def _load_checks(ctx: click.Context, param: click.Parameter, value: Path | None) -> Checks | None:
    if value is None:
        return None
    shape = "not the JSON written by `meshc check --format json`"
    try:
        doc = json.loads(value.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx, param) from exc
    except ValueError as exc:
        raise click.BadParameter(f"{value} is {shape} ({exc})", ctx, param) from exc
    findings = doc.get("findings") if isinstance(doc, dict) else None
    if not isinstance(findings, list) or not all(
            isinstance(f, dict) and isinstance(f.get("severity"), str) for f in findings):
        raise click.BadParameter(f"{value} is {shape} (no \"findings\" list of objects with a severity)",
                                 ctx, param)
    return Checks(tuple(f for f in findings if f["severity"] == "error"),
                  sum(f["severity"] == "warning" for f in findings))


def _where(finding: dict[str, Any]) -> str:
    file = str(finding.get("file") or "")
    line, col = finding.get("line") or 0, finding.get("col") or 0
    if not file:
        return "-"
    return f"{file}:{line}:{col or 1}" if line else file


def _key(finding: dict[str, Any]) -> tuple[str, str, str]:
    return (_where(finding), str(finding.get("code", "")), str(finding.get("message", "")))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _finding_rows(findings: Sequence[dict[str, Any]], budget: int, more: str) -> list[str]:
    """Table rows of findings while they fit in `budget` bytes (CHECK_ROWS at most), then one
    row saying how many were left out."""
    rows: list[str] = []
    used = 0
    for f in findings[:CHECK_ROWS]:
        row = (f"| `{code(_where(f))}` | {cell(str(f.get('env') or '-'))} | `{code(str(f.get('code', '')))}` | "
               f"{cell(str(f.get('message', '')))} |")
        if used + size(row) + 1 > budget:
            break
        rows.append(row)
        used += size(row) + 1
    left = len(findings) - len(rows)
    if left:
        rows.append(f"| … | | | {left} more not listed here; {more} |")
    return rows


def checks_section(checks: Checks, budget: int) -> str:
    """Markdown opening the comment when the head fails its checks (empty when they pass)."""
    if checks.passed:
        return ""
    n = len(checks.errors)
    head = [f"## :x: Checks fail on the head: {_plural(n, 'error')}", "",
            f"`meshc check` on the head finds {_plural(n, 'error')} and {_plural(checks.warnings, 'warning')}; "
            "`meshc build` writes no bundle until the errors are fixed.", "",
            "| Where | Env | Code | Message |", "|---|---|---|---|"]
    rows = _finding_rows(checks.errors, budget - sum(size(h) + 1 for h in head) - 200,
                         "run `meshc check` for all of them")
    return "\n".join(head + rows + [""]) + "\n"


def checks_text(checks: Checks) -> str:
    if checks.passed:
        return ""
    lines = [f"Checks fail on the head: {_plural(len(checks.errors), 'error')}, "
             f"{_plural(checks.warnings, 'warning')}"]
    lines += [f"  {_where(f)}: error[{f.get('code', '')}]: {f.get('message', '')}"
              + (f" (env {f['env']})" if f.get("env") else "") for f in checks.errors]
    return "\n".join(lines) + "\n\n"


def render_all(changes: Any, fmt: str, max_bytes: int, checks: Checks | None, color: bool = False) -> str:
    """One format of the report, with the head's checks when given."""
    if fmt == "json":
        if checks is None:
            return render_json(changes)

        return orjson.dumps({**to_json(changes), "checks": checks.summary()},
                            option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "text":
        return (checks_text(checks) if checks else "") + render_text(changes, color=color)
    section = checks_section(checks, max_bytes // CHECKS_SHARE) if checks else ""
    body = render_markdown(changes, max_bytes - size(section))
    marker, rest = body.split("\n", 1)
    assert marker == MARKER
    return f"{MARKER}\n{section}{rest}"


def failure_markdown(message: str, diags: Sequence[Diagnostic], checks: Checks | None, max_bytes: int) -> str:
    """The comment when the diff cannot run: why, the failing checks, and the diff's own errors
    not already listed with the checks."""
    section = checks_section(checks, max_bytes // CHECKS_SHARE) if checks else ""
    reason = message.rstrip(".")
    parts = [MARKER, section + "## meshc diff could not run", "", cell(reason[:1].upper() + reason[1:]) + ".", ""]
    shown = {_key(f) for f in checks.errors} if checks else set()
    own = [f for f in Checks.from_diagnostics(diags).errors if _key(f) not in shown]
    if own:
        parts += ["| Where | Env | Code | Message |", "|---|---|---|---|"]
        budget = max_bytes - size("\n".join(parts)) - 400
        parts += _finding_rows(own, budget, "run `meshc diff` for all of them")
        parts.append("")
    elif section:
        parts += ["The errors are listed above.", ""]
    parts.append("The diff is shown again once both sides compile.")
    return "\n".join(parts) + "\n"


# --- the command ---------------------------------------------------------------------------------

@click.command("diff")
@click.option("--base", required=True, metavar="REF|DIR",
              help="Old side: a git ref, a repository directory, or a bundle directory (out/ or out/<env>/).")
@click.option("--head", default=None, metavar="REF|DIR",
              help="New side, same forms as --base (default: the working tree at --root).")
@click.option("--env", "envs", multiple=True, metavar="NAME", help="Environment to compare (repeatable; default all).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text",
              show_default=True, help="text for terminals, markdown for a PR comment, json (schema meshc.diff/v1).")
@click.option("--output", "outputs", multiple=True, metavar="FORMAT=PATH", callback=_parse_outputs,
              help="Write FORMAT (text, markdown or json) to PATH instead of stdout (repeatable: several "
                   "formats from one run; each file written atomically).")
@click.option("--checks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              callback=_load_checks, metavar="FILE",
              help="Output of `meshc check --format json` on the head: failing findings open the markdown "
                   "and text reports; the json report gets a \"checks\" object.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are changes (after the ignore file).")
@click.option("--max-bytes", type=click.IntRange(min=MIN_BUDGET), default=DEFAULT_BUDGET, show_default=True,
              help="Size budget of the markdown output; objects that do not fit are folded and counted.")
@click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Repository holding environments/, meshc.yaml and .meshc-diffignore.")
@click.pass_context
def diff_command(ctx: click.Context, base: str, head: str | None, envs: tuple[str, ...], fmt: str,
                 outputs: tuple[tuple[str, Path], ...], checks: Checks | None, exit_code: bool,
                 max_bytes: int, root: Path) -> None:
    """Show what changes in the compiled bundles between two versions.

    \b
    Example:
      meshc diff --base origin/main                      # working tree vs main
      meshc diff --base v1.2 --head v1.3 --env prod
      meshc diff --base origin/main --format markdown > comment.md
      meshc diff --base old-out/ --head out/ --format json
      meshc check --format json > check.json
      meshc diff --base origin/main --checks check.json \\
          --output markdown=comment.md --output json=diff.json --output text=diff.txt
    Objects are matched by kind/namespace/name per environment; risk flags come first;
    sensitive values are masked (docs/diff.md). With --output nothing goes to stdout; when
    the diff cannot run, the markdown file still says why (exit code 2).
    """
    from meshc.diff.run import DiffError, DiffRequest, run  # deepdiff: imported only when diffing

    if outputs and ctx.get_parameter_source("fmt") not in (ParameterSource.DEFAULT, None):
        raise click.UsageError("--format prints to stdout; with --output name every format as "
                               "--output FORMAT=PATH", ctx)
    try:
        changes = run(DiffRequest(base, head, root, envs, os.environ.get(SALT_ENV, "")))
    except DiffError as exc:
        text = render_diagnostics(exc.diagnostics)
        if text:
            click.echo(text, err=True, nl=False)
        click.echo(f"error: {exc.message}", err=True)
        markdown = [path for f, path in outputs if f == "markdown"]
        if markdown:
            _write_all([(markdown[0], failure_markdown(exc.message, exc.diagnostics, checks, max_bytes))])
        sys.exit(2)
    if outputs:
        _write_all([(path, render_all(changes, f, max_bytes, checks)) for f, path in outputs])
    else:
        click.echo(render_all(changes, fmt, max_bytes, checks, color=sys.stdout.isatty()), nl=False)
    if exit_code and not changes.empty:
        sys.exit(1)
