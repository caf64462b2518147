"""The review by cause: a `ChangeSet` regrouped by the declaration change that produced it.

Input: a masked `ChangeSet` (risk flags already computed). Output: `Cause`s, most severe first.
A cause is one service's change, the same in every environment it lands in: its Istio objects'
changes are compared across environments by kind, name and field changes (namespaces aside), so
a base change that lands in three environments is one cause listing the three. Each cause says
what changed in words (`summary`), where it was declared (`where`: the declaration file:line of
its objects; the head side's, the base side's for what was removed), and its consequences:
the Istio objects (field-level diffs), the Envoy configuration (one line per environment and
file: clusters added, removed, changed) and the iptables rules (one line per VM workload, the
allow-list or capture change in words). Derived changes (Envoy, iptables) are attributed to the
cause whose hosts or addresses they name; the rest form the cause "derived only" (e.g. an
env.yaml setting). Invariants: every changed object of the change set is in exactly one cause;
the order is deterministic; nothing is recomputed from rendered text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshc.diff.declared import ENV_KEY
from meshc.diff.maps import items, spec_of
from meshc.diff.model import ChangeSet, ItemKey, ObjectDiff, ObjectSnapshot, RiskFlag, format_path
from meshc.diff.risk import ORDER

Item = ObjectSnapshot | ObjectDiff
ISTIO_KINDS = ("ServiceEntry", "WorkloadEntry", "DestinationRule")
DERIVED = "(derived only)"
KEPT = "(kept) "  # a cause named after a pass-through file
DERIVED_KINDS = ("EnvoyCluster", "EnvoyListener", "IptablesChain")
_IP = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/\d+)?(?![\d.])")


@dataclass(frozen=True)
class Cause:
    service: str  # the service, or DERIVED
    envs: tuple[str, ...]  # production first
    summary: tuple[str, ...]  # what the declaration change does, in words
    where: tuple[str, ...]  # declaration positions (file:line:col)
    objects: tuple[tuple[str, str, Item], ...]  # (env, what, item): Istio objects
    proxy: tuple[str, ...]  # one line per environment and Envoy file
    iptables: tuple[str, ...]  # one line per VM workload
    derived: tuple[tuple[str, str, Item], ...] = ()  # (env, what, item): Envoy / iptables objects
    risks: tuple[RiskFlag, ...] = ()

    @property
    def rank(self) -> int:
        return min((ORDER.index(r.code) for r in self.risks if r.code in ORDER), default=len(ORDER))

    def flags(self) -> list[tuple[str, str, int]]:
        """The cause's risk flags, one per code (most severe first): (code, first message, count)."""
        seen: dict[str, list[RiskFlag]] = {}
        for flag in sorted(self.risks, key=lambda r: (ORDER.index(r.code) if r.code in ORDER else len(ORDER),
                                                      r.env, r.object)):
            seen.setdefault(flag.code, []).append(flag)
        return [(code, flags[0].message, len(flags)) for code, flags in seen.items()]

    @property
    def title(self) -> str:
        if self.service == DERIVED:
            return f"derived configuration ({', '.join(self.envs)})"
        if self.service.startswith(ENV_KEY):
            return f"env.yaml of {self.service.removeprefix(ENV_KEY)}"
        if self.service.startswith(KEPT):
            return f"kept verbatim in {self.service.removeprefix(KEPT)} ({', '.join(self.envs)})"
        return f"{self.service} ({', '.join(self.envs)})"


@dataclass
class _Acc:
    service: str
    envs: list[str] = field(default_factory=list)
    objects: list[tuple[str, str, Item]] = field(default_factory=list)
    derived: list[tuple[str, str, Item]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)


def _label(item: Item) -> str:
    return f"{item.old} -> {item.id}" if isinstance(item, ObjectDiff) and item.old else str(item.id)


def _signature(what: str, item: Item) -> tuple[Any, ...]:
    """What makes two environments' changes of one object the same change (namespaces aside)."""
    if isinstance(item, ObjectSnapshot):
        return (item.id.kind, item.id.name, what)
    changes = tuple((format_path(c.path), c.kind, repr(c.before), repr(c.after)) for c in item.changes
                    if c.path[:2] != ("metadata", "namespace"))
    return (item.id.kind, item.id.name, what, item.old.name if item.old else "", changes)


