"""Envoy and iptables artifacts of the example estate, checked by the real tools.

Every emitted bootstrap parses strictly into Envoy's Bootstrap proto (xds-protos) with no PGV
violation; every emitted iptables ruleset is accepted by `iptables-restore --test` inside a
network namespace; the bundle carries the rules of every VM host (goldens: tests/goldens/estate).
"""

from __future__ import annotations

import orjson
import pytest

from meshc import api
from meshc.check.envoy.validate import validate_bootstrap
from meshc.emit.bundle import read_bundle
from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_LISTENERS
from meshc.model.results import whole_bootstrap

from .conftest import REPO
from .netns_helpers import Backend, Lab, backend_unavailable, netns_unavailable

ENVS = ["dev", "prod", "staging"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    out = tmp_path_factory.mktemp("out")
    outcome = api.build(REPO, out=out, checks=False, use_cache=False)
    assert outcome.ok
    return {env: read_bundle(out / env).files for env in ENVS}


@pytest.mark.parametrize("env", ENVS)
def test_bootstrap_parses_strictly(bundles: dict[str, dict[str, bytes]], env: str) -> None:
    files = bundles[env]
    bootstrap = whole_bootstrap(*(orjson.loads(files[f]) for f in (ENVOY_CLUSTERS, ENVOY_LISTENERS, ENVOY_BOOTSTRAP)))
    assert validate_bootstrap(bootstrap) == []
    clusters = {c["name"] for c in bootstrap["static_resources"]["clusters"]}
    assert "outbound|5432||orders-db.data.internal.example.com" in clusters
    assert "outbound|5432|primary|orders-db.data.internal.example.com" in clusters


def test_every_vm_host_has_rules(bundles: dict[str, dict[str, bytes]]) -> None:
    prod = {p for p in bundles["prod"] if p.startswith("iptables/")}
    assert prod == {"iptables/meshc-iptables-apply", "iptables/checkout-batch-batch-1.rules",
                    "iptables/checkout-batch-batch-2.rules", "iptables/inventory-api-inv-a.rules",
                    "iptables/inventory-api-inv-b.rules", "iptables/orders-db-pg-1.rules",
                    "iptables/orders-db-pg-2.rules", "iptables/orders-db-pg-3.rules"}
    dev = {p for p in bundles["dev"] if p.endswith(".rules")}
    assert "iptables/orders-db-pg-2.rules" not in dev  # removed from dev by its overlay
    rules = bundles["prod"]["iptables/orders-db-pg-1.rules"].decode()
    # inbound: every port but the excluded ones, as istioctl for a WorkloadEntry without ports
    assert "-A MESHC_INBOUND -p tcp -j MESHC_IN_REDIRECT" in rules and "*filter" in rules  # prod: allow-list
    assert "*filter" not in bundles["dev"]["iptables/orders-db-pg-1.rules"].decode()


@pytest.mark.netns
@pytest.mark.parametrize("env", ENVS)
def test_iptables_restore_accepts_every_emitted_ruleset(bundles: dict[str, dict[str, bytes]], env: str) -> None:
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    usable = [b for b in ("nft", "legacy") if backend_unavailable(b) is None]
    if not usable:
        pytest.skip(f"no usable iptables backend: {backend_unavailable('nft')}")
    lab = Lab(Backend(usable[0]))
    try:
        lab.start()
        files = [p for p in bundles[env] if p.endswith(".rules")]
        assert files
        for path in files:
            lab.restore(bundles[env][path].decode(), "--test")
    finally:
        lab.close()
