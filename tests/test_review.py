"""The review by cause (meshc.diff.causes) and the risk flags that matter (meshc.diff.risk).

Each test makes a pull request's worth of change on a git copy of the example estate (helpers of
tests/test_diff.py) and reads the change set, the causes and the rendered comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from meshc.diff.causes import DERIVED, group_causes
from meshc.diff.render.markdown import render_markdown
from meshc.diff.render.plain import render_json

from .test_diff import GEO_IP, append, commit, diff, edit, estate  # noqa: F401 - `estate` is a fixture

__all__ = ["estate"]


def _pr(root: Path) -> None:
    """The pull request of the issue: one prod endpoint removed, one TLS setting weakened, one
    SaaS host added."""
    edit(root, "environments/prod/services.yaml",
         "    endpoints:\n      - address: 10.21.1.10\n        name: pg-3\n        labels: {role: replica}\n"
         "        locality: {region: eu-central1, zone: eu-central1-a}\n        weight: 1\n"
         "        network: net-eu-central1\n        serviceAccount: orders-db\n", "")
    edit(root, "environments/base/saas.yaml", "            subjectAltNames: [api.stripe.com]\n", "")
    append(root, "environments/base/saas.yaml", GEO_IP)
    commit(root, "one endpoint, one TLS setting, one host")


def test_one_entry_per_declaration_change_with_its_flags_and_position(estate: Path) -> None:
    _pr(estate)
    changes = diff(estate, "HEAD~1", "HEAD")
    causes = {c.service: c for c in group_causes(changes)}
    assert set(causes) >= {"orders-db", "payments-stripe", "geo-ip"}
    geo = causes["geo-ip"]
    assert geo.envs == ("prod", "dev", "edge", "staging")  # a base change: one cause, four environments
    assert geo.where == ("environments/base/saas.yaml:43",)  # one line above: the SAN line is gone
    assert [c for c, _, _ in geo.flags()] == ["new-external-host"]
    stripe = causes["payments-stripe"]
    assert [c for c, _, _ in stripe.flags()] == ["verification-weakened"]
    assert stripe.where == ("environments/base/saas.yaml:31",)  # the entry now ends there: its last line went
    orders = causes["orders-db"]
    assert orders.envs == ("prod",) and orders.where[0].startswith("environments/prod/services.yaml:")
    assert "endpoint-removed" in [c for c, _, _ in orders.flags()]
    assert any("no longer allows 10.21.1.10:5432" in line for line in orders.iptables)
    removed = "prod: workload orders-db-pg-3: all its capture rules removed"
    assert any(line.startswith(removed) for line in orders.iptables)
    assert len(orders.iptables) == 2  # the workloads with the same change share one line
    assert DERIVED not in causes or not causes[DERIVED].objects


def test_the_comment_counts_causes_and_opens_with_what_matters(estate: Path) -> None:
    _pr(estate)
    md = render_markdown(diff(estate, "HEAD~1", "HEAD"))
    header = md.split("### :warning:")[0]
    assert "3 declaration change(s)" in header and "derived Envoy/iptables object(s)" in header
    flags = md.split("### Changes by cause")[0]
    for code in ("verification-weakened", "new-external-host", "endpoint-removed", "production-touched"):
        assert f"`{code}`" in flags
    assert flags.count("`iptables-changed`") <= 1  # one row per cause, not one per chain
    by_cause = md.split("### Changes by cause")[1].split("<details><summary>Objects per environment")[0]
    assert by_cause.index("payments-stripe") < by_cause.index("geo-ip")  # riskiest first
    assert "<details open><summary><code>prod</code>" in md  # risky objects open, production first


def test_json_carries_the_causes(estate: Path) -> None:
    _pr(estate)
    data = orjson.loads(render_json(diff(estate, "HEAD~1", "HEAD")))
    assert data["summary"]["declarationChanges"] == 3
    services = [c["service"] for c in data["causes"]]
    assert services[0] == "payments-stripe" and "geo-ip" in services


def _flags(root: Path) -> dict[str, list[str]]:
    commit(root, "change")
    out: dict[str, list[str]] = {}
    for flag in diff(root, "HEAD~1", "HEAD").risks:
        out.setdefault(flag.code, []).append(flag.message)
    return out


def test_sni_and_ca_removed_and_certificate_source_changed(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "            sni: api.stripe.com\n", "")
    assert "sni removed" in " ".join(_flags(estate)["verification-weakened"])
    edit(estate, "environments/prod/services.yaml", "credentialName: fraud-scoring-client",
         "credentialName: fraud-scoring-client-v2")
    flags = _flags(estate)
    assert flags["certificate-changed"] == ["certificate source changed at spec.trafficPolicy.tls: credentialName"]
    assert "tls-weakened" not in flags


def test_subject_alt_names_widened(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "subjectAltNames: [api.stripe.com]",
         "subjectAltNames: [api.stripe.com, '*.stripe.com']")
    assert "now also accepts *.stripe.com" in " ".join(_flags(estate)["verification-weakened"])


def test_allow_list_opened_and_outbound_policy_changed(estate: Path) -> None:
    edit(estate, "environments/prod/env.yaml", "  egressAllowList: true\n", "  egressAllowList: false\n")
    flags = _flags(estate)
    assert len(flags["allow-list-opened"]) == 7  # every prod VM workload
    edit(estate, "environments/dev/env.yaml", "  locality:", "  outboundTrafficPolicy: REGISTRY_ONLY\n  locality:")
    flags = _flags(estate)
    assert any("REGISTRY_ONLY" in m for m in flags["outbound-policy-changed"])


def test_a_workload_losing_capture(estate: Path) -> None:
    edit(estate, "environments/base/vms.yaml", "        weight: 1\n        serviceAccount: orders-db\n",
         "        weight: 1\n")
    assert any("orders-db-pg-2" in m for m in _flags(estate)["capture-lost"])


def test_a_host_moving_from_internal_to_external(estate: Path) -> None:
    edit(estate, "environments/base/vms.yaml",
         "    location: internal\n    resolution: static\n    endpointsAs: workloadEntries",
         "    location: external\n    resolution: static\n    endpointsAs: inline")
    assert "became-external" in _flags(estate)


def test_the_comment_maps_each_touched_service(estate: Path) -> None:
    _pr(estate)
    md = render_markdown(diff(estate, "HEAD~1", "HEAD"))
    maps = md.split("Map of the change")[1].split("</details>")[0]
    assert maps.count("```mermaid") >= 3
    orders = maps[maps.index('["orders-db in prod"]'):].split("```")[0]
    assert "10.21.1.10" in orders and re.search(r"class m\d_e0 removed", orders)  # the removed endpoint, red
    geo = maps[maps.index("geo-ip in prod"):].split("```")[0]
    assert "same in dev, edge, staging" in geo and re.search(r"class m\d_se added", geo)
    stripe = maps[maps.index("payments-stripe in prod"):].split("```")[0]
    assert "SIMPLE" in stripe


def test_map_labels_cannot_add_nodes_or_directives() -> None:
    from meshc.diff.maps import ServiceMap, label, mermaid

    hostile = 'x"] --> evil["pwn\nclick se call alert(1)%%'
    assert all(ch not in label(hostile) for ch in '"[]\n%<>') and "#34;" in label(hostile)
    m = ServiceMap(hostile, "ns", "MESH_EXTERNAL", "DNS", (hostile,), ("80/HTTP",), ((hostile, hostile, ""),), (),
                   hostile)
    chart = mermaid("prod", None, m)
    lines = chart.split("\n")[2:-1]
    assert all(line.startswith("  ") and line.count('"') % 2 == 0 for line in lines)
    assert not any(line.strip().startswith(("click", "%%", "style", "evil")) for line in lines)
    assert "evil[" not in chart and "-->" not in "".join(line.split('"')[1] for line in lines if '"' in line)


def test_ten_thousand_changed_services_fit_the_comment_and_say_what_was_left_out(tmp_path: Path) -> None:
    from .test_diff import _synthetic

    _synthetic(tmp_path / "old", 10_000, 0, 0)
    _synthetic(tmp_path / "new", 10_000, 0, 1)
    changes = diff(tmp_path, str(tmp_path / "old"), str(tmp_path / "new"))
    md = render_markdown(changes)
    assert len(md.encode()) <= 65_536
    assert "10000 declaration change(s)" in md.split("###")[0]
    left = re.search(r"… (\d+) more cause\(s\) not listed here", md)
    assert left is not None and int(left.group(1)) > 9_000
    assert "**Left out:**" in md and "meshc diff --format text" in md


def test_the_map_masks_what_a_mask_rule_covers(estate: Path) -> None:
    (estate / "meshc.yaml").write_text((estate / "meshc.yaml").read_text()
                                       + "    - {kind: ServiceEntry, path: spec.hosts}\n")
    commit(estate, "mask hosts")
    append(estate, "environments/base/saas.yaml", GEO_IP)
    commit(estate, "geo-ip")
    md = render_markdown(diff(estate, "HEAD~1", "HEAD"))
    maps = md.split("Map of the change")[1].split("</details>")[0]
    assert "geo-ip in prod" in maps and "geoip.example.org" not in maps and "masked" in maps
    assert "geoip.example.org" not in md.split("### Changes by cause")[0]  # risk rows scrubbed too
