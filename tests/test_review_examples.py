"""The three review examples (docs/review-examples/, made by tests/review_examples.py): each
comment is what meshc posts for its pull request (golden; `MESHC_UPDATE_GOLDENS=review-examples`
rewrites them, `python -m tests.review_examples` also redraws the screenshots), says what a
reviewer must see first, and renders in headless Chromium with every map drawn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import review_examples as ex
from .conftest import check_golden

EXPECTED = {
    "endpoint-tls-host": (("verification-weakened", "new-external-host", "endpoint-removed"),
                          "**orders-db (prod)**", "removes WorkloadEntry orders-db-pg-3"),
    "vm-move": (("endpoint-removed",), "**inventory-api (prod, dev, staging)**",
                "moves workload orders-db-pg-3 from 10.21.1.10 to 10.21.1.11"),
    "policy": (("outbound-policy-changed", "certificate-changed", "endpoint-removed"), "**env.yaml of dev**",
               "adds endpoint 203.0.113.20 of partner-sftp"),
}


@pytest.fixture(scope="module")
def comments() -> dict[str, str]:
    return {name: ex.comment(name) for name in ex.EXAMPLES}


@pytest.mark.parametrize("name", list(ex.EXAMPLES))
def test_the_comment_leads_with_flags_causes_and_the_map(comments: dict[str, str], name: str) -> None:
    md = comments[name]
    check_golden(ex.OUT / f"{name}.md", md.encode())
    flags, cause, line = EXPECTED[name]
    head = md.split("### Changes by cause")[0]
    for code in flags:
        assert f"`{code}`" in head, code
    causes = md.split("### Changes by cause")[1].split("Map of the change")[0]
    assert cause in causes and line in causes
    assert md.count("```mermaid") >= 1 and len(md.encode()) <= 65_536


@pytest.mark.parametrize("name", list(ex.EXAMPLES))
def test_the_comment_renders_with_every_map_drawn(comments: dict[str, str], name: str, tmp_path: Path) -> None:
    if ex.chromium() is None or not ex.MERMAID.is_file():
        pytest.skip("needs Debian's chromium and tests/tools/review (npm ci; `make test` installs it)")
    md = comments[name]
    page = tmp_path / f"{name}.html"
    page.write_text(ex.to_html(md))
    dom = ex.rendered_dom(page)
    maps = md.count("```mermaid")
    assert dom.count('data-rendered="true"') == maps and dom.count('aria-roledescription="flowchart-v2"') == maps
    text = re.sub(r"<[^>]+>", " ", dom)
    for code in EXPECTED[name][0]:
        assert code in text
    assert EXPECTED[name][2].replace("&", "&amp;") in dom
