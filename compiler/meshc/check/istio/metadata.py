"""Object metadata rules istiod applies to every Istio kind before the kind's own validator.

Input: a manifest's `metadata` mapping.
Output: findings for reserved annotations (`validateMetadata` in pkg/config/validation/validation.go).
Invariants: when any of these fires the webhook returns at once, so callers skip the kind's own
checks (`check_object` does).
Codes emitted: I001 `istio.io/dry-run` on a non-AuthorizationPolicy, I002 the always-reject test
annotation, I003 internal parent annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error
from meshc.check.istio.fields import as_map, as_str
from meshc.model.diagnostics import Finding

_SOURCE = "pkg/config/validation/validation.go validateMetadata"

DRY_RUN = webhook_error(
    "I001", "annotation istio.io/dry-run is only allowed on AuthorizationPolicy",
    f"{_SOURCE} (checkDryRunAnnotation)", "remove the istio.io/dry-run annotation")
ALWAYS_REJECT = webhook_error(
    "I002", "annotation internal.istio.io/webhook-always-reject is present", _SOURCE,
    "remove the internal.istio.io/webhook-always-reject annotation (it exists to test the webhook)")
INTERNAL_PARENT = webhook_error(
    "I003", "internal parent annotation set by hand", _SOURCE,
    "remove internal.istio.io/parents and internal.istio.io/parent-namespace; istiod sets them itself")

RULES: tuple[Rule, ...] = (DRY_RUN, ALWAYS_REJECT, INTERNAL_PARENT)

_RESERVED: tuple[tuple[str, Rule], ...] = (
    ("istio.io/dry-run", DRY_RUN),
    ("internal.istio.io/webhook-always-reject", ALWAYS_REJECT),
    ("internal.istio.io/parents", INTERNAL_PARENT),
    ("internal.istio.io/parent-namespace", INTERNAL_PARENT),
)


def check_metadata(metadata: Mapping[str, Any]) -> list[Finding]:
    annotations = as_map(metadata.get("annotations"))
    out: list[Finding] = []
    for key, rule in _RESERVED:
        if key in annotations:
            value = as_str(annotations[key])
            out.append(rule.at(("metadata", "annotations", key), f"annotation {key}={value!r} is not allowed here"))
    return out