def _body(item: Item) -> Mapping[str, Any]:
    if isinstance(item, ObjectSnapshot):
        return item.body
    return item.after or item.before


def _names(item: Item) -> tuple[set[str], set[str]]:
    """Hosts and IP addresses an Istio object names (on either side)."""
    ips = {r for r in item.refs if _IP.fullmatch(r)}
    return set(item.refs) - ips, ips


def _kept_file(item: Item) -> str:
    """The pass-through file an object of no service was read from ("" for any other object)."""
    if getattr(item, "service", "") or item.id.kind in DERIVED_KINDS:
        return ""
    source = str(getattr(item, "source", "") or getattr(item, "base_source", "") or "")
    file = source.split(":", 1)[0].removeprefix("./")
    return file if "/passthrough/" in file else ""


def _service_of(item: Item) -> str:
    service = getattr(item, "service", "")
    return str(service or item.id.name)


_LAST: list[tuple[ChangeSet, tuple[Cause, ...]]] = []


def group_causes(cs: ChangeSet) -> tuple[Cause, ...]:
    """The causes of a change set (computed once per change set: each renderer asks)."""
    if _LAST and _LAST[0][0] is cs:
        return _LAST[0][1]
    causes = _group(cs)
    _LAST[:] = [(cs, causes)]
    return causes


def _group(cs: ChangeSet) -> tuple[Cause, ...]:
    accs: dict[tuple[Any, ...], _Acc] = {}
    per_env: dict[str, dict[str, tuple[Any, ...]]] = {}  # env -> service -> its cause key there
    leftovers: list[tuple[str, str, Item]] = []
    for env_name, env in cs.envs.items():
        sigs: dict[str, list[tuple[Any, ...]]] = {}
        istio: dict[str, list[tuple[str, Item]]] = {}
        for what, item in env.objects():
            kept = _kept_file(item)
            if kept:  # kept verbatim (front.passthrough): its file is its cause
                acc = accs.setdefault((KEPT + kept,), _Acc(KEPT + kept))
                if env_name not in acc.envs:
                    acc.envs.append(env_name)
                acc.objects.append((env_name, what, item))
                continue
            if item.id.kind in ISTIO_KINDS:
                service = _service_of(item)
                istio.setdefault(service, []).append((what, item))
                sigs.setdefault(service, []).append(_signature(what, item))
            else:
                leftovers.append((env_name, what, item))
        for service, found in istio.items():
            key = (service, tuple(sorted(sigs[service], key=repr)))
            acc = accs.setdefault(key, _Acc(service))
            acc.envs.append(env_name)
            for what, item in found:
                acc.objects.append((env_name, what, item))
                hosts, addresses = _names(item)
                acc.hosts |= hosts
                acc.addresses |= addresses
            for side in env.maps.get(service, (None, None)):  # the service's own hosts and endpoints
                if side is not None:
                    acc.hosts |= set(side.hosts)
                    acc.addresses |= {address for address, _, _ in side.endpoints}
            per_env.setdefault(env_name, {})[service] = key
    for env_name in cs.envs:  # a changed env.yaml is a cause of its own
        if ENV_KEY + env_name in cs.declared:
            accs[(ENV_KEY + env_name,)] = _Acc(ENV_KEY + env_name, envs=[env_name])
    derived_acc = _Acc(DERIVED)
    index = {env_name: _Index(services, accs) for env_name, services in per_env.items()}
    owners = [index[env_name].owner(item) if env_name in index else None for env_name, _, item in leftovers]
    for i, (_, _, item) in enumerate(leftovers):  # an Envoy cluster a kept DestinationRule shapes
        source = str(getattr(item, "source", "") or "").split(":", 1)[0].removeprefix("./")
        if owners[i] is None and "/passthrough/" in source and (KEPT + source,) in accs:
            owners[i] = (KEPT + source,)
    by_file: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    for (env_name, _, item), owner in zip(leftovers, owners, strict=True):
        if owner is not None:
            by_file.setdefault((env_name, item.id.namespace), set()).add(owner)
    for (env_name, what, item), owner in zip(leftovers, owners, strict=True):
        if isinstance(item, ObjectDiff) and item.id.kind == "IptablesChain" and env_name in index:
            shared = index[env_name].rule_owners(item)
            if len(shared) > 1:  # rules of several causes changed in one chain: each cause gets its own
                for key in shared:
                    accs[key].derived.append((env_name, what, item))
                continue
        if owner is None:  # nothing of its own names a cause: its environment's env.yaml change,
            # else the one cause changing its file, else the one cause of its environment
            same_file = by_file.get((env_name, item.id.namespace), set())
            in_env = set(per_env.get(env_name, {}).values())
            settings: tuple[Any, ...] = (ENV_KEY + env_name,)
            owner = (settings if settings in accs else next(iter(same_file)) if len(same_file) == 1
                     else next(iter(in_env)) if len(in_env) == 1 else None)
        target = accs[owner] if owner is not None else derived_acc
        target.derived.append((env_name, what, item))
        if owner is None and env_name not in target.envs:
            target.envs.append(env_name)
    production = {name for name, env in cs.envs.items() if env.production}
    causes = [_cause(acc, cs.risks, production, cs.declared) for acc in accs.values()]
    if derived_acc.derived:
        causes.append(_cause(derived_acc, cs.risks, production, cs.declared))
    return tuple(sorted(causes, key=lambda c: (c.rank, c.service == DERIVED, not (set(c.envs) & production),
                                               c.service, c.envs)))


