"""Pass `render` (emit/bundle.py, `pipeline.render_pass`): a service's Artifacts -> its manifest file
(path, canonical kubectl-style YAML bytes) and its index.json entries, one per object with the
document's sha256. Run per unit by `units`, only on what expand made.

The YAML writer itself: tests/test_yamlout.py; whole bundles against goldens: tests/test_estate.py,
tests/test_cases.py.
"""

from __future__ import annotations

import hashlib

import yaml

from meshc.pipeline import compile_unit, expand_pass, render_pass, validate_pass

from .estates import FIXTURES, VM, estate, upto


def _unit(templates: tuple = ()):  # type: ignore[no-untyped-def]
    prepared = upto("templates", estate(a=VM.replace("SELECTOR", "db")), templates)
    return prepared.settings["dev"], prepared.merged.decls["dev"][0], prepared.expanders["dev"]


def test_render_writes_one_file_per_service_and_an_index_entry_per_object() -> None:
    settings, decl, expander = _unit()
    service, _ = validate_pass(settings, decl)
    assert service is not None
    artifacts, _ = expand_pass(expander, service)
    path, data, entries = render_pass(decl, service, artifacts)
    assert path == "egress/db.yaml"
    docs = list(yaml.safe_load_all(data))
    assert [d["kind"] for d in docs] == ["ServiceEntry", "WorkloadEntry", "DestinationRule"]
    assert [d for d in docs] == [dict(a.body) for a in artifacts]
    assert [(e["kind"], e["name"], e["file"], e["service"], e["source"]) for e in entries] == [
        ("ServiceEntry", "db", path, "db", "environments/base/a.yaml:2:5"),
        ("WorkloadEntry", "db-10-9-1-1", path, "db", "environments/base/a.yaml:2:5"),
        ("DestinationRule", "db", path, "db", "environments/base/a.yaml:2:5")]
    chunks = data.decode().split("---\n")[1:]
    assert [e["sha256"] for e in entries] == [hashlib.sha256(c.encode()).hexdigest() for c in chunks]


def test_render_is_deterministic_whatever_the_artifact_order() -> None:
    settings, decl, expander = _unit()
    service, _ = validate_pass(settings, decl)
    assert service is not None
    artifacts, _ = expand_pass(expander, service)
    assert render_pass(decl, service, artifacts) == render_pass(decl, service, artifacts[::-1])


def test_nothing_is_rendered_for_a_unit_that_failed_to_expand() -> None:
    settings, decl, expander = _unit((FIXTURES / "expand" / "raw-value",))
    out = compile_unit(settings, decl, expander)
    assert out.valid and out.artifacts == [] and (out.file, out.data, out.entries) == ("", b"", ())
    assert [d.code for d in out.diagnostics] == ["X001"]
