"""`meshc import PATH... --env NAME [--env NAME ...]`: existing Istio YAML into declarations (docs/import.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshc.adopt.live import valid_env_name
from meshc.diff.render.plain import render_text as render_changes
from meshc.model.diagnostics import render_text
from meshc.model.ids import identity_problem

if TYPE_CHECKING:
    from meshc.adopt.importer import ImportOutcome


@click.command("import")
@click.argument("paths", nargs=-1, required=True)
@click.option("--env", "envs", multiple=True, required=True, metavar="NAME",
              help="The environment the paths describe: once for all paths, or once per path, in order.")
@click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="The repository to import into (an empty folder gets a complete estate).")
@click.option("-n", "--namespace", default="default", show_default=True,
              help="The namespace of objects that name none (as kubectl apply -n).")
@click.option("--force", is_flag=True, help="Overwrite files the import would write that already exist.")
@click.option("--dry-run", is_flag=True, help="Prove the round trip and report, but write nothing.")
@click.option("--verbose", "-v", is_flag=True, help="List every object kept verbatim, with its reason.")
def import_command(paths: tuple[str, ...], envs: tuple[str, ...], root: Path, namespace: str, force: bool,
                   dry_run: bool, verbose: bool) -> None:
    """Import Istio YAML (files, folders, kubectl get -o yaml output, - for stdin) into declarations.

    \b
    Each ServiceEntry becomes a service with its WorkloadEntries and DestinationRules folded in;
    values common to every environment go to environments/base, the rest to each environment's
    overlay; what meshc cannot declare is kept verbatim in environments/<env>/passthrough/, with
    the reason. Then the imported estate is compiled and compared with the input: exit 0 only
    when nothing differs (1: differences, listed; 2: nothing could be imported).

    \b
    Examples:
      meshc import live/prod.yaml live/staging.yaml --env prod --env staging
      kubectl get se,we,dr -A -o yaml | meshc import - --env prod
    """
    if len(envs) not in (1, len(paths)):
        raise click.UsageError(f"give --env once (for every path) or once per path: {len(paths)} path(s), "
                               f"{len(envs)} --env")
    bad = [e for e in envs if not valid_env_name(e)]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} cannot name an environment (a DNS-1123 label other than 'base')",
                                 param_hint="--env")
    if identity_problem("ServiceEntry", namespace, "x"):
        raise click.BadParameter(f"{namespace!r} is not a namespace (a DNS-1123 label)", param_hint="--namespace")
    pairs = [(envs[0] if len(envs) == 1 else envs[i], [p]) for i, p in enumerate(paths)]
    if sum(p == "-" for p in paths) > 1:
        raise click.UsageError("- (standard input) can be given once")
    from meshc.adopt.importer import run_import  # deepdiff (the round trip's comparison): lazily
    outcome = run_import(root, pairs, force=force, namespace=namespace, dry_run=dry_run)
    _report(outcome, verbose)
    if outcome.changes is None or (not outcome.written and not dry_run):
        sys.exit(2)  # nothing imported: no Istio object, a file in the way, an unreadable meshc.yaml
    sys.exit(0 if outcome.proven else 1)


def _report(outcome: ImportOutcome, verbose: bool) -> None:
    shown = [d for d in outcome.diagnostics if verbose or d.code != "F004"]
    text = render_text(shown)
    if text:
        click.echo(text, err=True, nl=False)
    if not outcome.files:
        return
    kept = len(outcome.kept)
    for env, names in outcome.services.items():
        n_kept = sum(1 for k in outcome.kept if k.env == env)
        click.echo(f"{env}: {len(names)} service(s) declared, {n_kept} object(s) kept verbatim")
    if kept and not verbose:
        reasons: dict[str, int] = {}
        for item in outcome.kept:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        click.echo(f"kept verbatim ({kept}), by reason (-v lists each object):")
        for reason, count in sorted(reasons.items(), key=lambda r: (-r[1], r[0]))[:10]:
            click.echo(f"  {count:>4}  {reason}")
    verb = "would write" if not outcome.written else "wrote"
    changed = sum(1 for rel, data in outcome.files.items() if rel not in outcome.unchanged)
    click.echo(f"{verb} {changed} file(s)" + (f", {len(outcome.unchanged)} unchanged" if outcome.unchanged else ""))
    if outcome.changes is not None:
        if outcome.proven:
            click.echo(f"round trip: meshc build of the imported estate reproduces the input "
                       f"({outcome.read} object(s), no difference)")
        else:
            click.echo("round trip: differences between the input and the imported estate:")
            click.echo(render_changes(outcome.changes), nl=False)

