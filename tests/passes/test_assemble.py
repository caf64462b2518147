"""Pass `assemble` (`pipeline.assemble_pass`, front/validate.py's `cross_check`): Units ->
Assembled, per environment the valid services and their artifacts (an `EnvResult`), every unit's
diagnostics, and the checks across services (V025: two services making one WorkloadEntry).
"""

from __future__ import annotations

from meshc.model.results import EnvResult
from meshc.pipeline import Assembled, assemble_pass

from .estates import API, VM, context, estate, upto

TWINS = """services:
  - name: api
    hosts: [api.example.com]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    ports:
      - {number: 443, protocol: HTTPS}
    endpoints:
      - {address: 10.0.0.1, name: vm-1}
  - name: api-vm
    hosts: [api-vm.example.com]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    ports:
      - {number: 443, protocol: HTTPS}
    endpoints:
      - {address: 10.0.0.2, name: "1"}
"""


def test_each_environment_gets_its_valid_services_and_their_artifacts() -> None:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"))
    ctx, _ = context(files)
    units = upto("units", files)
    step = assemble_pass(ctx, units)
    assert step.diagnostics == () and isinstance(step.value, Assembled) and step.value.units is units
    env = step.value.envs["dev"]
    assert isinstance(env, EnvResult) and env.settings.name == "dev"
    assert [s.name for s in env.services] == ["api", "db"]
    assert [str(a.identity) for a in env.artifacts] == [
        "ServiceEntry/egress/api", "ServiceEntry/egress/db", "WorkloadEntry/egress/db-10-9-1-1",
        "DestinationRule/egress/db"]
    assert env.bundle is None and env.envoy is None


def test_a_failed_unit_is_reported_and_left_out() -> None:
    files = estate(a=API.replace("api.example.com", "mydb"), b=VM.replace("SELECTOR", "db"))
    ctx, _ = context(files)
    step = assemble_pass(ctx, upto("units", files))
    assert step.value is not None and [d.code for d in step.diagnostics] == ["V001"]
    assert [s.name for s in step.value.envs["dev"].services] == ["db"]


def test_two_services_making_one_workload_entry_is_v025_at_the_second() -> None:
    files = estate(api=TWINS)
    ctx, _ = context(files)
    step = assemble_pass(ctx, upto("units", files))
    assert [d.code for d in step.diagnostics] == ["V025"]
    pos = step.diagnostics[0].position
    assert pos is not None and (pos.file, pos.line, pos.col) == ("environments/base/api.yaml", 19, 9)
