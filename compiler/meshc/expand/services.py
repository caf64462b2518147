"""Pass `expand`: typed `Service`s of one environment -> `Artifact`s (Istio manifests).

Input: validated Services and the environment. Output: ServiceEntry, WorkloadEntries and
DestinationRules (networking.istio.io/v1) per service, or diagnostics when a template fails.
All decisions are made here, in Python, into small view mappings; templates (templates/*.json.j2)
only lay them out, and their output is parsed back at once, so only typed artifacts leave.
Codes: X001 template error (syntax, undefined value, raw value), X002 template output not JSON or
not the expected object, X003 a template that cannot be compiled (syntax, unknown filter or test).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
import orjson

from meshc.expand import egress
from meshc.expand.templating import TemplateValueError, render_bounded
from meshc.model.core import Artifact, EnvSettings, Origin, OriginEntry, PortPolicy, Service, TrafficPolicy
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.model.ids import ObjectId

MANAGED = {"app.kubernetes.io/managed-by": "meshc"}
_TLS_MODES = {"disable": "DISABLE", "simple": "SIMPLE", "mutual": "MUTUAL", "istio-mutual": "ISTIO_MUTUAL"}
_TLS_KEYS = (("sni", "sni"), ("subject_alt_names", "subjectAltNames"),
             ("credential_name", "credentialName"), ("ca_certificates", "caCertificates"),
             ("client_certificate", "clientCertificate"), ("private_key", "privateKey"),
             ("insecure_skip_verify", "insecureSkipVerify"))
_UNSAFE = re.compile(r"[^a-z0-9]+")


# etcd's default request limit (--max-request-bytes, 1.5 MiB); the API server stores each object in one.
OBJECT_LIMIT = 1536 * 1024


class Expander:
    """Renders the objects of one service through one Jinja2 environment."""

    def __init__(self, jenv: jinja2.Environment, env: EnvSettings) -> None:
        self.env = env
        self.se_t = _load(jenv, "serviceentry.json.j2")
        self.we_t = _load(jenv, "workloadentry.json.j2")
        self.dr_t = _load(jenv, "destinationrule.json.j2")
        self.gw_t = _load(jenv, "gateway.json.j2")
        self.vs_t = _load(jenv, "virtualservice.json.j2")
        self.ap_t = _load(jenv, "authorizationpolicy.json.j2")
        self.btp_t = _load(jenv, "backendtlspolicy.json.j2")
        self.sc_t = _load(jenv, "sidecar.json.j2")
        self.wp_t = _load(jenv, "waypoint.json.j2")

    def expand(self, svc: Service) -> tuple[list[Artifact], list[Diagnostic]]:
        out: list[Artifact] = []
        env = self.env
        try:
            out.append(self._render(self.se_t, "se", se_view(svc, env), svc, 0, se_origin(svc)))
            if svc.endpoints_as == "workloadEntries":
                for i, ep_view in enumerate(we_views(svc)):
                    out.append(self._render(self.we_t, "we", ep_view, svc, i, we_origin(i)))
            btp = egress.backend_tls_view(svc, env)
            for i, view in enumerate(dr_views(svc, env, tls_by_policy=btp is not None)):
                if view is not None:
                    out.append(self._render(self.dr_t, "dr", view, svc, i, dr_origin(svc, i)))
            if svc.egress == "gateway" and env.egress.gateway is not None:
                views = egress.gateway_views(svc, env)
                out.append(self._render(self.gw_t, "gw", views["gateway"], svc, 0, egress.gateway_origin(svc)))
                for i, vs in enumerate(views["virtual_services"]):
                    out.append(self._render(self.vs_t, "vs", vs, svc, i, egress.vs_origin(i)))
                if views["policy"] is not None:
                    out.append(self._render(self.ap_t, "ap", views["policy"], svc, 0, egress.POLICY_ORIGIN))
            policy = egress.waypoint_policy_view(svc, env)
            if policy is not None:
                out.append(self._render(self.ap_t, "ap", policy, svc, 0, egress.WAYPOINT_POLICY_ORIGIN))
            if btp is not None:
                out.append(self._render(self.btp_t, "btp", btp, svc, 0, egress.BACKEND_TLS_ORIGIN))
        except _RenderError as exc:
            return [], [exc.diag]
        for art in out:
            size = len(orjson.dumps(art.body))
            if size > OBJECT_LIMIT:
                return [], [Diagnostic(
                    "V030", Severity.ERROR, f"{art.identity.kind} {art.identity.name} would be {size:,} bytes: "
                    f"the Kubernetes API server (etcd) refuses objects over {OBJECT_LIMIT:,} bytes (1.5 MiB)",
                    svc.decl.position, hint="split the service (fewer endpoints or ports per service), or use "
                    "endpointsAs: workloadEntries", env=self.env.name, object=f"service {svc.name}")]
        return out, []

    def expand_env(self, services: list[Service]) -> tuple[list[Artifact], list[Diagnostic]]:
        """The objects of the environment as a whole: a Sidecar per consumer namespace, the
        waypoint Gateway when meshc manages it, the gateway host's DestinationRule with a subset
        per service through the gateway. They belong to no service (`Artifact.service` "")."""
        out: list[Artifact] = []
        try:
            rule = egress.gateway_rule_view(self.env, services)
            if rule is not None:
                out.append(self._render(self.dr_t, "dr", rule, None, 0, ()))
            for view in egress.sidecar_views(self.env, services):
                out.append(self._render(self.sc_t, "sc", view, None, 0, ()))
            wp = egress.waypoint_view(self.env)
            if wp is not None:
                out.append(self._render(self.wp_t, "wp", wp, None, 0, ()))
        except _RenderError as exc:
            return [], [exc.diag]
        return out, []

    def _render(self, template: jinja2.Template, var: str, view: Mapping[str, Any], svc: Service | None,
                part: int, origin: Origin) -> Artifact:
        try:
            text = render_bounded(template, {var: view})
        except (jinja2.TemplateError, TemplateValueError, TypeError, ValueError, ArithmeticError,
                RecursionError, MemoryError) as exc:
            raise _RenderError(_template_diag("X001", template, exc, svc, self.env)) from None
        try:
            body = orjson.loads(text)
            meta = body["metadata"]
            ident = ObjectId(body["kind"], meta["namespace"], meta["name"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise _RenderError(_template_diag("X002", template, exc, svc, self.env)) from None
        return Artifact(ident, body, svc.name if svc is not None else "", part, origin)


class TemplateLoadError(Exception):
    """A template that cannot be compiled (syntax, unknown filter or test, missing include)."""

    def __init__(self, diag: Diagnostic) -> None:
        super().__init__(diag.message)
        self.diag = diag


def _load(jenv: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return jenv.get_template(name)
    except jinja2.TemplateSyntaxError as exc:  # also unknown filters and tests (TemplateAssertionError)
        where = exc.filename or name
        raise TemplateLoadError(Diagnostic(
            "X003", Severity.ERROR, f"template {exc.name or name} cannot be compiled: {exc.message}",
            Position(where, exc.lineno or 0, 1),
            hint="fix the template: the filters are `json` only, the tests defined, none, mapping and "
                 "sequence; values must be printed as {{ value | json }}")) from None
    except jinja2.TemplateError as exc:
        raise TemplateLoadError(Diagnostic(
            "X003", Severity.ERROR, f"template {name} cannot be loaded: {exc}", Position(name),
            hint="check the templates: folder named in meshc.yaml")) from None


class _RenderError(Exception):
    def __init__(self, diag: Diagnostic) -> None:
        super().__init__(diag.message)
        self.diag = diag


def _template_diag(code: str, template: jinja2.Template, exc: BaseException, svc: Service | None,
                   env: EnvSettings) -> Diagnostic:
    line = getattr(exc, "lineno", None) or _template_line(exc, template.filename or "")
    what = "failed" if code == "X001" else "did not produce a JSON object with kind and metadata"
    related = (svc.decl.position,) if svc is not None else (
        (env.source.position,) if env.source is not None else ())
    return Diagnostic(
        code, Severity.ERROR, f"template {template.name} {what}: {exc}",
        Position(template.filename or template.name or "template", line or 0, 1),
        hint="fix the template; values must be printed as {{ value | json }}", env=env.name,
        object=f"service {svc.name}" if svc is not None else f"environment {env.name}", related=related)


def _template_line(exc: BaseException, filename: str) -> int:
    tb, line = exc.__traceback__, 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _labels(svc: Service) -> dict[str, str]:
    return {**MANAGED, "meshc.dev/service": svc.name}


def se_view(svc: Service, env: EnvSettings) -> dict[str, Any]:
    annotations = {"meshc.dev/owner": svc.owner} if svc.owner else {}
    if svc.description:
        annotations["meshc.dev/description"] = svc.description
    inline = svc.endpoints_as == "inline"
    return {
        "name": svc.name, "namespace": svc.namespace, "labels": {**_labels(svc), **egress.waypoint_labels(svc, env)},
        "annotations": annotations, "hosts": list(svc.hosts), "addresses": list(svc.addresses),
        "ports": [_port(p) for p in svc.ports],
        "location": "MESH_INTERNAL" if svc.location == "internal" else "MESH_EXTERNAL",
        "resolution": svc.resolution.upper().replace("-", "_"),
        "endpoints": [_endpoint(ep) for ep in svc.endpoints] if inline else [],
        "workload_selector": dict(svc.selector) if not inline else {},
        "export_to": egress.export_list(svc, env, svc.namespace),
    }


def _port(p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"number": p.number, "protocol": p.protocol, "name": p.name}
    if p.target_port:
        out["targetPort"] = p.target_port
    return out


def _endpoint(ep: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"address": ep.address}
    for key, value in (("ports", dict(ep.ports)), ("labels", dict(ep.labels)),
                       ("locality", ep.locality), ("weight", ep.weight), ("network", ep.network),
                       ("serviceAccount", ep.service_account)):
        if value or (key == "weight" and value is not None):
            out[key] = value
    return out


def we_views(svc: Service) -> list[dict[str, Any]]:
    return [{
        "name": f"{svc.name}-{ep.name}", "namespace": svc.namespace, "meta_labels": _labels(svc),
        "address": ep.address, "labels": {**dict(ep.labels), **dict(svc.selector)},
        "ports": dict(ep.ports), "locality": ep.locality, "weight": ep.weight,
        "network": ep.network, "service_account": ep.service_account,
    } for ep in svc.endpoints]


def dr_views(svc: Service, env: EnvSettings, tls_by_policy: bool = False) -> list[dict[str, Any] | None]:
    """The service's DestinationRules, one per host. Through the egress gateway they live in the
    gateway's namespace, visible there only (the gateway applies them: it originates TLS); with
    a BackendTLSPolicy at the waypoint, TLS is left to that policy."""
    policy = traffic_policy(svc.traffic_policy, None if tls_by_policy else svc.tls)
    subsets = [_subset(s) for s in svc.subsets]
    if not (policy or subsets or svc.client_selector):
        return [None] * len(svc.hosts)
    gateway = env.egress.gateway if svc.egress == "gateway" else None
    namespace = gateway.namespace if gateway is not None else svc.namespace
    if gateway is not None:
        export = ["."]
    elif svc.client_selector:
        export = ["."]
    else:
        export = egress.export_list(svc, env, namespace)
    views: list[dict[str, Any] | None] = []
    for host in svc.hosts:
        # one host: the service's name; several: one per host, named after it (order-independent)
        name = svc.name if len(svc.hosts) == 1 else f"{svc.name}-{_UNSAFE.sub('-', host.lower()).strip('-')}"[:253]
        views.append({"name": name, "namespace": namespace, "labels": _labels(svc),
                      "host": host, "traffic_policy": policy, "subsets": subsets,
                      "workload_selector": dict(svc.client_selector), "export_to": export})
    return views


def _settings(policy: TrafficPolicy | PortPolicy) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key, value in (("loadBalancer", policy.load_balancer), ("connectionPool", policy.connection_pool),
                       ("outlierDetection", policy.outlier_detection)):
        if value:
            yield key, value


def traffic_policy(policy: TrafficPolicy | None, tls: Any) -> dict[str, Any]:
    """A declared policy (and TLS) as Istio's TrafficPolicy; `portLevel` becomes portLevelSettings."""
    out: dict[str, Any] = dict(_settings(policy)) if policy is not None else {}
    if policy is not None and policy.retry_budget:
        out["retryBudget"] = policy.retry_budget
    if policy is not None and policy.proxy_protocol:
        out["proxyProtocol"] = policy.proxy_protocol
    if tls is not None:
        out["tls"] = tls_settings(tls)
    levels = [_port_level(e) for e in (policy.port_level if policy is not None else ())]
    if levels:
        out["portLevelSettings"] = levels
    return out


