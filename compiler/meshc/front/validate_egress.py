"""The egress path and consumers of one declaration, against its environment (docs/egress.md).

Codes: V034 an egress path the environment cannot provide (settings missing from env.yaml, or
the wrong data plane), V035 a declaration the chosen path cannot carry, V036 a VM workload in an
ambient environment, V037 a consumer env.yaml does not list, V038 consumers in an ambient
environment without a waypoint, V039 consumers that cannot be checked (env.yaml lists no
namespaces), V040 a consumer a declared exportTo hides the service from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.front.checker import Checker
from meshc.front.declschema import did_you_mean
from meshc.model.core import EnvSettings
from meshc.model.diagnostics import DataPath, Severity
from meshc.model.values import HTTP_FAMILY

# A Gateway server carries TCP-based protocols only (networking/v1alpha3 gateway.proto: HTTP,
# HTTPS, GRPC, GRPC-Web, HTTP2, MONGO, TCP, TLS); UDP has no egress-gateway path.
_NO_GATEWAY = {"UDP"}


def effective_egress(env: EnvSettings, data: Mapping[str, Any]) -> str:
    """The service's egress path: as declared, else env.yaml's `egress.mode`, except that an
    internal service (VMs with sidecars: mesh workloads) stays direct unless it says otherwise."""
    if data.get("egress"):
        return str(data["egress"])
    return "direct" if data.get("location") == "internal" else env.egress.mode


def egress_mode(chk: Checker) -> str:
    return effective_egress(chk.env, chk.data)


def check_egress(chk: Checker) -> None:
    mode = egress_mode(chk)
    where: DataPath = ("egress",) if "egress" in chk.data else ()
    env = chk.env
    source = "" if "egress" in chk.data else " (env.yaml egress.mode)"
    if mode == "gateway":
        if env.dataplane == "ambient":
            chk.add("V034", where, f"egress: gateway{source} is the sidecar-mode egress gateway; environment "
                    f"{env.name} runs the ambient data plane", "use egress: waypoint in an ambient environment")
        elif env.egress.gateway is None:
            chk.add("V034", where, f"egress: gateway{source}, but env.yaml of {env.name} names no egress gateway",
                    "add to env.yaml: egress: {gateway: {name: istio-egressgateway, namespace: istio-system, "
                    "selector: {istio: egressgateway}}}")
        elif env.egress.gateway.ports:
            for i, port in enumerate(chk.data.get("ports") or ()):
                if port.get("number") not in env.egress.gateway.ports:
                    chk.add("V034", ("ports", i, "number"), f"port {port.get('number')} is not a port of the egress "
                            f"gateway's Service ({', '.join(map(str, env.egress.gateway.ports))} in env.yaml "
                            "egress.gateway.ports): the sidecars' traffic to the gateway would find no listener",
                            "expose the port on the gateway's Service and list it in egress.gateway.ports, or use "
                            "egress: direct for this service")
        _gateway_limits(chk)
    elif mode == "waypoint":
        if env.dataplane != "ambient":
            chk.add("V034", where, f"egress: waypoint{source} needs the ambient data plane; environment "
                    f"{env.name} runs sidecars", "set dataplane: ambient in env.yaml, or use egress: gateway")
        elif env.egress.waypoint is None:
            chk.add("V034", where, f"egress: waypoint{source}, but env.yaml of {env.name} names no egress waypoint",
                    "add to env.yaml: egress: {waypoint: {name: egress-waypoint, namespace: istio-egress}}")
        _waypoint_limits(chk)
    if env.dataplane == "ambient":
        _no_vms(chk)
        if chk.data.get("consumers") and mode != "waypoint":
            chk.add("V038", ("consumers",), "consumers in an ambient environment are enforced by the egress "
                    "waypoint's AuthorizationPolicy; ztunnel does not apply exportTo or Sidecars",
                    "set egress: waypoint for this service (or remove consumers)")
    _consumers(chk)
    _hidden_consumers(chk)


def _exported_to(chk: Checker) -> set[str] | None:
    """The namespaces a declared exportTo names (`.` resolved to the service's own), or None when
    it does not restrict: absent, or with `*`."""
    export = chk.data.get("exportTo")
    if not export or "*" in export:
        return None
    own = chk.data.get("namespace", chk.env.namespace)
    return {own if e == "." else e for e in export}


def _hidden_consumers(chk: Checker) -> None:
    """A declared exportTo that hides the service from one of its consumers (V040)."""
    export = chk.data.get("exportTo")
    names = _exported_to(chk)
    if names is None:
        return
    for i, c in enumerate(chk.data.get("consumers") or ()):
        if c["namespace"] not in names:
            chk.add("V040", ("consumers", i, "namespace"), f"consumer namespace {c['namespace']!r} is not in "
                    f"exportTo {export}: it cannot see the service, so it cannot call it",
                    f"add {c['namespace']} to exportTo, or leave exportTo out (consumers set it)", Severity.WARNING)


def _gateway_limits(chk: Checker) -> None:
    if chk.data.get("location") == "internal":
        chk.add("V035", ("egress",), "an internal service (VM workloads with sidecars) is part of the mesh: its "
                "callers reach it over mutual TLS, not through the egress gateway", "remove egress: gateway")
    for i, port in enumerate(chk.data.get("ports") or ()):
        if str(port.get("protocol", "")).upper() in _NO_GATEWAY:
            chk.add("V035", ("ports", i, "protocol"), f"port {port.get('number')} is UDP: an egress gateway "
                    "carries TCP-based protocols only", "reach UDP services with egress: direct")
    hosts = chk.data.get("hosts") or ()
    if len(hosts) > 1:
        for i, port in enumerate(chk.data.get("ports") or ()):
            proto = str(port.get("protocol", "")).upper()
            if proto not in HTTP_FAMILY and proto not in _NO_GATEWAY:
                chk.add("V035", ("ports", i, "protocol"), f"port {port.get('number')} is {proto}: through the egress "
                        f"gateway only HTTP ports can serve several hosts (the gateway forwards other traffic by "
                        f"port alone, so {len(hosts)} hosts would share one route)",
                        "split the service into one per host")
    gateway = chk.env.egress.gateway
    export = chk.data.get("exportTo")
    names = _exported_to(chk)
    if gateway is not None and names is not None and gateway.namespace not in names:
        chk.add("V035", ("exportTo",), f"exportTo {export} hides the service from the egress gateway's "
                f"namespace {gateway.namespace}: the gateway could not route it (503)",
                f"add {gateway.namespace} to exportTo, or leave exportTo out and list consumers")
    if chk.data.get("clientSelector"):
        chk.add("V035", ("clientSelector",), "clientSelector picks client sidecars, but with egress: gateway the "
                "gateway applies the service's DestinationRule", "remove clientSelector; the gateway reads "
                "credentialName secrets of its own namespace")


def _waypoint_limits(chk: Checker) -> None:
    if "exportTo" in chk.data:
        chk.add("V035", ("exportTo",), "exportTo is not supported for waypoint-bound ServiceEntries (ztunnel and "
                "waypoints ignore it: istio/api#3517)", "remove exportTo; restrict callers with consumers")
    for i, host in enumerate(chk.data.get("hosts") or ()):
        if str(host).startswith("*"):
            chk.add("V035", ("hosts", i), f"wildcard host {host!r} cannot be bound to a waypoint (ztunnel and "
                    "waypoints do not support wildcard hosts: istio/api#3517)",
                    "list the concrete host names, or use egress: direct")
    for i, port in enumerate(chk.data.get("ports") or ()):
        if str(port.get("protocol", "")).upper() == "UDP":
            chk.add("V035", ("ports", i, "protocol"), f"port {port.get('number')} is UDP: ambient carries TCP only",
                    "reach UDP services outside ambient")
    waypoint = chk.env.egress.waypoint
    tls = chk.data.get("tls") or {}
    if waypoint is not None and waypoint.tls_origination == "BackendTLSPolicy" and tls.get("mode") not in (
            None, "disable", "simple"):
        chk.add("V035", ("tls", "mode"), f"tls mode {tls.get('mode')} cannot be expressed by a BackendTLSPolicy "
                "(it validates the server; it sends no client certificate)",
                "use tlsOrigination: DestinationRule in env.yaml egress.waypoint, or tls mode simple")
    if waypoint is not None and waypoint.tls_origination == "BackendTLSPolicy" and tls.get("insecureSkipVerify"):
        chk.add("V035", ("tls", "insecureSkipVerify"), "a BackendTLSPolicy always verifies the server certificate",
                "remove insecureSkipVerify, or use tlsOrigination: DestinationRule")


def _no_vms(chk: Checker) -> None:
    d = chk.data
    if d.get("endpointsAs") == "workloadEntries" or d.get("location") == "internal":
        key = "endpointsAs" if d.get("endpointsAs") == "workloadEntries" else "location"
        chk.add("V036", (key,), f"environment {chk.env.name} runs ambient: VM workloads (WorkloadEntries, "
                "MESH_INTERNAL services) are not part of ambient GA", "remove the service from this environment "
                "(an override `- {name: ..., $patch: delete}` in its folder), or keep VMs in a sidecar-mode "
                "environment")
        return
    for i, ep in enumerate(d.get("endpoints") or ()):
        if ep.get("serviceAccount"):
            chk.add("V036", ("endpoints", i, "serviceAccount"), f"environment {chk.env.name} runs ambient: an "
                    "endpoint with a serviceAccount is a VM workload, not part of ambient GA",
                    "remove serviceAccount, or keep the VM in a sidecar-mode environment")


def _consumers(chk: Checker) -> None:
    consumers = chk.data.get("consumers") or ()
    if not consumers:
        return
    known = chk.env.namespaces
    if known is None:
        chk.add("V039", ("consumers",), f"consumers cannot be checked: env.yaml of {chk.env.name} lists no "
                "namespaces", "list the namespaces (and their service accounts) under namespaces: in env.yaml",
                Severity.WARNING)
        return
    names = [ns for ns, _ in known]
    accounts = dict(known)
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(consumers):
        ns, sa = c["namespace"], c.get("serviceAccount")
        if ns not in accounts:
            chk.add("V037", ("consumers", i, "namespace"), f"consumer namespace {ns!r} is not listed in env.yaml "
                    f"namespaces{did_you_mean(ns, names)}", f"use one of: {', '.join(names)}, or add it to env.yaml")
        elif sa is not None and accounts[ns] and sa not in accounts[ns]:
            chk.add("V037", ("consumers", i, "serviceAccount"), f"service account {sa!r} is not listed for "
                    f"namespace {ns} in env.yaml{did_you_mean(sa, list(accounts[ns]))}",
                    f"use one of: {', '.join(accounts[ns])}, or add it to env.yaml namespaces.{ns}")
        key = (ns, sa or "")
        if key in seen:
            chk.add("V037", ("consumers", i), f"consumer {ns}{'/' + sa if sa else ''} is listed twice",
                    "remove one of them")
        seen.add(key)