def _text(item: Item) -> str:
    """The changed values of a derived object, as text to look for hosts and addresses in."""
    if isinstance(item, ObjectSnapshot):
        return repr(item.body)
    return repr([(c.before, c.after) for c in item.changes])


_HOST = re.compile(r"[A-Za-z0-9*_-]+(?:\.[A-Za-z0-9_-]+)+")


class _Index:
    """One environment's causes by the hosts and addresses they name (exact matches)."""

    def __init__(self, services: Mapping[str, tuple[Any, ...]], accs: Mapping[tuple[Any, ...], _Acc]) -> None:
        self.services = services
        self.hosts: dict[str, tuple[Any, ...]] = {}
        self.addresses: dict[str, tuple[Any, ...]] = {}
        for _, key in sorted(services.items()):
            for host in sorted(accs[key].hosts):
                self.hosts.setdefault(host, key)
            for address in sorted(accs[key].addresses):
                self.addresses.setdefault(address, key)

    def rule_owners(self, item: Item) -> list[tuple[Any, ...]]:
        """The causes an iptables chain change names through its rules' addresses, in order."""
        out: list[tuple[Any, ...]] = []
        for rule in _rule_texts(item):
            for match in _IP.finditer(rule):
                found = self.addresses.get(match.group(1))
                if found is not None and found not in out:
                    out.append(found)
        return out

    def owner(self, item: Item) -> tuple[Any, ...] | None:
        """The cause a derived object belongs to: an Envoy cluster by its host, a VM's rules file
        added or removed whole by the service it is named after, else the first address or host
        in what changed that a cause names."""
        if item.id.kind == "EnvoyCluster":
            found = self.hosts.get(item.id.name.split("|")[-1])
            if found is not None:
                return found
        if item.id.kind == "IptablesChain" and isinstance(item, ObjectSnapshot):
            parts = item.id.namespace.removeprefix("iptables/").removesuffix(".rules").split("-")
            for cut in range(len(parts) - 1, 0, -1):  # iptables/<service>-<endpoint>.rules, longest first
                found = self.services.get("-".join(parts[:cut]))
                if found is not None:
                    return found
        text = " ".join(_rule_texts(item)) if item.id.kind == "IptablesChain" else _text(item)
        for match in _IP.finditer(text):
            found = self.addresses.get(match.group(1))
            if found is not None:
                return found
        for match in _HOST.finditer(text):
            found = self.hosts.get(match.group(0))
            if found is not None:
                return found
        return None


