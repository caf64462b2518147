"""`meshc drift` command line: parse flags, call `meshc.adopt.drift`, print one format or write several.

Exit codes: 0 no drift (or drift without --exit-code), 1 drift found with --exit-code (changes
suppressed by the ignore file do not count), 2 usage or input error (unknown environment, a
repository that does not compile, live input of which nothing usable was read, bad ignore file).
The report goes to stdout (or --output files), everything else to stderr; diagnostics about the
live input (F001-F003, unreadable files) are printed at their file:line and do not stop the run
when something usable was read, but an error among them (a YAML error, an object defined twice)
makes the exit code 2 after the report: it is partial. Formats and the change model are `meshc diff`'s (docs/diff.md),
with drift's title and marker (`<!-- meshc-drift -->`), so a drift comment never replaces the
review comment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from meshc.cli.diff import FORMATS, SALT_ENV, _parse_outputs, _write_all, render_all
from meshc.diff.model import ChangeSet
from meshc.diff.render.markdown import DEFAULT_BUDGET, FULL_REPORT, MARKER, MIN_BUDGET
from meshc.diff.sides import DiffError
from meshc.model.diagnostics import Severity
from meshc.model.diagnostics import render_text as render_diagnostics

DRIFT_MARKER = "<!-- meshc-drift -->"


def render(changes: ChangeSet, fmt: str, env: str, max_bytes: int, color: bool = False) -> str:
    """One format of the drift report: `meshc diff`'s, titled as drift."""
    text = render_all(changes, fmt, max_bytes, None, color=color)
    if fmt == "text":
        first, _, rest = text.partition("\n")
        if rest.startswith("no changes\n"):
            rest = "no drift\n" + rest[len("no changes\n"):]
        return f"meshc drift: {env}: {changes.base.label} -> {changes.head.label}\n{rest}"
    if fmt == "markdown":
        marker, _, rest = text.partition("\n")
        assert marker == MARKER
        rest = rest.replace("## meshc diff\n", "## meshc drift\n", 1)
        rest = rest.replace(FULL_REPORT, f"run `meshc drift {env} --format text` for the full report")
        return f"{DRIFT_MARKER}\n{rest}"
    return text


@click.command("drift")
@click.argument("env", metavar="ENV")
@click.option("--live", "live", multiple=True, metavar="FILE|DIR|-",
              help="Live objects: `kubectl get ... -A -o yaml` output, a folder of such files, or - for stdin "
                   "(repeatable).")
@click.option("--namespace", default="default", show_default=True, metavar="NS",
              help="Namespace of live objects that name none (kubectl's -n when the output came from one).")
@click.option("--include-unmanaged", is_flag=True,
              help="Also report live objects that the bundle lacks and that are not managed by meshc "
                   "(no app.kubernetes.io/managed-by: meshc label), as added.")
@click.option("--bundle-namespaces", is_flag=True,
              help="Leave out live objects outside the namespaces ENV's bundle writes (several environments "
                   "in one cluster).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Compare only objects of this kind (repeatable; e.g. DestinationRule).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text", show_default=True,
              help="text for terminals, markdown for a comment or an issue, json (schema meshc.diff/v1).")
@click.option("--output", "outputs", multiple=True, metavar="FORMAT=PATH", callback=_parse_outputs,
              help="Write FORMAT (text, markdown or json) to PATH instead of stdout (repeatable).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there is drift (after the ignore file).")
@click.option("--max-bytes", type=click.IntRange(min=MIN_BUDGET), default=DEFAULT_BUDGET, show_default=True,
              help="Size budget of the markdown output; objects that do not fit are folded and counted.")
@click.option("--print-command", is_flag=True,
              help="Print the kubectl command that reads ENV's live objects, and exit.")
@click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Repository holding environments/, meshc.yaml and .meshc-diffignore.")
@click.pass_context
def drift_command(ctx: click.Context, env: str, live: tuple[str, ...], namespace: str, include_unmanaged: bool,
                  bundle_namespaces: bool, kinds: tuple[str, ...], fmt: str, outputs: tuple[tuple[str, Path], ...],
                  exit_code: bool, max_bytes: int, print_command: bool, root: Path) -> None:
    """Compare ENV's compiled bundle with the objects live in a cluster.

    \b
    Example:
      $(meshc drift prod --print-command) > live.yaml    # kubectl get <prod's kinds> -A -o yaml
      meshc drift prod --live live.yaml --exit-code
      kubectl get destinationrules.networking.istio.io -A -o yaml | meshc drift prod --live - --kind DestinationRule
      meshc drift prod --live live.yaml --format markdown > drift.md
    A bundle object missing live is removed; a live object labelled app.kubernetes.io/managed-by:
    meshc that the bundle lacks is added (left behind); others are counted, not reported, unless
    --include-unmanaged. Server-set fields, GitOps bookkeeping and CRD defaults are ignored;
    Envoy and iptables files are not compared (docs/drift.md).
    """
    from meshc.adopt.drift import DriftRequest, compile_expected, drift, kubectl_command  # deepdiff: lazily
    try:
        if print_command:
            expected = compile_expected(root, env)
            click.echo(kubectl_command(sorted({(g, oid.kind) for oid, g in expected.groups.items()})))
            return
        if not live:
            raise click.UsageError("name the live objects with --live FILE|DIR|- (or use --print-command)", ctx)
        if outputs and ctx.get_parameter_source("fmt") not in (ParameterSource.DEFAULT, None):
            raise click.UsageError("--format prints to stdout; with --output name every format as "
                                   "--output FORMAT=PATH", ctx)
        result = drift(DriftRequest(env, live, root, namespace, include_unmanaged, kinds,
                                    os.environ.get(SALT_ENV, ""), bundle_namespaces))
    except DiffError as exc:
        text = render_diagnostics(exc.diagnostics)
        if text:
            click.echo(text, err=True, nl=False)
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    text = render_diagnostics(result.diagnostics)
    if text:
        click.echo(text, err=True, nl=False)
    changes = result.changes
    if outputs:
        _write_all([(path, render(changes, f, env, max_bytes)) for f, path in outputs])
    else:
        click.echo(render(changes, fmt, env, max_bytes, color=sys.stdout.isatty()), nl=False)
    if any(d.severity is Severity.ERROR for d in result.diagnostics):
        sys.exit(2)  # part of the live input was not read (a YAML error, a duplicate): the report is partial
    if exit_code and not changes.empty:
        sys.exit(1)
