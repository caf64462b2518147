"""One synthetic service declaration, deterministic from (seed, index).

Each service follows one of seven profiles seen in real egress estates (SaaS API with TLS
origination, mutual-TLS vendor, DNS pool, legacy round-robin VIP, database on fixed IPs, VMs with
sidecars, TLS passthrough). The shapes respect what meshc accepts:
none -> no endpoints; static -> IP endpoints (RFC 1918 only for internal services); dns -> hostname endpoints or none;
dns-round-robin -> at most one endpoint; several hosts only when every port is HTTP/HTTPS/TLS;
TLS origination (simple/mutual) only on plain-HTTP (or TCP with sni) ports, never on HTTPS/TLS ports;
subsets select labels that at least one endpoint carries; exportTo is never "*" and wildcard
hosts are rare (the strict policy profile forbids both; generate.py overrides wildcard hosts there).
A service depends only on (seed, index, prefix), not on how many services the estate has.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

Decl = dict[str, Any]

PROFILES: tuple[tuple[str, int], ...] = (
    ("saas", 24), ("vendor", 12), ("pool", 14), ("legacy", 8), ("database", 16), ("vm", 16),
    ("passthrough", 10))
TEAMS = ("payments", "identity", "search", "logistics", "risk", "growth", "data", "platform",
         "messaging", "billing", "catalog", "orders", "support", "media", "ads", "security")
VENDORS = ("stripe", "adyen", "twilio", "sendgrid", "okta", "datadog", "github", "slack",
           "segment", "algolia", "auth0", "zendesk", "mapbox", "cloudinary", "pagerduty", "plaid")
REGIONS = (("eu-west1", ("eu-west1-b", "eu-west1-c", "eu-west1-d")),
           ("eu-central1", ("eu-central1-a", "eu-central1-b")),
           ("us-east1", ("us-east1-b", "us-east1-c", "us-east1-d")))
NETWORKS = ("net-eu-west1", "net-eu-central1", "net-us-east1")
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
HTTP_PORTS = (("http", 80, "HTTP"), ("http-alt", 8080, "HTTP"), ("grpc", 9090, "GRPC"),
              ("http2", 8081, "HTTP2"))
TLS_PORTS = (("https", 443, "HTTPS"), ("tls", 8443, "TLS"))
DB_PORTS = (("postgres", 5432, "TCP"), ("redis", 6379, "REDIS"), ("mysql", 3306, "MYSQL"),
            ("mongo", 27017, "MONGO"), ("admin", 9000, "TCP"))
DURATIONS = ("250ms", "500ms", "1s", "2s", "3s", "5s", "10s", "30s", "1m")


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator seeded by a string: stable across runs and Python versions."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def make_service(seed: int, index: int, prefix: str = "") -> Decl:
    """Service number `index` of the estate (env-only services use a `prefix`)."""
    rng = rng_for(seed, prefix, "svc", index)
    profile = rng.choices([p for p, _ in PROFILES], [w for _, w in PROFILES])[0]
    vendor = rng.choice(VENDORS)
    name = f"{prefix}{vendor}-{profile}-{index:05d}"
    svc: Decl = {"name": name, "owner": f"team-{rng.choice(TEAMS)}",
                 "description": f"{vendor.capitalize()} {profile} service #{index}"}
    _BUILDERS[profile](svc, rng, _Ctx(index, vendor, prefix))
    if rng.random() < 0.08:
        svc["exportTo"] = rng.choice([["."], [".", "istio-system"]])
    return svc


class _Ctx:
    """Naming context of one service: numbers that make hosts and addresses unique."""

    def __init__(self, index: int, vendor: str, prefix: str) -> None:
        self.index, self.vendor, self.prefix = index, vendor, prefix

    def host(self, label: str, domain: str = "example.com") -> str:
        return f"{label}-{self.prefix}{self.index:05d}.{self.vendor}.{domain}"

    def ip(self, k: int) -> str:
        """Internal (RFC 1918) IPs for VMs: 10.x.y.10-17, one /24 slice per service."""
        second = (200 + self.index // 256 % 50) if self.prefix else self.index // 256 % 200
        return f"10.{second}.{self.index % 256}.{10 + k}"

    def public_ip(self, k: int) -> str:
        """External IPs: 8 per service in 100.64.0.0/10 (0-3 base, 4-6 overlays, 7 mutations)."""
        n = (self.index * 8 + k + (1 << 21 if self.prefix else 0)) % (1 << 22)
        return str(ipaddress.IPv4Address("100.64.0.0") + n)

    def vip(self) -> str:
        """A virtual IP in 240.0.0.0/4, the class-E space Istio's own VIP allocation uses."""
        return f"240.{self.index // 65536 % 256}.{self.index // 256 % 256}.{self.index % 256}"


def _hosts(rng: random.Random, ctx: _Ctx, first: str, multi_ok: bool) -> list[str]:
    hosts = [ctx.host(first)]
    if multi_ok and rng.random() < 0.3:
        for region, _ in rng.sample(REGIONS, rng.randint(1, 2)):
            hosts.append(ctx.host(f"{first}-{region}"))
    return hosts