def _rule_changes(item: Item) -> tuple[list[str], list[str]]:
    """(rules added, rules removed) of an iptables chain, from its field changes."""
    if isinstance(item, ObjectSnapshot):  # a chain added or removed whole: all its rules (the caller
        return [str(r) for r in items(item.body.get("rules"))], []  # knows which of the two it was)
    plus: list[str] = []
    minus: list[str] = []
    for change in item.changes:
        if change.path[:1] != ("rules",):
            continue
        if change.kind != "removed":
            plus.extend(str(r) for r in (items(change.after) if len(change.path) == 1 else [change.after]))
        if change.kind != "added":
            minus.extend(str(r) for r in (items(change.before) if len(change.path) == 1 else [change.before]))
    plus_set, minus_set = set(plus), set(minus)
    return [r for r in plus if r not in minus_set], [r for r in minus if r not in plus_set]


def _rule_texts(item: Item) -> list[str]:
    plus, minus = _rule_changes(item)
    return plus + minus


def _cause(acc: _Acc, risks: Iterable[RiskFlag], production: set[str],
           declared: Mapping[str, tuple[str, ...]]) -> Cause:
    envs = tuple(sorted(set(acc.envs), key=lambda e: (e not in production, e)))
    labels = {(env, _label(item)) for env, _, item in [*acc.objects, *acc.derived]}
    mine = tuple(r for r in risks if (r.env, r.object) in labels)
    if acc.service.startswith(ENV_KEY):
        summary: tuple[str, ...] = (f"changes the settings of environment {acc.service.removeprefix(ENV_KEY)} "
                                    "(env.yaml)",)
    else:
        summary = _summary(acc.objects) if acc.objects else ("changes derived configuration only "
                                                              "(an env.yaml setting or the proxy layout)",)
    where = list(declared.get(acc.service, ())) or sorted({item.source for _, _, item in acc.objects
                                                           if item.source})
    return Cause(acc.service, envs, summary, tuple(where), tuple(acc.objects), _proxy_lines(acc.derived),
                 _iptables_lines(acc.derived, acc.addresses), tuple(acc.derived), mine)


def _summary(objects: list[tuple[str, str, Item]]) -> tuple[str, ...]:
    """What the change does, from the first environment's Istio objects (the same in each)."""
    first = objects[0][0]
    out: list[str] = []
    for env, what, item in objects:
        if env != first:
            continue
        kind, name = item.id.kind, item.id.name
        if what == "added":
            out.append(_added(kind, name, item))
        elif what == "removed":
            out.append(f"removes {kind} {name}")
        elif what == "renamed" and isinstance(item, ObjectDiff) and item.old is not None:
            out.append(f"renames {kind} {item.old.name} to {name}")
        if isinstance(item, ObjectDiff):
            out.extend(_field_words(kind, name, item))
    return tuple(dict.fromkeys(out))


def _added(kind: str, name: str, item: Item) -> str:
    spec = spec_of(_body(item))
    if kind == "ServiceEntry":
        where = "external" if spec.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL" else "internal"
        return f"adds {where} service {name}: {', '.join(str(h) for h in items(spec.get('hosts')))}"
    if kind == "WorkloadEntry":
        return f"adds workload {name} ({spec.get('address', '?')})"
    return f"adds {kind} {name}"


def _field_words(kind: str, name: str, item: ObjectDiff) -> list[str]:
    out: list[str] = []
    for change in item.changes:
        path = change.path
        key = path[-1] if path else ""
        if isinstance(key, ItemKey) and str(key).startswith("address="):
            verb = {"added": "adds", "removed": "removes"}.get(change.kind, "changes")
            out.append(f"{verb} endpoint {str(key).removeprefix('address=')} of {name}")
        elif path[-2:-1] == ("hosts",) or (isinstance(key, ItemKey) and path[-2:-1] == ("hosts",)):
            out.append(f"{'adds' if change.kind == 'added' else 'removes'} host {change.after or change.before}")
        elif kind == "WorkloadEntry" and path == ("spec", "address"):
            out.append(f"moves workload {name} from {change.before} to {change.after}")
        elif change.kind == "changed":
            out.append(f"changes {kind} {name} {format_path(path)}: {change.before} -> {change.after}")
        else:
            out.append(f"{'sets' if change.kind == 'added' else 'removes'} {kind} {name} {format_path(path)}")
    return out


