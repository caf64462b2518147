"""Generate a synthetic meshc estate: N base services x E environments, deterministic from --seed.

Layout written under --out:
    meshc.yaml                      crds/templates/policies of the project (absolute paths), out: out
    environments/base/svc-0000.yaml ~100 services per file (gen_service.py shapes)
    environments/<env>/env.yaml     settings (dev/staging/prod for E=3, else env1..envE)
    environments/<env>/services-0000.yaml   env-only services (~0.5% of N, at least one)
    environments/<env>/overrides-0000.yaml  overrides of ~3% of base services (gen_overlay.py)

Head copies for diff benchmarks: `--mutate-percent P` changes P% of the base services after
generating (or, with `--from DIR`, in a copy of an existing estate, rewriting only the base files
that hold a changed service; everything else is copied byte for byte).

With `--gateway-percent P`, P% of the base services (among those a gateway can carry) get `egress: gateway`
and every env.yaml names the gateway (docs/egress.md).

Usage: generate.py --services 1000 --envs 3 --seed 1 --out DIR [--mutate-percent 1 [--from DIR]]
                   [--gateway-percent 30]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from gen_overlay import make_override, mutate
from gen_service import NETWORKS, Decl, make_service, rng_for

FILE_SIZE = 100
STAMP_FILE = ".bench-stamp"
OVERRIDE_SHARE = 0.03
ENV_ONLY_SHARE = 0.005
HEADER = "# yaml-language-server: $schema=../../compiler/meshc/schemas/declarations.schema.json\n"
REPO = Path(__file__).resolve().parent.parent
Files = dict[str, Any]  # path relative to the estate root -> YAML document


def env_names(count: int) -> list[str]:
    return ["dev", "staging", "prod"] if count == 3 else [f"env{i + 1}" for i in range(count)]


def env_settings(name: str) -> Decl:
    profile = {"dev": "relaxed", "prod": "strict"}.get(name, "standard")
    out: Decl = {"name": name, "namespace": "egress" if name == "prod" else f"egress-{name}",
                 "trustDomain": f"{name}.mesh.example.com", "clusterDomain": "cluster.local",
                 "networks": list(NETWORKS), "policyProfile": profile,
                 "proxy": {"locality": "eu-west1/eu-west1-b"}, "vm": {"dnsCapture": True}}
    if name == "prod":
        out["production"] = True
    return out


def _chunks(items: list[Decl], size: int = FILE_SIZE) -> Iterator[tuple[int, list[Decl]]]:
    for start in range(0, len(items), size):
        yield start // size, items[start:start + size]


def base_services(services: int, seed: int) -> list[Decl]:
    return [make_service(seed, i) for i in range(services)]


def _exact_hosts(svc: Decl) -> list[str] | None:
    """The strict profile forbids wildcard hosts: www.<domain> instead of *.<domain>."""
    hosts = svc["hosts"]
    return [f"www.{h[2:]}" if h.startswith("*.") else h for h in hosts] \
        if any(h.startswith("*.") for h in hosts) else None


def env_overrides(env: str, base: list[Decl], seed: int) -> list[Decl]:
    """~3% of base services changed in `env`; strict environments also pin wildcard hosts."""
    rng = rng_for(seed, env, "overrides")
    strict = env_settings(env)["policyProfile"] == "strict"
    out: list[Decl] = []
    for svc in base:
        override = (make_override(svc, rng_for(seed, env, svc["name"]), env)
                    if rng.random() < OVERRIDE_SHARE else None)
        exact = _exact_hosts(svc) if strict else None
        if exact and (override is None or "$patch" not in override):
            override = {**(override or {"name": svc["name"]}), "hosts": exact}
        if override is not None:
            out.append(override)
    return out


def env_files(env: str, base: list[Decl], seed: int) -> Files:
    files: Files = {f"environments/{env}/env.yaml": env_settings(env)}
    overrides = env_overrides(env, base, seed)
    own = [make_service(seed, i, f"{env}-") for i in range(max(1, round(len(base) * ENV_ONLY_SHARE)))]
    if env_settings(env)["policyProfile"] == "strict":
        own = [{**svc, "hosts": _exact_hosts(svc) or svc["hosts"]} for svc in own]
    for k, chunk in _chunks(own):
        files[f"environments/{env}/services-{k:04d}.yaml"] = {"services": chunk}
    for k, chunk in _chunks(overrides):
        files[f"environments/{env}/overrides-{k:04d}.yaml"] = {"overrides": chunk}
    return files


GATEWAY = {"name": "istio-egressgateway", "namespace": "istio-system", "selector": {"istio": "egressgateway"}}
_HTTP = {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"}


def _gateway_ok(svc: Decl) -> bool:
    """What egress: gateway can carry (docs/egress.md, V035): no UDP, no clientSelector, no
    exportTo hiding it from the gateway, several hosts only on HTTP ports; and only external
    services resolved by DNS or static addresses."""
    protocols = {str(p["protocol"]).upper() for p in svc["ports"]}
    return (svc.get("location", "external") == "external" and svc.get("resolution", "none") != "none"
            and "clientSelector" not in svc and "exportTo" not in svc and "UDP" not in protocols
            and not any(h.startswith("*") for h in svc["hosts"])
            and (len(svc["hosts"]) == 1 or protocols <= _HTTP))


def estate_files(services: int, envs: int, seed: int, gateway_percent: float = 0.0) -> Files:
    """With `gateway_percent`, that share of all base services goes through the egress gateway
    (taken among those egress: gateway can carry, in an order drawn from (seed, name)), and every
    env.yaml names the gateway."""
    base = base_services(services, seed)
    if gateway_percent:
        able = sorted((svc for svc in base if _gateway_ok(svc)),
                      key=lambda svc: rng_for(seed, "gateway", svc["name"]).random())
        for svc in able[:round(len(base) * gateway_percent / 100)]:
            svc["egress"] = "gateway"
    files: Files = {f"environments/base/svc-{k:04d}.yaml": {"services": chunk}
                    for k, chunk in _chunks(base)}
    for env in env_names(envs):
        files.update(env_files(env, base, seed))
        if gateway_percent:
            files[f"environments/{env}/env.yaml"]["egress"] = {"gateway": GATEWAY}
    return files


def dump(doc: Any, path: str) -> str:
    text = yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False,
                     width=120, allow_unicode=True)
    return (HEADER if not path.endswith("env.yaml") else "") + text


_COPIED = ("crds", "templates", "policies")  # folders/files of the repo each estate gets a copy of


def project_settings(repo: Path = REPO) -> Decl:
    """meshc.yaml for a generated estate: the repo's settings, with its crds/templates/policies
    copied into the estate (meshc reads only files inside the repository it compiles)."""
    raw = yaml.safe_load((repo / "meshc.yaml").read_text()) if (repo / "meshc.yaml").is_file() else {}
    out: Decl = {"out": "out"}
    for key in ("istio", *_COPIED):
        if (raw or {}).get(key) is not None:
            out[key] = str(raw[key])
    if (raw or {}).get("diff"):
        out["diff"] = raw["diff"]
    return out


def write_estate(files: Files, out: Path, repo: Path = REPO) -> None:
    """Write a fresh estate directory (an existing one is replaced)."""
    shutil.rmtree(out, ignore_errors=True)
    for rel, doc in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(doc, rel))
    settings = project_settings(repo)
    for key in _COPIED:
        if key in settings:
            source = repo / settings[key]
            if source.is_dir():
                shutil.copytree(source, out / settings[key])
            elif source.is_file():
                shutil.copyfile(source, out / settings[key])
    ignore = (settings.get("diff") or {}).get("ignoreFile")
    if ignore and (repo / ignore).is_file():
        shutil.copyfile(repo / ignore, out / ignore)
    (out / "meshc.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


def mutate_files(files: Files, percent: float, seed: int) -> tuple[Files, list[str]]:
    """Change `percent`% of the base services (at least one); returns changed files and names."""
    base = sorted((rel, i, svc["name"]) for rel, doc in files.items()
                  if rel.startswith("environments/base/") for i, svc in enumerate(doc.get("services") or []))
    count = max(1, round(len(base) * percent / 100))
    chosen = sorted(rng_for(seed, "mutate").sample(base, min(count, len(base))))
    changed: Files = {}
    for rel, i, name in chosen:
        doc = changed.setdefault(rel, {**files[rel], "services": list(files[rel]["services"])})
        doc["services"][i] = mutate(doc["services"][i], rng_for(seed, "mutate", name))
    return changed, [name for _, _, name in chosen]


def load_base(estate: Path) -> Files:
    return {p.relative_to(estate).as_posix(): yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader)
            for p in sorted((estate / "environments" / "base").glob("*.y*ml"))}


def mutate_copy(src: Path, out: Path, percent: float, seed: int) -> list[str]:
    """Copy the estate `src` to `out` and mutate `percent`% of its base services there."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out, symlinks=True, ignore=shutil.ignore_patterns("out", ".meshc-cache"))
    changed, names = mutate_files(load_base(src), percent, seed)
    for rel, doc in changed.items():
        (out / rel).write_text(dump(doc, rel))
    return names


