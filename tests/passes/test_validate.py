"""Pass `validate` (front/validate.py, `pipeline.validate_pass`): one merged ServiceDecl -> a typed,
frozen Service, or the V-codes that say why not, placed at the layer that wrote the value. Run per
unit by `units` (`pipeline.compile_unit`).

Every V-code's position through the whole compile: tests/fixtures/codes/V*.yaml (tests/test_codes.py)
and tests/test_errors.py.
"""

from __future__ import annotations

from meshc.files.tree import MemoryTree
from meshc.model.core import Service
from meshc.pipeline import compile_estate, validate_pass

from .estates import API, estate, upto


def test_a_declared_duration_beyond_int64_is_v019() -> None:
    """Go (so istiod) refuses a duration past int64 nanoseconds (~2562047h): meshc says so at the declaration."""
    service = ("services:\n  - name: api\n    owner: team\n    hosts: [api.example.com]\n    resolution: dns\n"
               "    ports:\n      - number: 443\n        protocol: HTTPS\n"
               "    trafficPolicy:\n      connectionPool:\n        tcp: {connectTimeout: %s}\n")
    files = {"environments/dev/env.yaml": "name: dev\nnamespace: egress\n"}
    ok = compile_estate(MemoryTree({**files, "environments/base/a.yaml": service % "2562047h"}))
    assert ok.ok, [str(d) for d in ok.diagnostics]
    bad = compile_estate(MemoryTree({**files, "environments/base/a.yaml": service % "2562048h"}))
    assert [d.code for d in bad.diagnostics] == ["V019"]
# --- the pass's contract (new) -------------------------------------------------------------------


def _unit(files: dict[str, str]):  # type: ignore[no-untyped-def]
    prepared = upto("templates", files)
    return prepared.settings["dev"], prepared.merged.decls["dev"][0]


def test_a_valid_declaration_becomes_a_typed_service() -> None:
    settings, decl = _unit(estate(a=API))
    service, diags = validate_pass(settings, decl)
    assert diags == [] and isinstance(service, Service)
    assert (service.name, service.namespace, service.hosts) == ("api", "egress", ("api.example.com",))
    assert [(p.number, p.protocol) for p in service.ports] == [(443, "HTTPS")]
    assert service.decl is decl


def test_an_invalid_declaration_gives_no_service_and_the_reason_at_its_position() -> None:
    settings, decl = _unit(estate(a=API.replace("api.example.com", "mydb")))
    service, diags = validate_pass(settings, decl)
    assert service is None and [d.code for d in diags] == ["V001"]
    pos = diags[0].position
    assert pos is not None and (pos.file, pos.line, pos.col) == ("environments/base/a.yaml", 4, 13)


def test_an_overlay_value_is_refused_at_the_overlay() -> None:
    overlay = "overrides:\n  - name: api\n    trafficPolicy:\n      outlierDetection: {interval: 500us}\n"
    settings, decl = _unit(estate(a=API, files={"environments/dev/x.yaml": overlay}))
    service, diags = validate_pass(settings, decl)
    assert service is None and [d.code for d in diags] == ["V019"]
    assert diags[0].position is not None and diags[0].position.file == "environments/dev/x.yaml"
