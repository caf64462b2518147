"""Pass-through objects (environments/<layer>/passthrough/): part of the bundle like any object.

Kept verbatim (what `meshc import` cannot declare, or what a team writes by hand), they are
written into the bundle, checked by every layer with findings at their own lines, read by the
proxy pass (a kept DestinationRule shapes the Envoy cluster of its host) and shown by `meshc diff`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from meshc import api
from meshc.diff.run import DiffRequest, run

from .conftest import copy_example_estate

DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: sftp-limits
spec:
  host: sftp.partner.example.net
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7}
"""


@pytest.fixture()
def estate(tmp_path: Path) -> Path:
    return copy_example_estate(tmp_path / "estate")


def _put(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def _cluster(files: dict[str, object], name: str) -> dict[str, object]:
    raw = files["envoy/clusters.json"]
    data = raw if isinstance(raw, bytes) else Path(str(getattr(raw, "path", raw))).read_bytes()
    return next(c for c in orjson.loads(data)["resources"] if c["name"] == name)


def test_a_base_object_reaches_every_environment_in_its_namespace(estate: Path) -> None:
    _put(estate, "environments/base/passthrough/limits.yaml", DR)
    _, result = api.compile_repo(estate, use_cache=False)
    assert result.ok, result.diagnostics
    for env in ("dev", "staging", "prod"):
        settings = result.envs[env].settings
        kept = [a for a in result.envs[env].artifacts if a.identity.name == "sftp-limits"]
        assert [a.identity.namespace for a in kept] == [settings.namespace]
        assert kept[0].service == "" and kept[0].body["spec"]["trafficPolicy"]["connectionPool"]["tcp"] == {
            "maxConnections": 7}
        bundle = result.envs[env].bundle
        assert bundle is not None
        path = f"{settings.namespace}/_destinationrule-sftp-limits.yaml"
        assert b"maxConnections: 7" in bundle.files[path]  # type: ignore[operator]
        index = orjson.loads(bundle.files["index.json"])  # type: ignore[arg-type]
        entry = next(o for o in index["objects"] if o["name"] == "sftp-limits")
        assert entry["source"] == "environments/base/passthrough/limits.yaml:1:1"


def test_the_proxy_pass_reads_a_kept_destination_rule(estate: Path) -> None:
    """istiod applies a DestinationRule to its host's clusters whoever wrote it; so does meshc."""
    _, before = api.compile_repo(estate, ["prod"], use_cache=False)
    _put(estate, "environments/prod/passthrough/limits.yaml", DR)
    _, after = api.compile_repo(estate, ["prod"], use_cache=False)
    name = "outbound|22||sftp.partner.example.net"
    old = _cluster(before.envs["prod"].bundle.files, name)  # type: ignore[union-attr]
    new = _cluster(after.envs["prod"].bundle.files, name)  # type: ignore[union-attr]
    assert "circuit_breakers" not in old or old["circuit_breakers"] != new["circuit_breakers"]
    assert new["circuit_breakers"]["thresholds"][0]["max_connections"] == 7


def test_a_finding_points_at_the_line_in_the_pass_through_file(estate: Path) -> None:
    _put(estate, "environments/prod/passthrough/limits.yaml",
         DR.replace("      tcp: {maxConnections: 7}", "      tcp: {maxConnections: 7}\n      udp: {}"))
    outcome = api.check(estate, ["prod"], ["schema"], use_cache=False)
    (hit,) = [d for d in outcome.diagnostics if d.code == "S001"]
    assert str(hit.position) == "./environments/prod/passthrough/limits.yaml:10:12"  # the unknown field's value
    assert hit.path == "spec.trafficPolicy.connectionPool.udp"


def test_diff_shows_a_change_to_a_kept_object(estate: Path, tmp_path: Path) -> None:
    _put(estate, "environments/prod/passthrough/limits.yaml", DR)
    base = tmp_path / "base"
    shutil.copytree(estate, base)
    _put(estate, "environments/prod/passthrough/limits.yaml", DR.replace("maxConnections: 7", "maxConnections: 9"))
    changes = run(DiffRequest(str(base), str(estate), estate, ("prod",)))
    (mod,) = [m for m in changes.envs["prod"].modified if m.id.kind == "DestinationRule"]
    assert mod.id.name == "sftp-limits"
    assert mod.source.startswith("environments/prod/passthrough/limits.yaml:1")
    assert [c.path for c in mod.changes] == [("spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections")]


def test_a_kept_object_keeps_its_own_namespace_and_unquoted_number_keys(estate: Path) -> None:
    """kubectl reads `8090:` as the key "8090"; so does a pass-through file."""
    _put(estate, "environments/prod/passthrough/mtls.yaml", """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: per-port, namespace: payments}
spec:
  selector: {matchLabels: {app: b}}
  mtls: {mode: DISABLE}
  portLevelMtls:
    8090: {mode: STRICT}
""")
    _, result = api.compile_repo(estate, ["prod"], use_cache=False)
    assert result.ok, result.diagnostics
    (kept,) = [a for a in result.envs["prod"].artifacts if a.identity.kind == "PeerAuthentication"]
    assert kept.identity.namespace == "payments"
    assert kept.body["spec"]["portLevelMtls"] == {"8090": {"mode": "STRICT"}}


def test_the_same_object_in_base_and_an_environment_is_refused(estate: Path) -> None:
    _put(estate, "environments/base/passthrough/limits.yaml", DR)
    _put(estate, "environments/prod/passthrough/limits.yaml", DR)
    _, result = api.compile_repo(estate, ["prod"], use_cache=False)
    (hit,) = [d for d in result.diagnostics if d.code == "F011"]
    assert str(hit.position) == "./environments/prod/passthrough/limits.yaml:1:1"
    assert [str(p) for p in hit.related] == ["./environments/base/passthrough/limits.yaml:1:1"]


def test_review_names_the_pass_through_file_as_the_cause(estate: Path, tmp_path: Path) -> None:
    from meshc.diff.causes import group_causes
    _put(estate, "environments/prod/passthrough/limits.yaml", DR)
    base = tmp_path / "base"
    shutil.copytree(estate, base)
    _put(estate, "environments/prod/passthrough/limits.yaml", DR.replace("maxConnections: 7", "maxConnections: 9"))
    causes = group_causes(run(DiffRequest(str(base), str(estate), estate, ("prod",))))
    titles = [c.title for c in causes]
    assert "kept verbatim in environments/prod/passthrough/limits.yaml (prod)" in titles, titles
    assert not any(t.startswith("derived configuration") for t in titles), titles


def test_drift_reads_the_kinds_pass_through_brings(estate: Path) -> None:
    from meshc.adopt.drift import compile_expected, kubectl_command
    _put(estate, "environments/prod/passthrough/mtls.yaml", """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
""")
    expected = compile_expected(estate, "prod")
    command = kubectl_command(sorted({(g, oid.kind) for oid, g in expected.groups.items()}))
    assert "peerauthentications.security.istio.io" in command.split()[2].split(",")
