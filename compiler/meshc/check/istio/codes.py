"""Rule descriptors: one stable code per distinct check, with its severity, Istio code and fix.

Input: nothing (declarations only). Output: `Rule` values that the check modules turn into
`Finding`s with `Rule.at(path, message)`.
Invariants: a code is never reused for a second meaning; severity and Istio code are fixed per
rule, so a consumer may key suppressions and docs on the code alone. Every rule a module emits is
listed in that module's `RULES` tuple and in docs/checks.md (a test keeps the two in sync).
Codes emitted: none itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshc.model.diagnostics import DataPath, Finding, Severity

#: Istio analyzer code for errors returned by the Go validators (webhook rejects the object).
SCHEMA_ERROR = "IST0106"
#: Istio analyzer code for warnings returned by the Go validators (webhook admits, warns).
SCHEMA_WARNING = "IST0133"


@dataclass(frozen=True, slots=True)
class Rule:
    """A check's identity: code, severity, one-line meaning, the Istio source it mirrors, fix."""

    code: str
    severity: Severity
    title: str
    source: str
    hint: str
    istio_code: str = ""

    def at(self, path: DataPath, message: str, hint: str = "") -> Finding:
        return Finding(self.code, self.severity, message, tuple(path), self.istio_code, hint or self.hint)


def webhook_error(code: str, title: str, source: str, hint: str) -> Rule:
    """A rule whose violation istiod's validating webhook rejects (IST0106 in `istioctl analyze`)."""
    return Rule(code, Severity.ERROR, title, source, hint, SCHEMA_ERROR)


def webhook_warning(code: str, title: str, source: str, hint: str) -> Rule:
    """A rule the webhook admits with a warning (IST0133 in `istioctl analyze`)."""
    return Rule(code, Severity.WARNING, title, source, hint, SCHEMA_WARNING)
