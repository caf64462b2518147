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
from meshc.front.load import load_env_settings
from meshc.model.settings import ProxySettings, VmSettings
from meshc.pipeline import compile_estate
from meshc.proxy.envoy.bootstrap import build_bootstrap
from meshc.proxy.iptables.model import CaptureSpec

Json = dict[str, Any]
SERVICE = """services:
  - name: api
    owner: team
    hosts: [api.example.com]
    resolution: dns
    ports:
      - number: 443
        protocol: HTTPS
"""


def _settings(env_yaml: str) -> Any:
    settings, diags = load_env_settings(MemoryTree({"environments/dev/env.yaml": env_yaml}), "dev")
    assert diags == [] and settings is not None
    return settings


# --- typed settings ---------------------------------------------------------------------------


def test_defaults_are_the_dataclass_defaults() -> None:
    settings = _settings("name: dev\nnamespace: egress\n")
    assert settings.proxy == ProxySettings()
    assert settings.vm == VmSettings()
    assert (settings.trust_domain, settings.cluster_domain) == ("cluster.local", "cluster.local")


def test_env_yaml_is_read_into_typed_settings() -> None:
    settings = _settings(
        "name: dev\nnamespace: egress\ntrustDomain: corp.example\nclusterDomain: k8s.internal\n"
        "proxy: {locality: eu-west1/b, dnsRefreshRate: 30s, connectTimeout: 2s, outboundTrafficPolicy: REGISTRY_ONLY}\n"
        "vm: {dnsCapture: false, egressAllowList: true, excludeInboundPorts: [22],"
        " includeOutboundCIDRs: [10.0.0.0/8], excludeOutboundCIDRs: [10.1.0.0/16], excludeOutboundPorts: [25]}\n")
    assert settings.proxy == ProxySettings(trust_domain="corp.example", dns_refresh_rate="30s", connect_timeout="2s",
                                           locality="eu-west1/b", outbound_policy="REGISTRY_ONLY",
                                           cluster_domain="k8s.internal")
    assert settings.vm == VmSettings(dns_capture=False, egress_allow_list=True, exclude_inbound_ports=(22,),
                                     include_outbound_cidrs=("10.0.0.0/8",), exclude_outbound_cidrs=("10.1.0.0/16",),
                                     exclude_outbound_ports=(25,))
    hash(settings.proxy), hash(settings.vm)  # frozen values: lists were read as tuples
    assert settings.raw["proxy"]["locality"] == "eu-west1/b"  # raw (the cache fingerprint) as written


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