def _port(name: str, number: int, protocol: str, target: int | None = None) -> Decl:
    out: Decl = {"number": number, "protocol": protocol, "name": name}
    if target:
        out["targetPort"] = target
    return out


def _locality(rng: random.Random) -> Decl:
    region, zones = rng.choice(REGIONS)
    return {"region": region, "zone": rng.choice(zones)}


def _pool(rng: random.Random, http: bool) -> Decl:
    tcp: Decl = {"maxConnections": rng.choice((50, 100, 200, 500, 1000)),
                 "connectTimeout": rng.choice(DURATIONS[:6])}
    if rng.random() < 0.3:
        tcp["tcpKeepalive"] = {"time": "300s", "interval": "30s"}
    pool: Decl = {"tcp": tcp}
    if http and rng.random() < 0.7:
        pool["http"] = {"http2MaxRequests": rng.choice((100, 500, 1000)),
                        "maxRequestsPerConnection": rng.choice((0, 10, 100)),
                        "idleTimeout": rng.choice(("30s", "60s", "5m"))}
    return pool


def _outlier(rng: random.Random) -> Decl:
    return {"consecutive5xxErrors": rng.randint(3, 10), "interval": rng.choice(("5s", "10s", "30s")),
            "baseEjectionTime": rng.choice(("30s", "60s", "2m")),
            "maxEjectionPercent": rng.choice((10, 20, 50, 100))}


def _policy(rng: random.Random, http: bool, p_pool: float = 0.7, p_outlier: float = 0.4) -> Decl:
    policy: Decl = {}
    if rng.random() < p_pool:
        policy["connectionPool"] = _pool(rng, http)
    if rng.random() < p_outlier:
        policy["outlierDetection"] = _outlier(rng)
    if rng.random() < 0.2:
        policy["loadBalancer"] = ({"consistentHash": {"httpHeaderName": "x-user-id"}} if http
                                  and rng.random() < 0.5 else
                                  {"simple": rng.choice(("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"))})
    return policy


def _simple_tls(sni: str) -> Decl:
    return {"mode": "simple", "sni": sni, "subjectAltNames": [sni], "caCertificates": CA_FILE}


def _maybe_policy(svc: Decl, policy: Decl) -> None:
    if policy:
        svc["trafficPolicy"] = policy


