"""`meshc diff` command line: parse flags, call `meshc.diff.run`, print one format.

Register with ``main.add_command(diff_command)`` in compiler/meshc/cli.py.
Exit codes: 0 no changes (or changes without --exit-code), 1 changes found with --exit-code,
2 usage or input error (bad ref or directory, a side that does not compile, bad ignore file).
Everything but the report goes to stderr, so stdout stays machine-clean.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .diagnostics import render_text as render_diagnostics
from .diff_markdown import DEFAULT_BUDGET, MIN_BUDGET, render_markdown
from .diff_render import render_json, render_text

SALT_ENV = "MESHC_DIFF_SALT"


@click.command("diff")
@click.option("--base", required=True, metavar="REF|DIR",
              help="Old side: a git ref, a repository directory, or a bundle directory (out/ or out/<env>/).")
@click.option("--head", default=None, metavar="REF|DIR",
              help="New side, same forms as --base (default: the working tree at --root).")
@click.option("--env", "envs", multiple=True, metavar="NAME", help="Environment to compare (repeatable; default all).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text for terminals, markdown for a PR comment, json (schema meshc.diff/v1).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are changes (after the ignore file).")
@click.option("--max-bytes", type=click.IntRange(min=MIN_BUDGET), default=DEFAULT_BUDGET, show_default=True,
              help="Size budget of the markdown output; objects that do not fit are folded and counted.")
@click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Repository holding environments/, meshc.yaml and .meshc-diffignore.")
def diff_command(base: str, head: str | None, envs: tuple[str, ...], fmt: str, exit_code: bool,
                 max_bytes: int, root: Path) -> None:
    """Show what changes in the compiled bundles between two versions.

    \b
    Example:
      meshc diff --base origin/main                      # working tree vs main
      meshc diff --base v1.2 --head v1.3 --env prod
      meshc diff --base origin/main --format markdown > comment.md
      meshc diff --base old-out/ --head out/ --format json
    Objects are matched by kind/namespace/name per environment; risk flags come first;
    sensitive values are masked (docs/diff.md).
    """
    from .diff import DiffError, DiffRequest, run  # deepdiff: imported only when diffing

    try:
        changes = run(DiffRequest(base, head, root, envs, os.environ.get(SALT_ENV, "")))
    except DiffError as exc:
        text = render_diagnostics(exc.diagnostics)
        if text:
            click.echo(text, err=True, nl=False)
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    if fmt == "markdown":
        output = render_markdown(changes, max_bytes)
    elif fmt == "json":
        output = render_json(changes)
    else:
        output = render_text(changes, color=sys.stdout.isatty())
    click.echo(output, nl=False)
    if exit_code and not changes.empty:
        sys.exit(1)
