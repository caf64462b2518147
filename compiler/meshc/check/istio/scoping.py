"""Where a config applies: `exportTo` visibility and workload selectors.

Input: an object's namespace and its `exportTo` list or `workloadSelector` value.
Output: findings for `validateExportTo`, `ValidateAlphaWorkloadSelector` (ServiceEntry, key
`labels`) and `validateWorkloadSelector` (DestinationRule, key `matchLabels`), all in
pkg/config/validation/validation.go; and `Scope`, the set of namespaces an object is visible in,
used by the cross-object analyzers.
Invariants: `.` is replaced by the object's own namespace before duplicate checks, as Go does;
an empty exportTo means the mesh default `*` (defaultServiceExportTo / defaultDestinationRuleExportTo).
Codes emitted: I010 invalid entry, I011 duplicate entry, I012 `*` mixed with others, I013 `~` mixed
with others, I014 `~` on a kind other than ServiceEntry, I030 empty selector key, I031 wildcard in
selector, I032 selector without labels (warning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error, webhook_warning
from meshc.check.istio.fields import as_list, as_map, as_str
from meshc.check.istio.primitives import VALIDATION, is_dns1123_label
from meshc.model.diagnostics import DataPath, Finding

EXPORT_INVALID = webhook_error(
    "I010", "exportTo entry is not '.', '*' or a namespace name", f"{VALIDATION} validateExportTo",
    "use '.', '*', or a DNS-1123 namespace name (and '~' on ServiceEntry only)")
EXPORT_DUPLICATE = webhook_error(
    "I011", "duplicate exportTo entry ('.' and the own namespace count as the same)",
    f"{VALIDATION} validateExportTo", "list each namespace once; '.' already means the own namespace")
EXPORT_PUBLIC_MIXED = webhook_error(
    "I012", "exportTo '*' combined with other entries", f"{VALIDATION} validateExportTo",
    "use '*' alone, or list the namespaces without '*'")
EXPORT_NONE_MIXED = webhook_error(
    "I013", "exportTo '~' combined with other entries", f"{VALIDATION} validateExportTo",
    "use '~' alone to hide the ServiceEntry, or drop it")
EXPORT_NONE_NOT_ALLOWED = webhook_error(
    "I014", "exportTo '~' on a kind other than ServiceEntry",
    "pkg/config/visibility/visibility.go Instance.Validate", "remove '~'; only ServiceEntry can be hidden")
SELECTOR_EMPTY_KEY = webhook_error(
    "I030", "workload selector has an empty label key",
    f"{VALIDATION} ValidateAlphaWorkloadSelector / validateWorkloadSelector", "give every selector label a key")
SELECTOR_WILDCARD = webhook_error(
    "I031", "workload selector key or value contains '*'",
    f"{VALIDATION} ValidateAlphaWorkloadSelector / validateWorkloadSelector",
    "selectors match exact label values; list the values explicitly")
SELECTOR_NO_LABELS = webhook_warning(
    "I032", "workload selector without labels selects every workload in the namespace",
    f"{VALIDATION} ValidateAlphaWorkloadSelector / validateWorkloadSelector",
    "add the labels that identify the workloads, or remove the selector")

RULES: tuple[Rule, ...] = (
    EXPORT_INVALID, EXPORT_DUPLICATE, EXPORT_PUBLIC_MIXED, EXPORT_NONE_MIXED, EXPORT_NONE_NOT_ALLOWED,
    SELECTOR_EMPTY_KEY, SELECTOR_WILDCARD, SELECTOR_NO_LABELS,
)

#: Namespaces an object is visible in; None means every namespace.
Scope = frozenset[str] | None


def _entry_error(key: str, path: DataPath) -> Finding | None:
    if key == "*" or is_dns1123_label(key):
        return None
    if key == "~":
        return EXPORT_NONE_NOT_ALLOWED.at(path, "exportTo ~ (none) is not allowed for this kind")
    return EXPORT_INVALID.at(path, f"only ., *, or a valid DNS-1123 label is allowed as exportTo entry, got {key!r}")


def check_export_to(
    namespace: str, entries: Any, path: DataPath, service_entry: bool
) -> tuple[list[Finding], set[str]]:
    """Findings plus the accepted entries (with `.` replaced by the namespace)."""
    items = [as_str(e) for e in as_list(entries)]
    accepted: set[str] = set()
    out: list[Finding] = []
    for i, entry in enumerate(items):
        key = namespace if entry == "." else entry
        if key in accepted:
            what = f". and current namespace {namespace}" if key != entry else f"entry {entry}"
            out.append(EXPORT_DUPLICATE.at((*path, i), f"duplicate entries in exportTo: {what}"))
            continue
        error = None if (service_entry and entry == "~") else _entry_error(key, (*path, i))
        if error:
            out.append(error)
        else:
            accepted.add(key)
    if "*" in accepted and len(items) > 1:
        out.append(EXPORT_PUBLIC_MIXED.at(path, "cannot have both public (*) and non-public exportTo values"))
    if "~" in accepted and len(items) > 1:
        out.append(EXPORT_NONE_MIXED.at(path, "cannot export service entry to no one (~) and someone"))
    return out, accepted


def check_selector(selector: Any, key: str, path: DataPath) -> list[Finding]:
    """A set selector (`workloadSelector` not null); `key` is `labels` (SE) or `matchLabels` (DR)."""
    labels = as_map(as_map(selector).get(key))
    out: list[Finding] = []
    for raw_key, raw_value in labels.items():
        name, value = as_str(raw_key), as_str(raw_value)
        where = (*path, key, name)
        if name == "":
            out.append(SELECTOR_EMPTY_KEY.at(where, f"empty key is not supported in selector: {name}={value}"))
        if "*" in name or "*" in value:
            out.append(SELECTOR_WILDCARD.at(where, f"wildcard is not supported in selector: {name}={value}"))
    if not labels:
        out.append(SELECTOR_NO_LABELS.at(path, "workload selector specified without labels, "
                                               "will be applied to all workloads in the namespace"))
    return out


def scope_of(namespace: str, entries: Sequence[Any] | Any) -> Scope:
    """Namespaces that see the object: `.` own, `*` all, `~` none, names; empty list = all."""
    items = [as_str(e) for e in as_list(entries)]
    if not items or "*" in items:
        return None
    return frozenset(namespace if e == "." else e for e in items if e != "~")


def visible_in(scope: Scope, namespace: str) -> bool:
    return scope is None or namespace in scope


def scopes_overlap(a: Scope, b: Scope) -> bool:
    if a is None:
        return b is None or bool(b)
    if b is None:
        return bool(a)
    return not a.isdisjoint(b)
