"""Schema nodes that need per-value checks beyond JSON Schema: CEL rules and list keys.

Input:  a structural ``openAPIV3Schema`` (for ``build_sites``), then manifests (for ``check``).
Output: ``SiteNode`` trees holding only the branches of the schema that lead to a
        ``x-kubernetes-validations`` rule or an ``x-kubernetes-list-type`` of ``map``/``set``;
        ``check`` returns the findings for one manifest.

Invariants:
* Rules are compiled once at build time (``CelCompiler`` caches by source); a rule that cannot
  be compiled is kept as a failure and reported on every value it applies to.
* A rule runs for every non-null value at its node (null values are skipped, as the API server
  does); the value of ``self`` is projected to the fields the node's rules can observe.
* Rules that reference ``oldSelf`` are transition rules and do not run (there is no update),
  unless ``optionalOldSelf`` is set, in which case ``oldSelf`` is an empty optional.
* Rules at a node are skipped when JSON Schema reported a (non unknown-field) error at or
  below that node, like the API server, which does not run CEL on malformed values.
* Rule outcomes depend only on the projected value, so ``RuleMemo`` reuses them for equal
  values (fingerprinted with orjson; values that cannot be fingerprinted are not memoised).

Codes: S002 rule evaluated to false; S003 rule could not be compiled or evaluated (ERROR,
never a silent pass); S004 duplicate key in a ``list-type: map`` or duplicate item in a
``list-type: set``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from meshc.check.schema.cel import Bindings, CelCompiler, CelEvalError, CelProgram, CompileFailure
from meshc.check.schema.cel_ext import references_old_self, self_projection
from meshc.model.diagnostics import DataPath, Finding, Severity

RULE_FAILED = "S002"
RULE_BROKEN = "S003"
LIST_DUPLICATE = "S004"
_MEMO_LIMIT = 65536
_FINGERPRINT_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_FIELD_PATH_STEP = re.compile(
    r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]"
)


@dataclass(frozen=True)
class Rule:
    source: str
    message: str
    program: CelProgram | CompileFailure
    message_program: CelProgram | CompileFailure | None
    field_path: tuple[str, ...]
    transition: bool
    optional_old_self: bool


@dataclass
class SiteNode:
    rules: tuple[Rule, ...] = ()
    projection: frozenset[str] | None = None
    wants_old_self: bool = False
    list_type: str = ""
    list_keys: tuple[str, ...] = ()
    properties: dict[str, SiteNode] = field(default_factory=dict)
    items: SiteNode | None = None
    values: SiteNode | None = None

    def is_empty(self) -> bool:
        return not (self.rules or self.list_type or self.properties or self.items or self.values)


# --------------------------------------------------------------------------- building


def build_sites(schema: dict[str, Any], compiler: CelCompiler) -> SiteNode | None:
    """The pruned tree of checked nodes under ``schema``, or None when there is none."""
    node = SiteNode()
    _attach_rules(node, schema.get("x-kubernetes-validations") or [], compiler)
    list_type = schema.get("x-kubernetes-list-type", "")
    if list_type in ("map", "set"):
        node.list_type = list_type
        node.list_keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
    for name, sub in (schema.get("properties") or {}).items():
        child = build_sites(sub, compiler)
        if child is not None:
            node.properties[name] = child
    if isinstance(schema.get("items"), dict):
        node.items = build_sites(schema["items"], compiler)
    if isinstance(schema.get("additionalProperties"), dict):
        node.values = build_sites(schema["additionalProperties"], compiler)
    return None if node.is_empty() else node


def _attach_rules(node: SiteNode, specs: list[dict[str, Any]], compiler: CelCompiler) -> None:
    rules = tuple(_compile_rule(spec, compiler) for spec in specs)
    sources = [r.source for r in rules] + [
        str(spec.get("messageExpression")) for spec in specs if spec.get("messageExpression")
    ]
    projections = [self_projection(source) for source in sources]
    node.rules = rules
    parts = [p for p in projections if p is not None]
    node.projection = None if len(parts) < len(projections) else frozenset[str]().union(*parts)
    node.wants_old_self = any(r.optional_old_self for r in rules)


def _compile_rule(spec: dict[str, Any], compiler: CelCompiler) -> Rule:
    source = str(spec.get("rule", ""))
    message_expr = spec.get("messageExpression")
    return Rule(
        source=source,
        message=str(spec.get("message") or ""),
        program=compiler.compile(source) if source else CompileFailure(source, "empty rule"),
        message_program=compiler.compile(str(message_expr)) if message_expr else None,
        field_path=parse_field_path(str(spec.get("fieldPath") or "")),
        transition=references_old_self(source),
        optional_old_self=bool(spec.get("optionalOldSelf")),
    )


def parse_field_path(text: str) -> tuple[str, ...]:
    """``.a['b'].c`` -> ('a', 'b', 'c'); anything unparseable -> () (report at the node)."""
    steps: list[str] = []
    pos = 0
    while pos < len(text):
        match = _FIELD_PATH_STEP.match(text, pos)
        if match is None:
            return ()
        steps.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tuple(steps)


# --------------------------------------------------------------------------- checking


class RuleMemo:
    """Rule outcomes (findings with paths relative to the node) per (node, observed value)."""

    def __init__(self, limit: int = _MEMO_LIMIT) -> None:
        self._limit = limit
        self._store: dict[tuple[int, Hashable], tuple[Finding, ...]] = {}

    def outcome(self, node: SiteNode, value: Any) -> tuple[Finding, ...]:
        observed = _project(value, node.projection)
        key = _fingerprint(observed)
        if key is None:
            return tuple(_run_rules(node, observed))
        slot = (id(node), key)
        cached = self._store.get(slot)
        if cached is None:
            cached = tuple(_run_rules(node, observed))
            if len(self._store) >= self._limit:
                self._store.clear()
            self._store[slot] = cached
        return cached


def _fingerprint(value: Any) -> Hashable | None:
    if value is None or isinstance(value, (str, int, float)):
        return (type(value), value)
    try:
        return orjson.dumps(value, option=_FINGERPRINT_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return None


def check(root: SiteNode, manifest: Any, blocked: Collection[DataPath],
          memo: RuleMemo) -> list[Finding]:
    """Findings of all rules and list keys; ``blocked`` holds paths whose rules must not run."""
    findings: list[Finding] = []
    stack: list[tuple[SiteNode, Any, DataPath]] = [(root, manifest, ())]
    while stack:
        node, value, path = stack.pop()
        if value is None:  # null values are not validated by rules
            continue
        if node.list_type and isinstance(value, list):
            findings.extend(_list_duplicates(node, value, path))
        if node.rules and path not in blocked:
            findings.extend(
                Finding(f.code, f.severity, f.message, path + f.path, hint=f.hint)
                for f in memo.outcome(node, value)
            )
        _push_children(stack, node, value, path)
    return findings


def _push_children(stack: list[tuple[SiteNode, Any, DataPath]], node: SiteNode, value: Any,
                   path: DataPath) -> None:
    if isinstance(value, dict):
        properties = node.properties
        if properties:
            for name, item in value.items():
                child = properties.get(name)
                if child is not None:
                    stack.append((child, item, path + (name,)))
        if node.values is not None:
            stack.extend((node.values, item, path + (key,)) for key, item in value.items())
    elif isinstance(value, list) and node.items is not None:
        stack.extend((node.items, item, path + (i,)) for i, item in enumerate(value))


def _project(value: Any, fields: frozenset[str] | None) -> Any:
    if fields is None or not isinstance(value, dict):
        return value
    return {name: value[name] for name in fields if name in value}


def _run_rules(node: SiteNode, value: Any) -> Iterator[Finding]:
    """Findings of the node's rules for ``value``, with paths relative to the node."""
    bindings = Bindings(value, node.wants_old_self)
    for rule in node.rules:
        if rule.transition and not rule.optional_old_self:
            continue
        program = rule.program
        if isinstance(program, CompileFailure):
            yield _broken(rule, f"cannot be compiled: {program.reason}")
            continue
        try:
            result = program.run(bindings)
        except CelEvalError as exc:
            yield _broken(rule, f"could not be evaluated: {exc}")
            continue
        if result is False:
            yield Finding(RULE_FAILED, Severity.ERROR, _failure_message(rule, bindings),
                          rule.field_path)
        elif result is not True:
            yield _broken(rule, f"returned {type(result).__name__} {result!r}, not a bool")


