"""Filters over a `ChangeSet`: the ignore file and masking. Each returns a new change set.

Ignore file (`.meshc-diffignore`, or meshc.yaml ``diff.ignoreFile``): a YAML list of rules with
optional keys env, kind, namespace, name, path (globs: ``*`` any run of characters, ``?`` one;
everything else literal, brackets included) and reason. A missing key matches anything. A rule
with a path suppresses the field changes whose path matches; a rule without one suppresses
whole objects (added, removed, renamed: by old or new name; modified: every field change).
Every suppressed change is recorded in `ChangeSet.ignored` with the rule (file:line).

Masking: a value is masked when a key on its path looks sensitive (its last word, after
splitting camelCase, snake_case, kebab-case and dots, is token, tokens, password, passwd, secret,
secrets, key or keys; or the whole key is privatekey or apikey)
or when a built-in rule (Secret data, stringData) or a meshc.yaml ``diff.mask`` rule matches (kind glob,
path glob over the printed path, matching the value or any ancestor). A masked value becomes
`Masked(length, digest)`: digest = first 8 hex digits of HMAC-SHA256(salt, value);
salt = $MESHC_DIFF_SALT or "meshc.diff/v1".
Masking covers added and removed bodies, field changes, renamed objects and risk messages; a
string anywhere in the change set that contains a masked value (an Envoy secret name made from a
masked credentialName) is masked too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from meshc.diff.maps import ServiceMap
from meshc.diff.model import (
    ChangeSet,
    EnvChanges,
    FieldChange,
    IgnoredChange,
    ItemKey,
    Masked,
    ObjectDiff,
    ObjectSnapshot,
    format_path,
)
from meshc.diff.model import Path as DataPath
from meshc.diff.sides import DiffError
from meshc.files.confine import read_regular
from meshc.files.globs import compile_glob
from meshc.files.source import locate, parse
from meshc.front.project import load_project
from meshc.model.diagnostics import Position
from meshc.model.ids import ObjectId

DEFAULT_IGNORE = ".meshc-diffignore"
DEFAULT_SALT = "meshc.diff/v1"
BUILTIN_MASKS = ({"kind": "Secret", "path": "data"}, {"kind": "Secret", "path": "stringData"})
_RULE_KEYS = ("env", "kind", "namespace", "name", "path", "reason")
_WORDS = {"token", "tokens", "password", "passwd", "secret", "secrets", "key", "keys", "privatekey", "apikey"}


def glob(pattern: str) -> Any:
    """A compiled glob (meshc.globs: linear time, brackets literal); DiffError when too long."""
    try:
        return compile_glob(pattern)
    except ValueError as exc:
        raise DiffError(f"glob {pattern[:40]!r}...: {exc}") from None


@dataclass(frozen=True)
class IgnoreRule:
    label: str
    match: Mapping[str, Any]  # compiled globs (meshc.globs)

    def object_hit(self, env: str, oid: ObjectId) -> bool:
        values = {"env": env, "kind": oid.kind, "namespace": oid.namespace, "name": oid.name}
        return all(p.fullmatch(values[k]) for k, p in self.match.items() if k != "path")

    def whole(self) -> bool:
        return "path" not in self.match

    def path_hit(self, path: str) -> bool:
        return "path" not in self.match or self.match["path"].fullmatch(path) is not None


def load_ignore(root: Path) -> tuple[IgnoreRule, ...]:
    project, _ = load_project(root)
    name = str((project.diff or {}).get("ignoreFile") or DEFAULT_IGNORE)
    path = root / name
    if not path.is_file():
        return ()
    try:
        data = read_regular(path)
    except OSError as exc:
        raise DiffError(f"{name}: cannot read the ignore file ({exc.strerror or exc})") from None
    docs, diags = parse(name, data)
    if diags:
        raise DiffError(f"{name}: not a valid ignore file", list(diags))
    if not docs or docs[0].value is None:
        return ()
    doc = docs[0]
    if not isinstance(doc.value, list):
        raise DiffError(f"{name}:1: expected a list of rules ({', '.join(_RULE_KEYS)})")
    return tuple(_rule(name, raw, locate(name, doc.node, (i,))[0] if doc.node is not None else None)
                 for i, raw in enumerate(doc.value))


def _rule(name: str, raw: Any, pos: Position | None) -> IgnoreRule:
    where = f"{name}:{pos.line}" if pos is not None else name
    if not isinstance(raw, dict) or not raw:
        raise DiffError(f"{where}: a rule is a mapping with keys {', '.join(_RULE_KEYS)}")
    unknown = sorted(set(raw) - set(_RULE_KEYS))
    if unknown or not all(isinstance(v, str) for v in raw.values()):
        raise DiffError(f"{where}: unknown key {unknown[0]!r}" if unknown else f"{where}: values must be strings")
    shown = " ".join(f"{k}={raw[k]}" for k in _RULE_KEYS if k in raw and k != "reason")
    label = f"{where} ({shown})" + (f" reason: {raw['reason']}" if raw.get("reason") else "")
    return IgnoreRule(label, {k: glob(v) for k, v in raw.items() if k != "reason"})


def apply_ignore(cs: ChangeSet, rules: Sequence[IgnoreRule]) -> ChangeSet:
    if not rules:
        return cs
    ignored = list(cs.ignored)
    envs = {name: _ignore_env(env, rules, ignored) for name, env in cs.envs.items()}
    return cs.with_envs(envs, ignored=tuple(ignored))


def _whole_rule(rules: Sequence[IgnoreRule], env: str, *ids: ObjectId) -> IgnoreRule | None:
    return next((r for r in rules if r.whole() and any(r.object_hit(env, i) for i in ids)), None)


def _ignore_env(env: EnvChanges, rules: Sequence[IgnoreRule], ignored: list[IgnoredChange]) -> EnvChanges:
    def keep_snap(what: str, snap: ObjectSnapshot) -> bool:
        rule = _whole_rule(rules, env.env, snap.id)
        if rule is not None:
            ignored.append(IgnoredChange(env.env, snap.id, what, "", rule.label))
        return rule is None

    def filter_diff(what: str, diff: ObjectDiff) -> ObjectDiff | None:
        ids = (diff.id, diff.old) if diff.old else (diff.id,)
        whole = _whole_rule(rules, env.env, *ids) if what == "renamed" else None
        if whole is not None:
            ignored.append(IgnoredChange(env.env, diff.id, what, "", whole.label))
            return None
        kept = []
        for change in diff.changes:
            rule = next((r for r in rules if any(r.object_hit(env.env, i) for i in ids)
                         and r.path_hit(change.where)), None)
            if rule is None:
                kept.append(change)
            else:
                ignored.append(IgnoredChange(env.env, diff.id, change.kind, change.where, rule.label))
        if not kept and what == "modified":
            return None
        return replace(diff, changes=tuple(kept))

    modified = [d for d in (filter_diff("modified", d) for d in env.modified) if d is not None]
    renamed = [d for d in (filter_diff("renamed", d) for d in env.renamed) if d is not None]
    return replace(env, added=tuple(s for s in env.added if keep_snap("added", s)),
                   removed=tuple(s for s in env.removed if keep_snap("removed", s)),
                   modified=tuple(modified), renamed=tuple(renamed))


def sensitive_key(key: str) -> bool:
    """True when the last word of `key` (camelCase, snake_case, kebab-case, dotted) is sensitive,
    or the whole key is: privateKey, api-key, client_secret, token, session_ticket_keys; not
    sds_secret_config or secretName (references to a secret, not its value)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    whole = re.sub(r"[^a-z0-9]", "", key.lower())
    return bool(words) and (words[-1] in _WORDS or whole in _WORDS)


