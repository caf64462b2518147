"""The same estate compiled by kapitan (Jinja2 input type), for the meshc / kapitan ratio.

Setup (untimed): kapitan is pip-installed, pinned, into its own virtual environment. A kapitan
project is generated from the estate: one target per environment whose parameters hold, for every
service of that environment, the merged service data as meshc's templates receive it (the `se`,
`we` and `dr` views meshc's expand pass builds; computed here with meshc's own Python API), and
Jinja2 templates equivalent to meshc's templates/*.json.j2 (the very files, with meshc's `json`
filter spelled as Jinja2's built-in `tojson`). A stub template per service renders its
ServiceEntry, WorkloadEntries and DestinationRules into <namespace>/<service>.yaml, plus a
kustomization.yaml per environment, so kapitan writes one file per service like meshc.
What kapitan does not do that meshc does: merge overlays, validate, check, Envoy bootstrap,
index.json. The comparison is therefore generous to kapitan.

Timed: `kapitan compile` in the project directory (compiled/ removed before each run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import orjson
import yaml

KAPITAN_VERSION = "0.36.3"  # latest on PyPI when pinned (`pip index versions kapitan`)
TEMPLATES = ("serviceentry.json.j2", "workloadentry.json.j2", "destinationrule.json.j2")
SERVICE_TEMPLATE = """---
{% set se = s.se %}{% include "lib/serviceentry.json.j2" %}

{% for we in s.wes %}---
{% include "lib/workloadentry.json.j2" %}

{% endfor %}{% for dr in s.drs %}---
{% include "lib/destinationrule.json.j2" %}

{% endfor %}"""  # trim_blocks eats the first newline after each include
KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
{% for file in inventory.parameters.files %}- {{ file }}
{% endfor %}"""


def ensure_installed(venv: Path) -> tuple[Path | None, str]:
    """kapitan==KAPITAN_VERSION in `venv` (created if missing); (binary, "") or (None, reason)."""
    binary = venv / "bin" / "kapitan"
    if binary.exists() and _version(binary) == KAPITAN_VERSION:
        return binary, ""
    steps = [["python3", "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "--quiet", f"kapitan=={KAPITAN_VERSION}"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"{' '.join(cmd[:3])} failed: {(proc.stderr or proc.stdout)[-1500:]}"
    found = _version(binary)
    return (binary, "") if found == KAPITAN_VERSION else (None, f"kapitan --version gave {found!r}")


def _version(binary: Path) -> str:
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def service_views(estate: Path) -> dict[str, dict[str, Any]]:
    """env -> {service: {se, wes, drs}} from meshc's own passes (no cache, nothing written)."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from meshc.api import compile_repo
    from meshc.expand.services import dr_views, se_view, we_views

    _, result = compile_repo(estate, (), use_cache=False)
    if not result.envs:
        raise RuntimeError("meshc did not compile the estate: " + "; ".join(
            d.message for d in result.diagnostics[:3]))
    out: dict[str, dict[str, Any]] = {}
    for env, env_result in result.envs.items():
        settings = env_result.settings
        out[env] = {svc.name: {
            "se": se_view(svc, settings),
            "wes": _by_name(we_views(svc) if svc.endpoints_as == "workloadEntries" else []),
            "drs": _by_name([v for v in dr_views(svc, settings) if v is not None])}
            for svc in env_result.services}
    return out


def _by_name(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of one kind in name order, as meshc's emit writes them."""
    return sorted(views, key=lambda v: v["name"])


def _target(env: str, services: dict[str, Any]) -> dict[str, Any]:
    files = sorted(f"{v['se']['namespace']}/{name}.yaml" for name, v in services.items())
    compile_items = [{"input_type": "jinja2", "input_paths": [f"templates/{env}"],
                      "output_path": ".", "suffix_remove": True}]
    return {"parameters": {"kapitan": {"vars": {"target": env}, "compile": compile_items},
                           "files": files, "services": services}}


def _write_templates(dest: Path, env: str, services: dict[str, Any]) -> None:
    for name, view in services.items():
        stub = dest / "templates" / env / view["se"]["namespace"] / f"{name}.yaml.j2"
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f'{{% set s = inventory.parameters.services["{name}"] %}}'
                        '{% include "lib/service.yaml.j2" %}')
    (dest / "templates" / env / "kustomization.yaml.j2").write_text(KUSTOMIZATION)


def _write_lib(dest: Path, template_dirs: list[Path]) -> None:
    lib = dest / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATES:
        source = next(d / name for d in template_dirs if (d / name).is_file())
        (lib / name).write_text(source.read_text().replace("| json", "| tojson"))
    (lib / "service.yaml.j2").write_text(SERVICE_TEMPLATE)


def prepare_project(estate: Path, dest: Path, template_dirs: list[Path]) -> dict[str, int]:
    """Write the kapitan project for `estate` into `dest` (replaced); returns counts."""
    views = service_views(estate)
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "inventory" / "targets").mkdir(parents=True)
    (dest / "inventory" / "classes").mkdir(parents=True)
    _write_lib(dest, template_dirs)
    for env, services in views.items():
        target = dest / "inventory" / "targets" / f"{env}.yml"
        target.write_bytes(orjson.dumps(_target(env, services), default=_plain))
        _write_templates(dest, env, services)
    return {"targets": len(views), "services": sum(len(s) for s in views.values())}


def compile_command(binary: Path) -> list[str]:
    return [str(binary), "compile", "--ignore-version-check", "--quiet"]


def output_files(dest: Path) -> int:
    compiled = dest / "compiled"
    return sum(1 for p in compiled.rglob("*") if p.is_file()) if compiled.is_dir() else 0


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader) if d is not None]


def compare(bundle_root: Path, compiled: Path) -> dict[str, int]:
    """How many of meshc's manifest files kapitan reproduced with equal objects."""
    same = differ = 0
    for path in sorted(bundle_root.glob("*/*/*.yaml")) + sorted(bundle_root.glob("*/kustomization.yaml")):
        rel = path.relative_to(bundle_root)
        twin = compiled / rel
        if twin.is_file() and _docs(path) == _docs(twin):
            same += 1
        else:
            differ += 1
    return {"files_equal_to_meshc": same, "files_differing_from_meshc": differ}
