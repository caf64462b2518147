"""Pass `load` (front/load.py, `pipeline.load_pass`): a SourceTree -> an Estate of schema-valid
declaration layers (base files, and per environment its typed settings and overlay files).

Every class of bad input, with its position, through the whole compile: tests/test_errors.py and
tests/test_input_errors.py (commands).
"""

from __future__ import annotations

from typing import Any

from meshc.files.tree import MemoryTree
from meshc.front.load import Estate, load_env_settings
from meshc.model.settings import ProxySettings, VmSettings
from meshc.pipeline import Context, load_pass

from .estates import API, context, estate


def _settings(env_yaml: str) -> Any:
    settings, diags = load_env_settings(MemoryTree({"environments/dev/env.yaml": env_yaml}), "dev")
    assert diags == [] and settings is not None
    return settings


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
# --- the pass's contract (new) -------------------------------------------------------------------


def test_load_gives_the_base_files_and_each_environment_with_its_layers() -> None:
    files = estate(a=API, files={"environments/prod/env.yaml": "name: prod\nnamespace: egress\n",
                                 "environments/prod/x.yaml": "overrides:\n  - name: api\n    owner: other\n"})
    ctx, tree = context(files)
    step = load_pass(ctx, tree)
    assert step.diagnostics == () and isinstance(step.value, Estate)
    assert [f.file for f in step.value.base] == ["environments/base/a.yaml"]
    layer = step.value.base[0].services[0]
    assert (layer.file, layer.line, layer.col, layer.data["name"]) == ("environments/base/a.yaml", 2, 5, "api")
    assert sorted(step.value.envs) == ["dev", "prod"]
    prod = step.value.envs["prod"]
    assert prod.settings.name == "prod" and [f.file for f in prod.files] == ["environments/prod/x.yaml"]
    assert prod.files[0].overrides[0].data == {"name": "api", "owner": "other"}


def test_the_context_chooses_the_environments() -> None:
    files = estate(a=API, files={"environments/prod/env.yaml": "name: prod\nnamespace: egress\n"})
    tree = MemoryTree(files)
    step = load_pass(Context(tree, envs=("prod",)), tree)
    assert step.value is not None and list(step.value.envs) == ["prod"]


def test_a_file_that_is_not_yaml_stops_the_run_with_its_position() -> None:
    ctx, tree = context(estate(a="services:\n  - name: [api\n"))
    step = load_pass(ctx, tree)
    assert step.value is None
    assert [(d.code, d.position.file, d.position.line) for d in step.diagnostics if d.position] == [
        ("Y003", "environments/base/a.yaml", 3)]


def test_a_declaration_the_schema_refuses_is_an_error_at_its_key() -> None:
    ctx, tree = context(estate(a=API.replace("    owner: team", "    ownr: team")))
    step = load_pass(ctx, tree)
    assert step.value is None
    assert [(d.code, d.position.line, d.position.col) for d in step.diagnostics if d.position] == [("D001", 3, 5)]


def test_positions_of_a_file_served_from_the_parse_cache_read_it_as_load_did() -> None:
    """A declaration file read from the parse cache is composed again only when a diagnostic needs
    a position; it is then read with the same reader (YAML 1.2, go-yaml's flow colons), so a file
    libyaml refuses (`[10.0.0.1, 001:db8::]`) still gives positions instead of an exception."""
    from meshc.files.source import compose_all
    from meshc.model.core import NodeSource

    raw = b"services:\n  - name: api\n    addresses: [10.0.0.1, 001:db8::]\n"
    node = NodeSource("environments/base/a.yaml", raw, compose=compose_all).node((0,))
    services = next(v for k, v in node.value if k.value == "services")
    addresses = next(v for k, v in services.value[0].value if k.value == "addresses")
    assert [a.value for a in addresses.value] == ["10.0.0.1", "001:db8::"]
    assert addresses.value[1].start_mark.line == 2
