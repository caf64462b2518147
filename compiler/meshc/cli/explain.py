"""`meshc explain ENV OBJECT [FIELD]`: where each value of an emitted object came from
(meshc.adopt.explain; docs/explain.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meshc.adopt.explain import ExplainError, explain, render_json, render_text
from meshc.model.diagnostics import render_text as render_diagnostics


@click.command("explain")
@click.argument("env")
@click.argument("object_id", metavar="OBJECT")
@click.argument("field", required=False, metavar="[FIELD]")
@click.option("-n", "--namespace", default="", metavar="NS", help="Namespace of OBJECT when it is given as KIND/NAME.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format (json: schema meshc.explain/v1, docs/explain.md).")
@click.option("--no-checks", is_flag=True, help="Skip the check layers (no findings or waivers are shown).")
@click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Repository holding environments/.")
def explain_command(env: str, object_id: str, field: str | None, namespace: str, fmt: str, no_checks: bool,
                    root: Path) -> None:
    """Where each value of an object ENV emits came from: the declaration layers that wrote it
    (which one wins), env.yaml settings and defaults, the template, and the check findings and
    waivers at it. OBJECT is named as `meshc diff` or kubectl print it; FIELD as the diff prints
    paths (spec.ports[number=80].name, or spec.ports[0].name); without FIELD, every field.

    \b
    Example:
      meshc explain prod DestinationRule/egress/payments-stripe spec.trafficPolicy.connectionPool
      meshc explain prod dr/payments-stripe 'spec.trafficPolicy.portLevelSettings[port.number=80].tls'
      meshc explain prod 'EnvoyCluster/envoy/clusters.json/outbound|80||api.stripe.com' connect_timeout
      meshc explain prod IptablesChain/iptables/orders-db-pg-1.rules/nat/MESHC_INBOUND --format json
    Exit codes: 0 explained, 2 unknown environment, object or field (with the fix).
    """
    try:
        exp = explain(root, env, object_id, field, namespace=namespace, checks=not no_checks)
    except ExplainError as exc:
        text = render_diagnostics(exc.diagnostics)
        if text:
            click.echo(text, err=True, nl=False)
        click.echo(f"meshc: error: {exc.message}" + (f"\n    fix: {exc.hint}" if exc.hint else ""), err=True)
        sys.exit(2)
    if fmt == "json":
        sys.stdout.buffer.write(render_json(exp))
    else:
        click.echo(render_text(exp), nl=False)