def _saas(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """SaaS API on DNS: plain HTTP on port 80 with TLS originated by the sidecar, or passthrough."""
    svc.update(hosts=_hosts(rng, ctx, "api", True), location="external", resolution="dns")
    originate = rng.random() < 0.6
    ports = [_port("http", 80, "HTTP", 443)] if originate else [_port("https", 443, "HTTPS")]
    if originate and rng.random() < 0.6:
        ports.append(_port("https", 443, "HTTPS"))
    if rng.random() < 0.25:
        ports.append(_port("grpc", 9090, "GRPC"))
    svc["ports"] = ports
    policy = _policy(rng, True)
    if originate:
        policy["portLevel"] = [{"port": 80, "tls": _simple_tls(svc["hosts"][0])}]
    _maybe_policy(svc, policy)


def _vendor(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """Vendor API over HTTP ports with TLS (simple or mutual) originated for every port."""
    svc.update(hosts=_hosts(rng, ctx, "partner", True), location="external", resolution="dns")
    svc["ports"] = [rng.choice((_port("http", 80, "HTTP", 443), _port("http-alt", 8080, "HTTP", 443)))]
    if rng.random() < 0.3:
        svc["ports"].append(_port("grpc", 9090, "GRPC"))
    sni, kind = svc["hosts"][0], rng.random()
    if kind < 0.5:
        svc["tls"] = _simple_tls(sni)
    elif kind < 0.75:
        svc["tls"] = {"mode": "mutual", "credentialName": f"{svc['name']}-client", "sni": sni}
        svc["clientSelector"] = {"app": f"{rng.choice(TEAMS)}-client"}
    else:
        svc["tls"] = {"mode": "mutual", "sni": sni, "caCertificates": CA_FILE,
                      "clientCertificate": "/etc/certs/client.pem", "privateKey": "/etc/certs/key.pem"}
    _maybe_policy(svc, _policy(rng, True, 0.8, 0.5))


def _labelled_endpoints(rng: random.Random, count: int, key: str, values: tuple[str, ...],
                        address: Any) -> list[Decl]:
    eps: list[Decl] = []
    for k in range(count):
        ep: Decl = {"address": address(k), "labels": {key: values[min(k, len(values) - 1)]
                                                      if k < 2 else rng.choice(values)},
                    "locality": _locality(rng)}
        if rng.random() < 0.7:
            ep["weight"] = rng.randint(1, 100)
        eps.append(ep)
    return eps


def _subsets(rng: random.Random, eps: list[Decl], key: str) -> list[Decl]:
    values = sorted({ep["labels"][key] for ep in eps})
    subsets: list[Decl] = []
    for value in values[: rng.randint(0, len(values))]:
        sub: Decl = {"name": value, "labels": {key: value}}
        if rng.random() < 0.2:
            sub["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
        subsets.append(sub)
    return subsets


def _pool_service(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """DNS service with 2-4 hostname endpoints across localities, weights and version subsets."""
    tcp = rng.random() < 0.3
    svc.update(hosts=_hosts(rng, ctx, "gw", not tcp), location="external", resolution="dns")
    pool = HTTP_PORTS[1:] + TLS_PORTS
    ports = [_port(*p) for p in rng.sample(pool, rng.randint(1, 2))]
    if tcp:
        ports.append(_port("tcp-stream", 7000, "TCP"))
    svc["ports"] = ports
    eps = _labelled_endpoints(rng, rng.randint(2, 4), "version", ("v1", "v2", "v3"),
                              lambda k: f"node-{k}.{ctx.host('pool', 'example.net')}")
    if rng.random() < 0.2:
        eps[0]["ports"] = {ports[0]["name"]: ports[0]["number"] + 1}
    svc["endpoints"] = eps
    subsets = _subsets(rng, eps, "version")
    if subsets:
        svc["subsets"] = subsets
    _maybe_policy(svc, _policy(rng, not tcp, 0.6, 0.7))


def _legacy(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """Legacy host behind a load-balanced DNS name: dns-round-robin, at most one endpoint."""
    svc.update(hosts=[ctx.host("legacy", "corp.example.com")], location="external",
               resolution="dns-round-robin")
    svc["ports"] = [rng.choice((_port("http-alt", 8080, "HTTP"), _port("oracle", 1521, "TCP")))]
    if rng.random() < 0.6:
        svc["endpoints"] = [{"address": f"vip-{ctx.index:05d}.corp.example.com"}]
    _maybe_policy(svc, _policy(rng, svc["ports"][0]["protocol"] == "HTTP", 0.8, 0.2))


def _database(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """Database on fixed IPs (static): TCP-family ports, primary/replica subsets."""
    svc.update(hosts=[ctx.host("db", "data.internal.example.com")], location="external",
               resolution="static")
    svc["ports"] = [_port(*p) for p in rng.sample(DB_PORTS, rng.randint(1, 2))]
    if rng.random() < 0.6:
        svc["addresses"] = [ctx.vip()]
    eps = _labelled_endpoints(rng, rng.randint(1, 4), "role", ("primary", "replica"), ctx.public_ip)
    svc["endpoints"] = eps
    subsets = _subsets(rng, eps, "role")
    if subsets:
        svc["subsets"] = subsets
    if rng.random() < 0.2:
        svc["tls"] = _simple_tls(svc["hosts"][0])
    _maybe_policy(svc, _policy(rng, False, 0.8, 0.5))


def _vm(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """Internal service on VMs with sidecars: WorkloadEntries with service accounts."""
    ports = [_port(*p) for p in rng.sample(HTTP_PORTS[1:], rng.randint(1, 2))]
    tcp = rng.random() < 0.25
    if tcp:
        ports.append(_port("tcp-metrics", 9100, "TCP"))
    svc.update(hosts=_hosts(rng, ctx, "vm", not tcp), location="internal", resolution="static",
               endpointsAs="workloadEntries", ports=ports)
    account = svc["name"][:40]
    eps = _labelled_endpoints(rng, rng.randint(1, 4), "version", ("v1", "v2"), ctx.ip)
    for k, ep in enumerate(eps):
        ep.update(name=f"vm-{k + 1}", serviceAccount=account)
        if rng.random() < 0.4:
            ep["network"] = NETWORKS[[r for r, _ in REGIONS].index(ep["locality"]["region"])]
    svc["endpoints"] = eps
    if rng.random() < 0.3:
        svc["selector"] = {"app": svc["name"], "tier": "vm"}
    if rng.random() < 0.6:
        svc["tls"] = {"mode": "istio-mutual"}
    subsets = _subsets(rng, eps, "version")
    if subsets:
        svc["subsets"] = subsets
    _maybe_policy(svc, _policy(rng, True, 0.5, 0.4))


def _passthrough(svc: Decl, rng: random.Random, ctx: _Ctx) -> None:
    """Egress passthrough (resolution none): TLS ports, sometimes wildcard hosts or raw TCP."""
    tcp = rng.random() < 0.3
    first = f"*.{ctx.vendor}-{ctx.prefix}{ctx.index:05d}.example.net" if rng.random() < 0.15 else None
    hosts = _hosts(rng, ctx, "edge", not tcp)
    svc.update(hosts=[first] + hosts[1:] if first else hosts, location="external", resolution="none")
    svc["ports"] = [_port(*p) for p in rng.sample(TLS_PORTS, rng.randint(1, 2))]
    if tcp:
        svc["ports"].append(_port("tcp-raw", 6000, "TCP"))
        svc["addresses"] = [f"192.0.2.{ctx.index % 64 * 4}/30"]
    _maybe_policy(svc, _policy(rng, False, 0.3, 0.0))


_BUILDERS = {"saas": _saas, "vendor": _vendor, "pool": _pool_service, "legacy": _legacy,
             "database": _database, "vm": _vm, "passthrough": _passthrough}
