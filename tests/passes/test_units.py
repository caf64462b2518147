"""Pass `units` (`pipeline.units_pass`): Prepared -> Units, validate -> expand -> render
(`compile_unit`) for every (environment, service), taken from the previous build's cache when the
unit's inputs are unchanged and forked over the cores otherwise. Diagnostics stay in each unit's
`UnitOut`; `assemble` reports them.

Parallel and cached builds equal to a serial clean one at scale: tests/test_parallel_cache.py.
"""

from __future__ import annotations

from pathlib import Path

from meshc.pipeline import Context, Units, _env_fingerprint, unit_key, units_pass
from meshc.runtime.cache import BuildCache
from meshc.runtime.executor import Executor, apply

from .estates import API, VM, context, estate, upto

PROD = {"environments/prod/env.yaml": "name: prod\nnamespace: egress\n"}


def test_every_service_of_every_environment_is_one_unit() -> None:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"), files=PROD)
    ctx, _ = context(files)
    prepared = upto("templates", files)
    step = units_pass(ctx, prepared)
    assert step.diagnostics == () and isinstance(step.value, Units) and step.value.prepared is prepared
    for env in ("dev", "prod"):
        outs = step.value.outs[env]
        assert [o.file for o in outs] == ["egress/api.yaml", "egress/db.yaml"]
        assert all(o.valid and o.diagnostics == [] for o in outs)
        assert [len(o.artifacts) for o in outs] == [1, 3]
    assert step.learned.units is not None and sorted(step.learned.units) == ["dev", "prod"]
    assert all(len(table) == 2 for table in step.learned.units.values())


def test_a_failed_unit_carries_its_diagnostics_and_the_others_are_compiled() -> None:
    files = estate(a=API.replace("api.example.com", "mydb"), b=VM.replace("SELECTOR", "db"))
    ctx, _ = context(files)
    step = units_pass(ctx, upto("templates", files))
    assert step.value is not None and step.diagnostics == ()
    bad, good = step.value.outs["dev"]
    assert not bad.valid and [d.code for d in bad.diagnostics] == ["V001"] and bad.file == ""
    assert good.valid and good.file == "egress/db.yaml"


def test_a_unit_whose_inputs_are_unchanged_is_taken_from_the_last_build(tmp_path: Path) -> None:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"))
    prepared = upto("templates", files)
    first = units_pass(context(files)[0], prepared)
    assert first.value is not None and first.learned.units is not None
    keys = [unit_key(_env_fingerprint(prepared.settings["dev"]), d) for d in prepared.merged.decls["dev"]]
    assert list(first.learned.units["dev"]) == keys
    cache = BuildCache(tmp_path, "stamp")
    apply(cache, [first.learned])
    ctx = Context(context(files)[1], executor=Executor(cache))
    again = units_pass(ctx, prepared)
    assert again.value is not None
    assert all(a is b for a, b in zip(again.value.outs["dev"], first.value.outs["dev"], strict=True))
    changed = upto("templates", estate(a=API.replace("owner: team", "owner: other"), b=VM.replace("SELECTOR", "db")))
    third = units_pass(ctx, changed)
    assert third.value is not None
    api, db = third.value.outs["dev"]
    assert api is not first.value.outs["dev"][0] and db is first.value.outs["dev"][1]
