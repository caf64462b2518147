"""`meshc graph ENV`: the whole environment's map as one standalone HTML page.

Input: an environment's compiled services (owner, namespace) and Istio objects. Output: one HTML
document, with no external resource (no CDN, no script or style from elsewhere: it opens
offline), holding per namespace and owner a collapsed group of service cards; each card is the
same map the review draws (meshc.diff.maps): who may call the service, the TLS mode on the edge,
the ServiceEntry with its hosts and ports, its endpoints (address, locality, network) or DNS
names, drawn as an inline SVG with a fixed three-column layout (callers, service, endpoints:
no graph layout is needed). A search box filters cards by name, host, address, owner or
namespace and opens the groups that match.
Invariants: every text is HTML-escaped (a declared value can add no element or script); the page
is deterministic; at 10,000 services it stays usable: groups are closed until opened and the
search works on a precomputed lower-case text per card (vanilla JS, a few lines, inline).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshc.diff.maps import MAX_ENDPOINTS, ServiceMap, service_map

_W, _BOX_H, _GAP = 640, 34, 8


def _text(x: int, y: int, text: str, size: int = 11, weight: str = "normal") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}">'
            f"{html.escape(text if len(text) <= 60 else text[:59] + '…')}</text>")


def _box(x: int, y: int, w: int, lines: Sequence[str], fill: str) -> str:
    h = _BOX_H + 13 * max(0, len(lines) - 2)
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#57606a"/>']
    out += [_text(x + 6, y + 14 + 13 * i, line, weight="bold" if i == 0 else "normal") for i, line in enumerate(lines)]
    return "".join(out)


def card_svg(m: ServiceMap) -> str:
    """The map of one service: callers -> service (edge: TLS) -> endpoints, as inline SVG."""
    endpoints = list(m.endpoints[:MAX_ENDPOINTS])
    rows = max(1, len(endpoints) + (1 if len(m.endpoints) > MAX_ENDPOINTS else 0))
    height = max(3 * _BOX_H, rows * (_BOX_H + _GAP)) + 10
    tls = "; ".join(f"{mode} ({scope})" if scope != "all ports" else mode for scope, mode in m.tls) or (
        "mTLS (auto)" if m.location == "MESH_INTERNAL" else "as the app sends it")
    mid = height // 2 - _BOX_H // 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" role="img" '
             f'aria-label="{html.escape(m.name)}" font-family="sans-serif">']
    parts.append(_box(4, mid, 150, ["callers", m.callers], "#f6f8fa"))
    parts.append(f'<line x1="154" y1="{mid + 17}" x2="230" y2="{mid + 17}" stroke="#57606a" marker-end="url(#a)"/>')
    parts.append(_text(158, mid + 10, tls, size=9))
    parts.append(_box(230, mid, 200, [f"{m.name} · {m.location.removeprefix('MESH_').lower()}",
                                      ", ".join(m.hosts), " ".join(m.ports)], "#ddf4ff"))
    targets = [(a, " · ".join(x for x in (loc, net) if x)) for a, loc, net in endpoints]
    if len(m.endpoints) > MAX_ENDPOINTS:
        targets.append((f"{len(m.endpoints) - MAX_ENDPOINTS} more endpoint(s)", ""))
    if not targets:
        targets = [("DNS " + ", ".join(m.hosts) if m.resolution.startswith("DNS") else m.resolution.lower(), "")]
    for i, (first, second) in enumerate(targets):
        y = 5 + i * (_BOX_H + _GAP)
        parts.append(f'<line x1="430" y1="{mid + 17}" x2="470" y2="{y + 17}" stroke="#8c959f"/>')
        parts.append(_box(470, y, 165, [first, second] if second else [first], "#ffffff"))
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """body{font-family:sans-serif;margin:16px;color:#1f2328}input{font-size:15px;padding:6px;width:420px}
details{margin:4px 0 4px 12px}summary{cursor:pointer;font-weight:bold}.card{margin:6px 0 10px 12px}
.card h4{margin:2px 0;font-size:13px}.hidden{display:none}.count{color:#57606a;font-weight:normal}"""
_SCRIPT = """const q=document.getElementById('q'),cards=[...document.querySelectorAll('.card')];
let t;q.addEventListener('input',()=>{clearTimeout(t);t=setTimeout(()=>{const v=q.value.trim().toLowerCase();
let n=0;for(const c of cards){const hit=!v||c.dataset.s.includes(v);c.classList.toggle('hidden',!hit);
if(hit&&v){n++;let p=c.parentElement;while(p&&p.tagName==='DETAILS'){if(n<=200)p.open=true;p=p.parentElement;}}}
document.getElementById('n').textContent=v?n+' match(es)':'';},150);});"""


def graph_page(env: str, services: Iterable[tuple[str, str, str]], bodies: Mapping[str, list[Mapping[str, Any]]]
               ) -> str:
    """`services`: (name, namespace, owner); `bodies`: service -> its Istio objects."""
    groups: dict[str, dict[str, list[tuple[str, ServiceMap]]]] = {}
    for name, namespace, owner in sorted(services):
        m = service_map(name, namespace, bodies.get(name, []))
        if m is not None:
            groups.setdefault(namespace, {}).setdefault(owner or "(no owner)", []).append((name, m))
    total = sum(len(v) for owners in groups.values() for v in owners.values())
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>meshc graph: {html.escape(env)}</title>", f"<style>{_STYLE}</style></head><body>",
           f"<h1>meshc graph: {html.escape(env)} <span class=count>({total} services)</span></h1>",
           '<p><input id="q" type="search" placeholder="search: service, host, address, owner, namespace" '
           'autofocus> <span id="n" class="count"></span></p>',
           '<svg width="0" height="0" style="position:absolute"><defs><marker id="a" markerWidth="8" '
           'markerHeight="8" refX="7" refY="3" orient="auto"><path d="M0,0 L7,3 L0,6 z" fill="#57606a"/>'
           "</marker></defs></svg>"]
    for namespace, owners in sorted(groups.items()):
        count = sum(len(v) for v in owners.values())
        out.append(f"<details><summary>namespace {html.escape(namespace)} <span class=count>({count})</span>"
                   "</summary>")
        for owner, items in sorted(owners.items()):
            out.append(f"<details><summary>{html.escape(owner)} <span class=count>({len(items)})</span></summary>")
            for name, m in items:
                search = " ".join([name, namespace, owner, *m.hosts, *(e[0] for e in m.endpoints)]).lower()
                out.append(f'<div class="card" data-s="{html.escape(search)}"><h4>{html.escape(name)}</h4>'
                           f"{card_svg(m)}</div>")
            out.append("</details>")
        out.append("</details>")
    out += [f"<script>{_SCRIPT}</script>", "</body></html>"]
    return "\n".join(out) + "\n"
