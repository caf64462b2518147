"""Three realistic pull requests on the example estate, their review comments, and how a browser
shows them (docs/review-examples/).

Each example is a change to a git copy of the example estate; its comment is `meshc diff
--format markdown` of that change. `to_html` renders the Markdown as GitHub does for a comment
(CommonMark with tables and raw HTML, via markdown-it-py) with the Mermaid maps drawn by the
Mermaid library pinned in tests/tools/review (npm), inlined: the page needs no network. Each
map is drawn with its own id (GitHub draws each in its own frame; on one page, Mermaid's
time-based ids would collide under Chromium's virtual time).
Chromium (Debian package chromium) loads it headless for a screenshot (`screenshot`) or its DOM
after the maps are drawn (`rendered_dom`).

Regenerate the committed examples (Markdown and PNG) with
    .venv/bin/python -m tests.review_examples
and review them like goldens; tests/test_review_examples.py renders the same three.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from markdown_it import MarkdownIt

from meshc.diff.render.markdown import render_markdown
from meshc.diff.run import DiffRequest, run

from .test_diff import GEO_IP as _DIFF_GEO_IP

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "review-examples"
MERMAID = REPO / "tests" / "tools" / "review" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
MESHC_YAML = "diff:\n  mask:\n    - {kind: DestinationRule, path: spec.trafficPolicy.tls.credentialName}\n"
GIT = ["git", "-c", "user.name=meshc", "-c", "user.email=meshc@example.com", "-c", "commit.gpgsign=false"]
DATES = {"GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=20000"]

# the SaaS host of tests/test_diff.py, with SNI instead of a client key
GEO_IP = _DIFF_GEO_IP.replace("      privateKey: /etc/certs/geo-ip-private.pem\n", "      sni: geoip.example.org\n")


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


def _issue_pr(root: Path) -> None:
    """One prod endpoint removed, one TLS setting weakened, one SaaS host added."""
    _edit(root, "environments/prod/services.yaml",
          "    endpoints:\n      - address: 10.21.1.10\n        name: pg-3\n        labels: {role: replica}\n"
          "        locality: {region: eu-central1, zone: eu-central1-a}\n        weight: 1\n"
          "        network: net-eu-central1\n        serviceAccount: orders-db\n", "")
    _edit(root, "environments/base/saas.yaml", "            subjectAltNames: [api.stripe.com]\n", "")
    with (root / "environments/base/saas.yaml").open("a") as fh:
        fh.write(GEO_IP)


def _vm_move(root: Path) -> None:
    """A VM replaced (new address) in prod, a new inventory VM in every environment."""
    _edit(root, "environments/prod/services.yaml", "address: 10.21.1.10", "address: 10.21.1.11")
    _edit(root, "environments/base/vms.yaml", "      - address: 10.30.2.21\n",
          "      - address: 10.30.3.21\n        name: inv-c\n        labels: {version: v2}\n"
          "        locality: {region: eu-west1, zone: eu-west1-d}\n        serviceAccount: inventory\n"
          "      - address: 10.30.2.21\n")


def _policy(root: Path) -> None:
    """dev becomes REGISTRY_ONLY, prod's client certificate rotates, the partner SFTP host moves."""
    _edit(root, "environments/dev/env.yaml", "proxy:\n", "proxy:\n  outboundTrafficPolicy: REGISTRY_ONLY\n")
    _edit(root, "environments/prod/services.yaml", "credentialName: fraud-scoring-client",
          "credentialName: fraud-scoring-client-2026")
    _edit(root, "environments/base/legacy.yaml", "    addresses: [203.0.113.10]", "    addresses: [203.0.113.20]")
    _edit(root, "environments/base/legacy.yaml", "      - address: 203.0.113.10", "      - address: 203.0.113.20")


EXAMPLES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "endpoint-tls-host": ("remove a prod endpoint, weaken a TLS setting, add a SaaS host", _issue_pr),
    "vm-move": ("replace a prod VM, add an inventory VM", _vm_move),
    "policy": ("tighten dev egress, rotate a certificate, move a partner host", _policy),
}


def _git(root: Path, *args: str) -> None:
    subprocess.run([*GIT, "-C", str(root), *args], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(root), **DATES, "GIT_CONFIG_NOSYSTEM": "1"})


def comment(name: str) -> str:
    """The review comment of example `name`, made on a fresh git copy of the example estate."""
    with tempfile.TemporaryDirectory(prefix="meshc-review-") as tmp:
        root = Path(tmp) / "estate"
        shutil.copytree(REPO / "environments", root / "environments")
        (root / "meshc.yaml").write_text(MESHC_YAML)
        _git(root, "init", "-q", "-b", "main")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "estate")
        EXAMPLES[name][1](root)
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", EXAMPLES[name][0])
        md = render_markdown(run(DiffRequest("HEAD~1", "HEAD", root)))
    return re.sub(r"`(HEAD~1|HEAD) \([0-9a-f]{12}\)`", r"`\1`", md)  # commit ids differ per clone


_STYLE = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328;
max-width:1012px;margin:16px auto;padding:0 16px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #d1d9e0;padding:4px 10px;text-align:left}code{background:#eff1f3;padding:1px 4px;
border-radius:4px;font-size:12px}pre{background:#f6f8fa;padding:10px;overflow:auto}details{margin:4px 0}
summary{cursor:pointer}h2{border-bottom:1px solid #d1d9e0}"""


def to_html(md: str) -> str:
    """The comment as GitHub shows it: Markdown with tables and raw HTML; mermaid blocks drawn."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    body = re.sub(r'<pre><code class="language-mermaid">(.*?)</code></pre>',
                  lambda m: f'<pre class="mermaid">{m.group(1)}</pre>', body, flags=re.DOTALL)
    script = MERMAID.read_text(encoding="utf-8") if MERMAID.is_file() else ""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>meshc review</title>"
            f"<style>{_STYLE}</style></head><body>{body}"
            f"<script>{script}</script>"
            "<script>(async()=>{if(!window.mermaid)return;"
            "mermaid.initialize({startOnLoad:false,securityLevel:'strict'});"
            "const els=[...document.querySelectorAll('pre.mermaid')];"
            "for(let i=0;i<els.length;i++){const {svg}=await mermaid.render('meshc-map-'+i,els[i].textContent);"
            "els[i].innerHTML=svg;els[i].dataset.rendered='true';}})();</script>"
            "</body></html>")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = chromium()
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="meshc-chromium-") as profile:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=120, check=False)


def rendered_dom(page: Path) -> str:
    return _chromium(page, "--dump-dom").stdout


def screenshot(page: Path, png: Path, height: int = 2600) -> None:
    _chromium(page, f"--screenshot={png}", f"--window-size=1100,{height}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    readme = ["# Review examples", "", "Three pull requests on the example estate and the comment meshc posts",
              "for each (`<name>.md`), as a browser shows it (`<name>.png`: Markdown rendered with tables",
              "and HTML, the Mermaid maps drawn by the pinned Mermaid, in headless Chromium). Regenerate",
              "with `.venv/bin/python -m tests.review_examples`; tests/test_review_examples.py checks them.", ""]
    for name, (title, _) in EXAMPLES.items():
        md = comment(name)
        (OUT / f"{name}.md").write_text(md)
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / f"{name}.html"
            page.write_text(to_html(md))
            if chromium() is not None:
                screenshot(page, OUT / f"{name}.png")
        readme.append(f"* [{name}]({name}.md) ([screenshot]({name}.png)): {html.escape(title)}")
    (OUT / "README.md").write_text("\n".join(readme) + "\n")


if __name__ == "__main__":
    main()