class Masker:
    """Masks sensitive values; remembers the masked strings to scrub them from free text."""

    def __init__(self, rules: Sequence[Mapping[str, Any]], salt: str) -> None:
        rules = [*BUILTIN_MASKS, *rules]
        self.rules = [(glob(str(r.get("kind", "*"))), glob(str(r["path"]))) for r in rules]
        self.key = (salt or DEFAULT_SALT).encode()
        self.secrets: set[str] = set()
        self._seen: dict[str, bool] = {}
        self._rule_seen: dict[tuple[str, DataPath], bool] = {}
        self._by_kind: dict[str, list[Any]] = {}

    def _key_hit(self, seg: object) -> bool:
        if not isinstance(seg, str) or isinstance(seg, ItemKey):
            return False
        hit = self._seen.get(seg)
        if hit is None:
            hit = self._seen[seg] = sensitive_key(seg)
        return hit

    def _rule_hit(self, kind: str, path: DataPath) -> bool:
        patterns = self._by_kind.get(kind)
        if patterns is None:
            patterns = self._by_kind[kind] = [p for k, p in self.rules if k.fullmatch(kind)]
        if not patterns:
            return False
        hit = self._rule_seen.get((kind, path))
        if hit is None:
            text = format_path(path)
            hit = self._rule_seen[(kind, path)] = any(p.fullmatch(text) for p in patterns)
        return hit

    def hit_any(self, kind: str, path: DataPath) -> bool:
        return any(self._key_hit(s) for s in path) or any(
            self._rule_hit(kind, path[:i]) for i in range(1, len(path) + 1))

    def masked(self, value: Any) -> Masked:
        text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        if len(text) >= 4:
            self.secrets.add(text)
        self.secrets.update(leaf for leaf in _strings(value) if len(leaf) >= 4)  # a masked list's items too
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:8]
        return Masked(len(text), digest)

    def value(self, kind: str, path: DataPath, value: Any, checked: bool = False) -> Any:
        if (self.hit_any(kind, path) if not checked else
                (path and (self._key_hit(path[-1]) or self._rule_hit(kind, path)))):
            return value if value is None else self.masked(value)
        if isinstance(value, dict):
            return {k: self.value(kind, path + (k,), v, True) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(kind, path + (i,), v, True) for i, v in enumerate(value)]
        return value

    def body(self, kind: str, body: Mapping[str, Any]) -> Any:
        return self.value(kind, (), body)

    def change(self, kind: str, c: FieldChange) -> FieldChange:
        return replace(c, before=self.value(kind, c.path, c.before), after=self.value(kind, c.path, c.after))

    def leaks(self, value: Any) -> Any:
        """`value` with every string that contains a masked value masked too: a secret's name
        masked in a DestinationRule must not show in the Envoy cluster made from it."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.masked(value) if any(secret in value for secret in self.secrets) else value
        if isinstance(value, dict):
            return {k: self.leaks(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.leaks(v) for v in value]
        return value

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "<masked>")
        return text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _mask_map(m: Masker, value: ServiceMap | None) -> ServiceMap | None:
    """A service map with every text that holds a masked value masked (the maps are drawn in the
    comment from the unmasked bodies)."""
    if value is None:
        return None

    def text(x: str) -> str:
        found = m.leaks(x)
        return str(found) if isinstance(found, Masked) else x

    def texts(xs: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(texts(x) if isinstance(x, tuple) else text(x) for x in xs)

    return replace(value, name=text(value.name), namespace=text(value.namespace), hosts=texts(value.hosts),
                   ports=texts(value.ports), endpoints=texts(value.endpoints), tls=texts(value.tls),
                   callers=text(value.callers))


def mask_changeset(cs: ChangeSet, rules: Sequence[Mapping[str, Any]], salt: str) -> ChangeSet:
    """Masked bodies and field changes; the normalised bodies kept for risk detection are
    dropped, so nothing unmasked is left for a renderer to print."""
    m = Masker(rules, salt)

    def snap(s: ObjectSnapshot) -> ObjectSnapshot:
        return replace(s, body=m.body(s.id.kind, s.body), norm={})

    def diff(d: ObjectDiff) -> ObjectDiff:
        return replace(d, changes=tuple(m.change(d.id.kind, c) for c in d.changes), before={}, after={})

    envs = {name: replace(e, added=tuple(map(snap, e.added)), removed=tuple(map(snap, e.removed)),
                          modified=tuple(map(diff, e.modified)), renamed=tuple(map(diff, e.renamed)))
            for name, e in cs.envs.items()}
    if m.secrets:  # second pass: values derived from a masked one (it is known only now)
        def snap2(s: ObjectSnapshot) -> ObjectSnapshot:
            return replace(s, body=m.leaks(s.body), refs=tuple(r for r in s.refs if m.leaks(r) == r))

        def diff2(d: ObjectDiff) -> ObjectDiff:
            return replace(d, changes=tuple(replace(c, before=m.leaks(c.before), after=m.leaks(c.after))
                                            for c in d.changes), refs=tuple(r for r in d.refs if m.leaks(r) == r))

        envs = {name: replace(e, added=tuple(map(snap2, e.added)), removed=tuple(map(snap2, e.removed)),
                              modified=tuple(map(diff2, e.modified)), renamed=tuple(map(diff2, e.renamed)),
                              maps={s: (_mask_map(m, b), _mask_map(m, a)) for s, (b, a) in e.maps.items()})
                for name, e in envs.items()}
    risks = tuple(replace(r, message=m.scrub(r.message)) for r in cs.risks)
    return cs.with_envs(envs, risks=risks, notes=tuple(m.scrub(n) for n in cs.notes))