def generate(services: int, envs: int, seed: int, out: Path, mutate_percent: float = 0.0,
             gateway_percent: float = 0.0) -> list[str]:
    """Write an estate; with `mutate_percent`, the head side (changed services are returned)."""
    files = estate_files(services, envs, seed, gateway_percent)
    names: list[str] = []
    if mutate_percent:
        changed, names = mutate_files(files, mutate_percent, seed)
        files.update(changed)
    write_estate(files, out)
    return names


def _stamp(services: int, envs: int, seed: int, mutate_percent: float) -> str:
    """What an estate was generated from: parameters, generator code, project settings."""
    h = hashlib.sha256(repr((services, envs, seed, mutate_percent, project_settings())).encode())
    for path in sorted(Path(__file__).parent.glob("gen*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def ensure_generated(out: Path, services: int, envs: int, seed: int, mutate_percent: float = 0.0) -> bool:
    """Generate `out` unless it already holds this very estate; True when it was (re)written."""
    stamp = _stamp(services, envs, seed, mutate_percent)
    marker = out / STAMP_FILE
    if marker.is_file() and marker.read_text() == stamp:
        return False
    generate(services, envs, seed, out, mutate_percent)
    marker.write_text(stamp)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mutate-percent", type=float, default=0.0)
    ap.add_argument("--gateway-percent", type=float, default=0.0,
                    help="share of the base services that go through the egress gateway")
    ap.add_argument("--from", dest="src", type=Path, default=None,
                    help="mutate a copy of this estate instead of generating one")
    args = ap.parse_args(argv)
    if args.src is not None:
        names = mutate_copy(args.src, args.out, args.mutate_percent or 1.0, args.seed)
    else:
        names = generate(args.services, args.envs, args.seed, args.out, args.mutate_percent, args.gateway_percent)
    print(f"wrote {args.out}" + (f" ({len(names)} services changed)" if names else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
