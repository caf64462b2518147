"""WorkloadEntry rules of istiod's validating webhook (`ValidateWorkloadEntry`, istio-facts.md 4.3).

Input: a WorkloadEntry manifest.
Output: findings with paths under `spec`.
Invariants: the spec is checked as `validateWorkloadEntry(we, nil, allowFQDN=true)`: hostnames are
accepted (the selecting ServiceEntry decides whether they are usable) and port names cannot be
cross-checked against a ServiceEntry here.
Codes emitted: I201-I205 (see `endpoints`) and the shared I020/I021/I040/I041.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule
from meshc.check.istio.endpoints import check_workload_entry
from meshc.check.istio.fields import as_map
from meshc.model.diagnostics import Finding

RULES: tuple[Rule, ...] = ()  # the WorkloadEntry message rules live in `endpoints`


def check_workload_entry_object(manifest: Mapping[str, Any]) -> list[Finding]:
    return check_workload_entry(as_map(manifest.get("spec")), ("spec",), None)
