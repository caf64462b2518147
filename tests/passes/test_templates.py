"""Pass `templates` (expand/templating.py, `pipeline.templates_pass`): Merged -> Prepared, the
sandboxed template environment and one Expander per environment (X003: a template that cannot be
compiled). Fixtures: tests/fixtures/passes/templates/.

Template overrides: a repository's templates/ replaces meshc's by file name, and a template that
prints a value without `| json` is refused with the template's line."""

from __future__ import annotations

from pathlib import Path

from meshc.expand.services import Expander
from meshc.expand.templating import BUILTIN_TEMPLATES
from meshc.files.tree import MemoryTree
from meshc.pipeline import Prepared, compile_estate, templates_pass

from .estates import API, FIXTURES, context, estate, upto

BROKEN = FIXTURES / "templates" / "broken"

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


# --- the pass's contract (new) -------------------------------------------------------------------


def test_templates_pass_gives_one_expander_per_environment() -> None:
    files = estate(a=API, files={"environments/prod/env.yaml": "name: prod\nnamespace: egress\n"})
    ctx, _ = context(files)
    merged = upto("merge", files)
    step = templates_pass(ctx, merged)
    assert step.diagnostics == () and isinstance(step.value, Prepared)
    assert step.value.merged is merged
    assert sorted(step.value.expanders) == sorted(step.value.settings) == ["dev", "prod"]
    assert all(isinstance(e, Expander) for e in step.value.expanders.values())
    assert step.value.expanders["prod"].env is step.value.settings["prod"]


def test_a_template_that_cannot_be_compiled_stops_the_run_with_x003() -> None:
    files = estate(a=API)
    ctx, _ = context(files, templates=(BROKEN,))
    step = templates_pass(ctx, upto("merge", files))
    assert step.value is None
    assert [d.code for d in step.diagnostics] == ["X003"]
    pos = step.diagnostics[0].position
    assert pos is not None and pos.file.endswith("serviceentry.json.j2") and pos.line == 2
