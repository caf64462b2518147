"""Typed environment settings and the environment's cluster domain.

env.yaml is read into `EnvSettings` once (`front.load`): `proxy` is a `ProxySettings`, `vm` a
`VmSettings`, defaults written once in `model.settings`. A non-default `clusterDomain` qualifies
short DestinationRule hosts in the Envoy translation and in the analyzers as istiod does.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshc.check.istio import AnalyzerSettings, analyze
from meshc.files.tree import MemoryTree
from meshc.model.settings import ProxySettings, VmSettings
from meshc.pipeline import compile_estate
from meshc.proxy.envoy.bootstrap import build_bootstrap
from meshc.proxy.iptables.model import CaptureSpec
from .passes.estates import API as SERVICE  # the smallest valid service

Json = dict[str, Any]


# --- typed settings ---------------------------------------------------------------------------


def test_vm_defaults_are_the_capture_defaults() -> None:
    vm, spec = VmSettings(), CaptureSpec("w")
    assert (spec.exclude_inbound_ports, spec.include_outbound_cidrs, spec.exclude_outbound_cidrs,
            spec.exclude_outbound_ports, spec.dns_capture) == (
        vm.exclude_inbound_ports, vm.include_outbound_cidrs, vm.exclude_outbound_cidrs, vm.exclude_outbound_ports,
        vm.dns_capture)


def test_compile_hands_the_proxy_settings_to_the_envoy_pass() -> None:
    env = "name: dev\nnamespace: egress\nclusterDomain: k8s.internal\nproxy: {connectTimeout: 2s}\n"
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": env, "environments/base/a.yaml": SERVICE}))
    assert result.ok, [str(d) for d in result.diagnostics]
    settings = result.envs["dev"].settings
    assert settings.proxy.cluster_domain == "k8s.internal" and settings.proxy.connect_timeout == "2s"
    assert result.envs["dev"].envoy is not None
    assert b'"connect_timeout":"2s"' in bytes(result.envs["dev"].envoy.file).replace(b" ", b"")


# --- clusterDomain ----------------------------------------------------------------------------

SE = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry"}
DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule"}


def _objects(domain: str) -> list[Json]:
    """A ServiceEntry for reviews' cluster-local name, and a DestinationRule naming it by short name."""
    se = {**SE, "metadata": {"name": "reviews", "namespace": "default"},
          "spec": {"hosts": [f"reviews.default.svc.{domain}"], "location": "MESH_INTERNAL", "resolution": "DNS",
                   "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}
    dr = {**DR, "metadata": {"name": "reviews", "namespace": "default"},
          "spec": {"host": "reviews", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "3s"}}}}}
    return [se, dr]


@pytest.mark.parametrize("domain", ["cluster.local", "k8s.internal"])
def test_short_destination_rule_host_uses_the_cluster_domain_in_envoy(domain: str) -> None:
    name = f"outbound|80||reviews.default.svc.{domain}"
    right, _ = build_bootstrap(_objects(domain), ProxySettings(cluster_domain=domain))
    other = "cluster.local" if domain != "cluster.local" else "k8s.internal"
    wrong, _ = build_bootstrap(_objects(domain), ProxySettings(cluster_domain=other))

    def timeout(bootstrap: Json) -> str:
        return next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == name)["connect_timeout"]

    assert timeout(right) == "3s"  # the rule applies: reviews -> reviews.default.svc.<domain>
    assert timeout(wrong) == "10s"  # qualified with another domain it names no service


@pytest.mark.parametrize("domain", ["cluster.local", "k8s.internal"])
def test_short_destination_rule_host_uses_the_cluster_domain_in_the_analyzers(domain: str) -> None:
    codes = {f.code for _, f in analyze(_objects(domain), AnalyzerSettings(cluster_domain=domain))}
    assert not codes & {"A403", "A404"}
    other = "cluster.local" if domain != "cluster.local" else "k8s.internal"
    found = [f for _, f in analyze(_objects(domain), AnalyzerSettings(cluster_domain=other))]
    assert [f.code for f in found] == ["A404"]
    assert f"reviews.default.svc.{other}" in found[0].message