def _port_level(entry: PortPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"port": {"number": entry.port}, **dict(_settings(entry))}
    if entry.tls:
        out["tls"] = tls_settings(entry.tls)
    return out


def tls_settings(tls: Any) -> dict[str, Any]:
    """A `Tls` (or a declaration mapping of one) as Istio ClientTLSSettings."""
    if isinstance(tls, Mapping):
        out = {k: v for k, v in tls.items() if k != "mode" and v not in (None, [], "")}
        return {"mode": _TLS_MODES[tls["mode"]], **out}
    out2: dict[str, Any] = {"mode": _TLS_MODES[tls.mode]}
    for attr, key in _TLS_KEYS:
        value = getattr(tls, attr)
        if value not in (None, (), ""):
            out2[key] = list(value) if isinstance(value, tuple) else value
    return out2


def _subset(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name}
    if s.labels:
        out["labels"] = dict(s.labels)
    policy = traffic_policy(s.traffic_policy, s.traffic_policy.tls if s.traffic_policy is not None else None)
    if policy:
        out["trafficPolicy"] = policy
    return out


# ----------------------------------------------------------------------------- origins
# Which declaration value each part of an emitted object is made from (model.core.Artifact.origin),
# written here beside the views that make the values: when a view changes, its origin is next to it.
# An entry (body prefix, declaration path, continues): the longest prefix of a body path wins;
# with `continues` the rest of the body path is appended to the declaration path.

