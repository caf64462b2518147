"""`meshc who-can-reach ENV HOST` and `meshc what-can-reach ENV NAMESPACE`: the visibility model
(meshc.proxy.reach) over an environment's objects, compiled in memory like `meshc render`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from meshc import api
from meshc.front.declschema import did_you_mean
from meshc.model.diagnostics import has_errors, render_text
from meshc.model.results import EnvResult
from meshc.proxy.reach import OTHER, Answer, Caller, Mesh

_ROOT = click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".",
                     show_default=True, help="Repository holding environments/.")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                       help="Output format.")
_BRIEF = click.option("--brief", is_flag=True, help="One line per answer, without the reasons.")


def mesh_of(env: EnvResult) -> Mesh:
    """The visibility model of one compiled environment, with its env.yaml settings."""
    settings = env.settings
    egress = getattr(settings, "egress", None)
    known = [Caller(ns, sa) for ns, accounts in (getattr(settings, "namespaces", None) or ())
             for sa in (None, *accounts)]
    return Mesh([a.body for a in env.artifacts], outbound_policy=settings.proxy.outbound_policy,
                trust_domain=settings.trust_domain, dataplane=getattr(settings, "dataplane", "sidecar"),
                root_namespace=getattr(egress, "control_plane_namespace", None) or "istio-system", known=known)


def _load(root: Path, env: str) -> EnvResult:
    _, result = api.compile_repo(root, [env])
    text = render_text(result.diagnostics)
    if text:
        click.echo(text, err=True, nl=False)
    if has_errors(result.diagnostics) or env not in result.envs:
        sys.exit(2)
    return result.envs[env]


def _header(env: str, mesh: Mesh) -> dict[str, Any]:
    return {"environment": env, "dataplane": mesh.dataplane, "outboundPolicy": mesh.outbound_policy,
            "trustDomain": mesh.trust_domain}


def _emit(fmt: str, brief: bool, title: str, doc: dict[str, Any], answers: Sequence[Answer], by_host: bool) -> None:
    if fmt == "json":
        doc["answers"] = [a.to_json() for a in answers]
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return
    click.echo(title)
    width = max((len(a.host if by_host else str(a.caller)) for a in answers), default=0)
    for a in answers:
        who = a.host if by_host else str(a.caller)
        click.echo(f"  {who:<{width}}  {a.verdict:<7}  {a.path}")
        if not brief:
            for reason in a.reasons:
                click.echo(f"      {reason}")
    counts = {v: sum(1 for a in answers if a.verdict == v) for v in ("allowed", "bypass", "denied", "blocked")}
    click.echo(", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no answers")


@click.command("who-can-reach")
@click.argument("env")
@click.argument("host")
@_FORMAT
@_BRIEF
@_ROOT
def who_can_reach_command(env: str, host: str, fmt: str, brief: bool, root: Path) -> None:
    """Which callers reach HOST in ENV: per namespace the objects mention, per service account a
    policy names, and any other namespace; each answer is allowed, bypass (passthrough around the
    registry), denied (an AuthorizationPolicy refuses) or blocked (REGISTRY_ONLY, not visible),
    with its path and the objects and fields that decided it.

    \b
    Example:
      meshc who-can-reach prod api.stripe.com
      meshc who-can-reach prod api.stripe.com --format json --brief
    """
    mesh = mesh_of(_load(root, env))
    if not mesh.knows(host):
        known = mesh.hosts()
        click.echo(f"meshc: error: unknown host {host!r} in {env}: no ServiceEntry or VirtualService names it"
                   f"{did_you_mean(host, known)}", err=True)
        click.echo(f"    known hosts: {', '.join(known[:20]) or 'none'}" + (" ..." if len(known) > 20 else ""),
                   err=True)
        sys.exit(2)
    answers = mesh.who_can_reach(host)
    doc = _header(env, mesh) | {"host": host}
    _emit(fmt, brief, f"who can reach {host} in {env} (dataplane {mesh.dataplane}, outbound policy "
                      f"{mesh.outbound_policy}):", doc, answers, by_host=False)


@click.command("what-can-reach")
@click.argument("env")
@click.argument("namespace")
@click.option("--service-account", "-s", "service_account", default=None, metavar="SA",
              help="The caller's service account (default: any service account no policy names).")
@_FORMAT
@_BRIEF
@_ROOT
def what_can_reach_command(env: str, namespace: str, service_account: str | None, fmt: str, brief: bool,
                           root: Path) -> None:
    """Which hosts of ENV a workload in NAMESPACE reaches, and how: allowed, bypass, denied or
    blocked, with the path and the objects and fields that decided it.

    \b
    Example:
      meshc what-can-reach prod checkout
      meshc what-can-reach prod billing --service-account invoicer --format json
    """
    mesh = mesh_of(_load(root, env))
    if namespace == OTHER:
        click.echo(f"meshc: error: {OTHER!r} is not a namespace name", err=True)
        sys.exit(2)
    known = mesh.namespaces()
    if namespace not in known:
        click.echo(f"meshc: note: no object of {env} mentions namespace {namespace!r}"
                   f"{did_you_mean(namespace, known)}; its answers are those of any other namespace", err=True)
    answers = mesh.what_can_reach(namespace, service_account)
    doc = _header(env, mesh) | {"caller": answers[0].caller.to_json() if answers else
                                {"namespace": namespace, "serviceAccount": service_account}}
    who = namespace + (f" (service account {service_account})" if service_account else "")
    _emit(fmt, brief, f"what {who} can reach in {env} (dataplane {mesh.dataplane}, outbound policy "
                      f"{mesh.outbound_policy}):", doc, answers, by_host=True)
