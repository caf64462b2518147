"""Command line: parse flags, call one API function, print. Exit codes: 0 ok, 1 findings, 2 user error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import click

from . import api
from .diagnostics import Diagnostic, has_errors, render_text

ROOT_OPT = click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".",
                        show_default=True, help="Repository holding environments/.")


def _print_diags(diags: Sequence[Diagnostic]) -> None:
    text = render_text(diags)
    if text:
        click.echo(text, err=True, nl=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="meshc")
def main() -> None:
    """meshc: compile service declarations into Istio, Envoy and iptables bundles.

    \b
    Example:
      meshc build                 # compile every environment into out/<env>/
      meshc render prod | less    # print prod's bundle as one YAML stream
      meshc check --env prod      # run every check on prod
    """


@main.command()
@click.option("--env", "envs", multiple=True, metavar="NAME", help="Environment to build (repeatable; default all).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: out/ or meshc.yaml's out).")
@ROOT_OPT
def build(envs: tuple[str, ...], out: Path | None, root: Path) -> None:
    """Compile environments and write one bundle per environment.

    \b
    Example:
      meshc build --env staging --env prod --out out/
    Writes out/<env>/ atomically; on any error nothing is written and the exit code is 2.
    """
    outcome = api.build(root, envs, out)
    _print_diags(outcome.diagnostics)
    if not outcome.ok:
        sys.exit(2)
    for path in outcome.written:
        click.echo(f"wrote {path}", err=True)


@main.command()
@click.argument("env")
@ROOT_OPT
def render(env: str, root: Path) -> None:
    """Print ENV's bundle as one multi-document YAML stream on stdout.

    \b
    Example:
      meshc render prod | kubectl apply --dry-run=client -f -
    """
    _, result = api.compile_repo(root, [env])
    _print_diags(result.diagnostics)
    if has_errors(result.diagnostics):
        sys.exit(2)
    bundle = result.envs[env].bundle
    assert bundle is not None
    out = sys.stdout.buffer
    for path, data in bundle.files.items():
        if path.endswith(".yaml") and path != "kustomization.yaml":
            out.write(b"# " + path.encode() + b"\n")
            out.write(data if data.startswith(b"---") else b"---\n" + data)