def _broken(rule: Rule, reason: str) -> Finding:
    return Finding(RULE_BROKEN, Severity.ERROR, f"validation rule `{rule.source}` {reason}", (),
                   hint="the API server rejects an object when one of its rules errors")


def _failure_message(rule: Rule, bindings: Bindings) -> str:
    """messageExpression result when usable, else message, else 'failed rule: <rule>'."""
    program = rule.message_program
    if program is not None and not isinstance(program, CompileFailure):
        try:
            text = program.run(bindings)
        except CelEvalError:
            text = None
        if isinstance(text, str) and text.strip() and "\n" not in text and "\r" not in text:
            return text
    return rule.message or f"failed rule: {rule.source}"


def _list_duplicates(node: SiteNode, items: list[Any], path: DataPath) -> Iterator[Finding]:
    seen: dict[Hashable, int] = {}
    for index, item in enumerate(items):
        if node.list_type == "map":
            if not isinstance(item, dict):
                continue  # reported by the schema check
            identity: Any = tuple(item.get(key) for key in node.list_keys)
        else:
            identity = item
        token = _identity_token(identity)
        if token not in seen:
            seen[token] = index
            continue
        yield Finding(
            LIST_DUPLICATE, Severity.ERROR,
            f"duplicate entry {_describe_entry(node, identity)} (first at index {seen[token]})",
            path + (index,),
            hint="entries of this list must be unique"
            + (f" by {', '.join(node.list_keys)}" if node.list_keys else ""),
        )


def _identity_token(identity: Any) -> Hashable:
    """Hashable stand-in that keeps 1, 1.0 and True apart, as JSON values are."""
    return _show(identity)


def _describe_entry(node: SiteNode, identity: Any) -> str:
    if node.list_type == "map":
        return ", ".join(f"{k}={_show(v)}" for k, v in zip(node.list_keys, identity, strict=False))
    return _show(identity)


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_FINGERPRINT_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, default=repr, ensure_ascii=False)
