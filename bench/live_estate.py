"""A hand-written-looking Istio estate, per environment, drifted apart at random: input for `meshc import`.

    python bench/live_estate.py OUT_DIR [--services 1000] [--envs dev,staging,prod] [--seed 7] [--drift 0.3]

writes OUT_DIR/<env>.yaml, each as `kubectl get serviceentries,workloadentries,destinationrules,
virtualservices -A -o yaml` prints it (a `kind: List`, with the API server's fields: resourceVersion,
uid, generation, creationTimestamp, managedFields, status, kubectl's last-applied annotation).

Services of four shapes, as platform teams write them by hand (none made by meshc): SaaS APIs
(DNS, TLS origination per port in a DestinationRule), databases on VMs (STATIC, WorkloadEntries
selected by labels, subsets), legacy TCP hosts (NONE, a CIDR), multi-host HTTP APIs (one
DestinationRule per host). Some objects meshc cannot declare ride along: VirtualServices, a
ServiceEntry with subjectAltNames, a DestinationRule for an in-cluster host. Per environment each
service drifts with probability `drift`: another connection limit, one more endpoint, a port
less, a narrower exportTo, another owner; some services exist in one environment only, some miss
one. Deterministic for a seed (random.Random(seed), no clock).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
from pathlib import Path
from typing import Any

import yaml

V1 = "networking.istio.io/v1"


def _meta(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _service(rng: random.Random, i: int) -> list[dict[str, Any]]:
    shape = ("saas", "db", "legacy", "multi")[i % 4]
    name = f"{shape}-{i:05d}"
    ns = rng.choice(("egress", "egress", "data", "partners"))
    owner = {"meshc.dev/owner": f"team-{rng.choice(('payments', 'risk', 'data', 'search', 'ops'))}"}
    if shape == "saas":
        host = f"api.vendor{i}.example.com"
        se = {"apiVersion": V1, "kind": "ServiceEntry", "metadata": _meta(name, ns, owner), "spec": {
            "hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 443},
                      {"number": 443, "name": "https", "protocol": "HTTPS"}]}}
        dr = {"apiVersion": V1, "kind": "DestinationRule", "metadata": _meta(name, ns), "spec": {
            "host": host, "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": rng.choice((50, 100, 200)), "connectTimeout": "2s"}},
                "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE", "sni": host}}]}}}
        return [se, dr]
    if shape == "db":
        region = rng.choice(("eu-west1", "eu-central1"))
        se = {"apiVersion": V1, "kind": "ServiceEntry", "metadata": _meta(name, ns, owner), "spec": {
            "hosts": [f"{name}.db.example.internal"], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": 5432, "name": "tcp-postgres", "protocol": "TCP"}],
            "workloadSelector": {"labels": {"app": name}}}}
        wes = [{"apiVersion": V1, "kind": "WorkloadEntry", "metadata": _meta(f"{name}-pg-{k}", ns), "spec": {
            "address": f"10.{20 + i % 50}.{i % 250}.{10 + k}", "labels": {"app": name, "role": role},
            "locality": f"{region}/{region}-{'abc'[k]}", "network": f"net-{region}", "serviceAccount": name}}
            for k, role in enumerate(("primary", "replica"))]
        dr = {"apiVersion": V1, "kind": "DestinationRule", "metadata": _meta(name, ns), "spec": {
            "host": f"{name}.db.example.internal",
            "subsets": [{"name": "primary", "labels": {"role": "primary"}},
                        {"name": "replica", "labels": {"role": "replica"},
                         "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}}}]}}
        return [se, *wes, dr]
    if shape == "legacy":
        se = {"apiVersion": V1, "kind": "ServiceEntry", "metadata": _meta(name, ns, owner), "spec": {
            "hosts": [f"{name}.legacy.example.internal"], "addresses": [f"192.168.{i % 250}.0/28"],
            "location": "MESH_EXTERNAL", "resolution": "NONE",
            "ports": [{"number": 2000 + i % 1000, "name": "tcp", "protocol": "TCP"}]}}
        return [se]
    hosts = [f"a.api{i}.example.net", f"b.api{i}.example.net"]
    se = {"apiVersion": V1, "kind": "ServiceEntry", "metadata": _meta(name, ns, owner), "spec": {
        "hosts": hosts, "location": "MESH_EXTERNAL", "resolution": "DNS",
        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}}
    drs = [{"apiVersion": V1, "kind": "DestinationRule",
            "metadata": _meta(f"{name}-{h.replace('.', '-')}", ns), "spec": {
                "host": h, "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s",
                                                                  "baseEjectionTime": "30s"}}}} for h in hosts]
    out = [se, *drs]
    if i % 8 == 3:
        out.append({"apiVersion": V1, "kind": "VirtualService", "metadata": _meta(name, ns), "spec": {
            "hosts": hosts, "tls": [{"match": [{"port": 443, "sniHosts": hosts}],
                                     "route": [{"destination": {"host": hosts[0], "port": {"number": 443}}}]}]}})
    return out


def _drift(rng: random.Random, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    objs = copy.deepcopy(objs)
    se = objs[0]
    what = rng.choice(("limit", "endpoint", "port", "export", "owner"))
    if what == "limit":
        for o in objs:
            pool = o["spec"].get("trafficPolicy", {}).get("connectionPool")
            if pool:
                pool["tcp"]["maxConnections"] = rng.choice((400, 800, 1000))
                return objs
        what = "owner"
    if what == "endpoint" and se["spec"].get("workloadSelector"):
        we = copy.deepcopy(next(o for o in objs if o["kind"] == "WorkloadEntry"))
        we["metadata"]["name"] = we["metadata"]["name"].rsplit("-", 1)[0] + "-9"
        we["spec"]["address"] = we["spec"]["address"].rsplit(".", 1)[0] + ".99"
        we["spec"]["labels"]["role"] = "replica"
        objs.insert(1, we)
        return objs
    if what == "port" and len(se["spec"]["ports"]) > 1:
        gone = se["spec"]["ports"].pop()["number"]
        for o in objs[1:]:
            levels = o["spec"].get("trafficPolicy", {}).get("portLevelSettings")
            if levels:
                levels[:] = [lv for lv in levels if lv["port"]["number"] != gone]
        return objs
    if what == "export":
        se["spec"]["exportTo"] = [".", "istio-system"]
        for o in objs[1:]:
            if o["kind"] == "DestinationRule":
                o["spec"]["exportTo"] = [".", "istio-system"]
        return objs
    se["metadata"].setdefault("annotations", {})["meshc.dev/owner"] = "team-platform"
    return objs


def _as_live(obj: dict[str, Any], env: str) -> dict[str, Any]:
    """`obj` as the API server returns it."""
    out = copy.deepcopy(obj)
    seed = f"{env}/{obj['kind']}/{obj['metadata']['namespace']}/{obj['metadata']['name']}".encode()
    digest = hashlib.sha256(seed).hexdigest()
    meta = out["metadata"]
    meta.update({"resourceVersion": str(int(digest[:6], 16)), "generation": 1 + int(digest[6], 16) % 3,
                 "uid": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
                 "creationTimestamp": "2026-01-05T09:30:00Z",
                 "managedFields": [{"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
                                    "manager": "kubectl-client-side-apply", "operation": "Update"}]})
    meta.setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    out["status"] = {}
    return out


def live_estate(services: int, envs: tuple[str, ...] = ("dev", "staging", "prod"), seed: int = 7,
                drift: float = 0.3) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {env: [] for env in envs}
    for i in range(services):
        objs = _service(rng, i)
        only = rng.random()
        present = envs if only > 0.1 else (rng.choice(envs),) if only > 0.05 else envs[1:]
        for env in present:
            mine = _drift(rng, objs) if rng.random() < drift else objs
            out[env].extend(_as_live(o, env) for o in mine)
    for env in envs:
        out[env].append(_as_live({"apiVersion": V1, "kind": "ServiceEntry", "metadata": _meta("pinned-cert", "egress"),
                                  "spec": {"hosts": ["pinned.example.com"], "subjectAltNames": ["spiffe://pinned"],
                                           "resolution": "DNS", "location": "MESH_EXTERNAL",
                                           "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}}, env))
        out[env].append(_as_live({"apiVersion": V1, "kind": "DestinationRule", "metadata": _meta("reviews", "shop"),
                                  "spec": {"host": "reviews.shop.svc.cluster.local",
                                           "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}, env))
    return out


def write(out_dir: Path, estate: dict[str, list[dict[str, Any]]]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for env, objs in estate.items():
        path = out_dir / f"{env}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs,
                                        "metadata": {"resourceVersion": ""}}, sort_keys=False))
        paths[env] = path
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--envs", default="dev,staging,prod")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--drift", type=float, default=0.3)
    args = ap.parse_args()
    paths = write(args.out, live_estate(args.services, tuple(args.envs.split(",")), args.seed, args.drift))
    for env, path in paths.items():
        print(f"{env}: {path}")


if __name__ == "__main__":
    main()
