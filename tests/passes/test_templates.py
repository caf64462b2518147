"""Template overrides: a repository's templates/ replaces meshc's by file name, and a template that
prints a value without `| json` is refused with the template's line."""

from __future__ import annotations

from pathlib import Path

from meshc.pipeline import compile_estate
from meshc.expand.templating import BUILTIN_TEMPLATES
from meshc.files.tree import MemoryTree

FILES = {
    "environments/dev/env.yaml": "name: dev\nnamespace: egress\n",
    "environments/base/a.yaml": "services:\n  - name: api\n    owner: t\n    hosts: [api.example.com]\n"
                                "    resolution: dns\n    ports:\n      - {number: 443, protocol: HTTPS}\n",
}


def _override(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    (d / "serviceentry.json.j2").write_text(text)
    return d


def test_user_template_replaces_builtin_by_name(tmp_path: Path) -> None:
    text = (BUILTIN_TEMPLATES / "serviceentry.json.j2").read_text().replace(
        '"labels": {{ se.labels | json }},', '"labels": {{ se.labels | json }}, "finalizers": {{ ["team/keep"] | json }},')
    result = compile_estate(MemoryTree(FILES), templates=[_override(tmp_path, text)])
    assert result.ok, result.diagnostics
    se = next(a.body for a in result.envs["dev"].artifacts if a.identity.kind == "ServiceEntry")
    assert se["metadata"]["finalizers"] == ["team/keep"]


def test_raw_value_in_template_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (BUILTIN_TEMPLATES / "serviceentry.json.j2").read_text().replace(
        '"name": {{ se.name | json }},', '"name": "{{ se.name }}",')
    result = compile_estate(MemoryTree(FILES), templates=[_override(tmp_path, text)])
    diags = [d for d in result.diagnostics if d.code == "X001"]
    assert diags and "| json" in diags[0].message + diags[0].hint
    assert diags[0].position is not None and diags[0].position.line == 6
    assert all(env.bundle is None for env in result.envs.values())
