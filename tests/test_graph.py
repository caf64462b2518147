"""`meshc graph ENV` (meshc.diff.graph): the environment's map as one offline HTML page."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from meshc.cli.main import main
from meshc.diff.graph import graph_page

from .conftest import REPO


def _se(name: str, host: str, endpoints: list[dict[str, str]] | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"hosts": [host], "ports": [{"number": 443, "protocol": "TLS"}],
                               "location": "MESH_EXTERNAL", "resolution": "STATIC" if endpoints else "DNS"}
    if endpoints:
        spec["endpoints"] = endpoints
    return {"kind": "ServiceEntry", "metadata": {"name": name}, "spec": spec}


def test_the_example_estate_page_has_every_service_and_nothing_from_elsewhere(tmp_path: Path) -> None:
    out = tmp_path / "prod.html"
    result = CliRunner().invoke(main, ["graph", "prod", "-o", str(out), "-C", str(REPO)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    names = re.findall(r'<div class="card" data-s="[^"]*"><h4>([^<]+)</h4>', page)
    assert sorted(names) == sorted(["checkout-batch", "fraud-scoring", "inventory-api", "legacy-billing",
                                    "maps-google", "orders-db", "partner-sftp", "payments-stripe"])
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)  # offline: nothing fetched
    assert "workloads app=checkout" in page and "MUTUAL" in page  # fraud-scoring's callers and TLS
    assert "10.21.1.10" in page and "net-eu-central1" in page  # orders-db's prod endpoint
    again = CliRunner().invoke(main, ["graph", "prod", "-o", "-", "-C", str(REPO)])
    assert again.exit_code == 0 and again.stdout == page  # the same estate, the same page
    assert "<script>" in page and 'id="q"' in page


def test_declared_values_cannot_add_markup() -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    page = graph_page("prod", [(evil, "ns", evil)], {evil: [_se(evil, evil, [{"address": evil, "locality": evil}])]})
    assert "<script>alert" not in page and "<img" not in page and page.count("<script>") == 1


def test_ten_thousand_services_stay_grouped_and_searchable() -> None:
    services = [(f"svc-{i:05d}", f"team-ns-{i % 40}", f"team-{i % 120}") for i in range(10_000)]
    bodies = {name: [_se(name, f"{name}.example.com",
                         [{"address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "locality": "r1/z1"}])]
              for i, (name, _, _) in enumerate(services)}
    page = graph_page("prod", services, bodies)
    assert page.count('<div class="card"') == 10_000
    assert page.count("<details>") == 40 + 120  # 40 namespaces of 3 owners each, every group closed
    assert "<details open" not in page  # nothing is laid out until a group is opened or searched
    assert len(page) < 40_000_000