def _proxy_lines(derived: list[tuple[str, str, Item]]) -> tuple[str, ...]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for env, what, item in derived:
        if item.id.kind in ("EnvoyCluster", "EnvoyListener"):
            kind = "cluster" if item.id.kind == "EnvoyCluster" else "listener"
            bucket = counts.setdefault((env, item.id.namespace), {})
            word = {"added": "added", "removed": "removed"}.get(what, "changed")
            bucket[f"{kind}s {word}"] = bucket.get(f"{kind}s {word}", 0) + 1
    same: dict[tuple[str, str], list[str]] = {}
    for (env, file), c in sorted(counts.items()):
        same.setdefault((env, ", ".join(f"{n} {k}" for k, n in sorted(c.items()))), []).append(file)
    return tuple(f"{env}: {_files(files)}: {words}" for (env, words), files in same.items())


def _files(files: list[str]) -> str:
    names = [f.removeprefix("envoy/") for f in files]
    if len(names) == 1:
        return names[0]
    views = [n for n in names if n.startswith("views/")]
    rest = [n for n in names if not n.startswith("views/")]
    return ", ".join(rest + ([f"{len(views)} workload views"] if views else [])) + " (each)"


def _iptables_lines(derived: list[tuple[str, str, Item]], addresses: set[str]) -> tuple[str, ...]:
    """One line per group of workloads with the same change; of a chain whose rules belong to
    several causes, only the rules naming this cause's addresses (or none)."""
    lines: dict[tuple[str, str], list[str]] = {}
    whole: dict[tuple[str, str], set[str]] = {}
    for env, what, item in derived:
        if item.id.kind != "IptablesChain":
            continue
        workload = item.id.namespace.removeprefix("iptables/").removesuffix(".rules")
        words = lines.setdefault((env, workload), [])
        words.extend(_chain_words(what, item, addresses))
        whole.setdefault((env, workload), set()).add(what)
    for key, kinds in whole.items():  # every chain of the file added or removed: say it once
        if kinds == {"removed"}:
            lines[key] = ["all its capture rules removed (no longer a mesh VM here)"]
        elif kinds == {"added"}:
            lines[key] = ["capture rules installed (a new mesh VM)"]
    same: dict[tuple[str, str], list[str]] = {}
    for (env, workload), words in sorted(lines.items()):
        same.setdefault((env, "; ".join(dict.fromkeys(words))), []).append(workload)
    return tuple(f"{env}: {_workloads(workloads)}: {words}" for (env, words), workloads in same.items())


def _workloads(names: list[str]) -> str:
    if len(names) == 1:
        return f"workload {names[0]}"
    shown = ", ".join(names[:4]) + (f", and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{len(names)} workloads ({shown})"


def _mine(rule: str, addresses: set[str]) -> bool:
    named = {m.group(1) for m in _IP.finditer(rule)}
    return not named or bool(named & addresses)


def _chain_words(what: str, item: Item, addresses: set[str] | None = None) -> list[str]:
    chain = item.id.name.split("/")[-1]
    if what in ("added", "removed"):
        verb = "starts" if what == "added" else "stops"
        return [f"{verb} {'the egress allow-list' if chain == 'MESHC_EGRESS' else 'capture chain ' + chain}"]
    plus, minus = _rule_changes(item)
    if addresses is not None and any(not _mine(r, addresses) for r in plus + minus):
        plus = [r for r in plus if _mine(r, addresses)]
        minus = [r for r in minus if _mine(r, addresses)]
    out = [_rule_words(rule, "allows" if chain == "MESHC_EGRESS" else "adds") for rule in plus]
    out += [_rule_words(rule, "no longer allows" if chain == "MESHC_EGRESS" else "drops") for rule in minus]
    return out or [f"reorders {chain}"]


def _rule_words(rule: str, verb: str) -> str:
    dst = re.search(r"--ctorigdst (\S+) --ctorigdstport (\d+)", rule) or re.search(r"-d (\S+) .*--dport (\d+)", rule)
    if dst:
        return f"{verb} {dst.group(1).removesuffix('/32')}:{dst.group(2)}"
    if "REDIRECT" in rule:
        return f"{'captures' if verb in ('adds', 'allows') else 'stops capturing'}: {rule.split(' ', 2)[-1]}"
    return f"{verb} rule {rule.split(' ', 2)[-1]}"