_METADATA: OriginEntry = (("metadata",), ("name",), False)  # names and labels are made from the service name
SE_ORIGIN: Origin = (
    _METADATA,
    *((("spec", key), (key,), True) for key in ("hosts", "addresses", "ports", "endpoints", "location",
                                                 "resolution", "exportTo")),
    (("spec", "workloadSelector"), ("selector",), False),
)


def _export_origin(svc: Service) -> OriginEntry:
    """exportTo as declared, or made from the consumers (expand.egress.export_list)."""
    if svc.export_to or not svc.consumers:
        return (("spec", "exportTo"), ("exportTo",), True)
    return (("spec", "exportTo"), ("consumers",), False)


def se_origin(svc: Service) -> Origin:
    """SE_ORIGIN, with exportTo made from the consumers when they set it, and the waypoint labels
    from the egress path."""
    out = tuple(e for e in SE_ORIGIN if e[0] != ("spec", "exportTo")) + (_export_origin(svc),)
    if svc.egress == "waypoint":
        out += ((("metadata", "labels", "istio.io/use-waypoint"), ("egress",), False),
                (("metadata", "labels", "istio.io/use-waypoint-namespace"), ("egress",), False))
    return out


def we_origin(i: int) -> Origin:
    """WorkloadEntry i is endpoint i of the declaration."""
    return ((("metadata",), ("endpoints", i, "name"), False), (("spec",), ("endpoints", i), True))


