"""Pass `waivers` (check/waivers.py): the check pass's diagnostics -> (kept, waived), given the
waivers file. A waiver matches by code and env/object/path globs until it expires; an expired
waiver is W001, an unused one W002 (only after a complete check), a malformed file W000.
Fixtures: tests/fixtures/passes/waivers/.

The pass inside `meshc check` (meshc.yaml's waivers:): tests/test_check.py.
"""

from __future__ import annotations

import datetime as dt

from meshc.check.waivers import apply_waivers, load_waivers
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.model.ids import ObjectId

from .estates import FIXTURES

HERE = FIXTURES / "waivers"
TODAY = dt.date(2026, 11, 25)


def _a406(env: str = "dev") -> Diagnostic:
    return Diagnostic("A406", Severity.WARNING, "subset selects no endpoint",
                      Position("environments/base/a.yaml", 16, 9), "spec.subsets[1]", "add an endpoint", env,
                      ObjectId("DestinationRule", "egress", "db"))


def test_waivers_are_read_with_their_positions() -> None:
    waivers, problems = load_waivers(HERE / "waivers.yaml", "waivers.yaml")
    assert problems == []
    assert [(w.code, w.env, w.object, w.expires) for w in waivers] == [
        ("A406", "*", "DestinationRule/egress/db", dt.date(2030, 1, 1)),
        ("A406", "prod", "*", dt.date(2030, 1, 1)),
        ("I111", "*", "*", dt.date(2020, 1, 1))]
    assert [(w.position.file, w.position.line) for w in waivers] == [("waivers.yaml", 2), ("waivers.yaml", 3),
                                                                     ("waivers.yaml", 4)]


def test_a_matching_waiver_moves_the_finding_to_waived_and_stale_ones_are_findings() -> None:
    waivers, _ = load_waivers(HERE / "waivers.yaml", "waivers.yaml")
    kept, waived = apply_waivers([_a406()], waivers, TODAY)
    assert [d.code for d in waived] == ["A406"] and "waivers.yaml:2:5 (team: replica coming" in waived[0].hint
    assert [(d.code, d.position.line) for d in kept if d.position] == [("W002", 3), ("W001", 4)]
    partial, _ = apply_waivers([_a406()], waivers, TODAY, complete=False)
    assert [d.code for d in partial] == ["W001"]  # a partial check cannot tell a waiver is unused


def test_an_expired_waiver_waives_nothing() -> None:
    waivers, _ = load_waivers(HERE / "waivers.yaml", "waivers.yaml")
    kept, waived = apply_waivers([_a406()], waivers, dt.date(2031, 1, 1))
    assert waived == [] and sorted(d.code for d in kept) == ["A406", "W001", "W001", "W001"]


def test_a_date_that_does_not_exist_is_w000_at_its_line() -> None:
    waivers, problems = load_waivers(HERE / "bad-date.yaml", "bad-date.yaml")
    assert waivers == [] and [d.code for d in problems] == ["W000"]
    assert problems[0].position is not None and problems[0].position.line == 5
    assert "2030-02-30" in problems[0].message