def _policy_origin(body: tuple[Any, ...], decl: tuple[Any, ...], policy: TrafficPolicy | None,
                   top: bool) -> list[OriginEntry]:
    """A DestinationRule traffic policy made by `traffic_policy`: declared `portLevel` entries
    become `portLevelSettings` (each `port: N` becomes `port.number`), a service-level `tls`
    becomes the top-level policy's `tls`."""
    out: list[OriginEntry] = [(body, decl, True), (body + ("portLevelSettings",), decl + ("portLevel",), True)]
    if top:
        out.append((body + ("tls",), ("tls",), True))
    for j, _ in enumerate(policy.port_level if policy is not None else ()):
        out.append((body + ("portLevelSettings", j, "port"), decl + ("portLevel", j, "port"), False))
    return out


def dr_origin(svc: Service, i: int) -> Origin:
    """The DestinationRule of host i: the service's traffic policy, tls, subsets and client selector."""
    out: list[OriginEntry] = [
        _METADATA, (("spec", "host"), ("hosts", i), False),
        (("spec", "workloadSelector"), ("clientSelector",), False),
        (("spec", "exportTo"), ("egress",), False) if svc.egress == "gateway" else _export_origin(svc),
        (("metadata", "namespace"), ("egress",), False) if svc.egress == "gateway" else _METADATA,
        *_policy_origin(("spec", "trafficPolicy"), ("trafficPolicy",), svc.traffic_policy, top=True),
        (("spec", "subsets"), ("subsets",), True)]
    for j, subset in enumerate(svc.subsets):
        out.extend(_policy_origin(("spec", "subsets", j, "trafficPolicy"), ("subsets", j, "trafficPolicy"),
                                  subset.traffic_policy, top=False))
    return tuple(out)

