"""The envoy layer's fast path: clusters and listeners of an already checked *shape* are checked
leaf by leaf instead of by the strict proto parse and the PGV checker of the whole message.

Input: one item of a bootstrap (a cluster or listener as JSON data, its message class, its path)
and the reference check (`validate.py`: ``json_format.ParseDict``, then the PGV rules). Output:
the item's findings, always exactly the reference check's: an item is answered here only when it
is clean; everything else, any doubt included, goes through the reference path.

**Shape** is everything of an item but its leaf values (strings and numbers): the keys of every
object in their order (fields, map keys, Struct keys), the nesting, list lengths, the ``@type``
of every Any, booleans and nulls. Items of one shape parse into the same message structure: the
same fields present, the same oneof members, the same Any types, the same numbers of repeated
items and map entries.

**Nodes.** What ParseDict and PGV check of a message is the conjunction of what they check of each
of its messages on its own (its *nodes*: every message that is not a well-known type, an Any's
content included): ParseDict parses each sub-message on its own and fails when one fails; PGV
runs each message's own rules (its fields' rules, required oneofs and fields, item counts, map
keys, Any types: none of them reads inside a sub-message) and descends into sub-messages and,
here, into every Any. A node's own checks depend on its *node shape* (its shape with its
sub-messages cut off: a sub-message's JSON replaced by ``{}``, an Any's by its ``@type``) and on
its leaf values, one field at a time (or one repeated or map field at a time: ``unique``,
``items``, ``values``).

**How.** The first item of a shape is walked with its descriptors (`_Builder`): its *plan* (for
each leaf, or each repeated or map field of leaves, the check the reference path makes of it) and
its nodes. Each node shape not seen before is checked once with the reference's own code:
ParseDict of the cut node, then the PGV package's checker of its type without the descent into
sub-messages (`pgv.own_rules`); when every node holds, the shape keeps its plan. An item of a
shape with a plan is clean when every leaf passes its check, which is again the reference's own
code on a message holding only that field: the converter of ``json_format``'s parser
(``_ConvertAndSetScalar``; ``ConvertMessage`` for Duration, Timestamp, wrappers, FieldMask and
Value; ``_ConvertFieldValuePair`` for repeated and map fields), then the PGV package's check of
that field (`pgv.field_rules`: the text its template writes for the field into the checker of
its message). Each leaf check remembers its answer per value (timeouts, ports, enum names repeat
across clusters). A failing leaf, a node that does not hold, and anything the walk does not model
(an extension, a ``@type`` key in a map, an Any in an Any, data nested deeper than `_DEPTH`, ...)
send the item through the reference path, so every finding's message and path are the
reference's.

The fast path is stricter than the reference path, never laxer: it checks every node's rules,
also where PGV does not look (a sub-message under a ``skip`` rule, a type whose checker failed to
compile, a message whose checker raised: the reference path then reports nothing for it); such
items simply take the reference path.

Invariants: a clean answer without the reference path only when the reference path would give
none; the data is not mutated; plans, node shapes and answers live for the process (like the PGV
package's compiled checkers), bounded by `MAX_PLANS`, `MAX_NODES` and `MAX_ANSWERS`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from meshc.check.envoy.pgv import FieldCheck, field_rules, own_rules, patched

_JSON: Any = json_format  # its parser's internals: the converters ParseDict itself runs
Descriptor = Any  # google.protobuf.descriptor.Descriptor or upb's (the stubs tell them apart)
Path = tuple[Any, ...]
Found = list[tuple[Path, Any]]
Reference = Callable[[Path, Any, "type[Message]"], Found]

MAX_PLANS = 20_000  # distinct item shapes remembered per process
MAX_NODES = 100_000  # distinct node shapes remembered per process
MAX_ANSWERS = 1 << 16  # answers one leaf check remembers before it starts again
# Deeper data goes through the reference path: ParseDict refuses more than 100 nested messages, and
# one level of JSON is at most two (a Struct and its Value), so the nodes never meet that limit.
_DEPTH = 45
_END = Ellipsis  # closes an object or a list in a shape (keys are strings, leaves are types)
_SCALAR_JSON = frozenset({"google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
                          "google.protobuf.Value"})
_STRUCT, _LIST, _VALUE, _ANY = ("google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value",
                                "google.protobuf.Any")


@dataclass
class Counts:
    """How items were answered in this process (for tests and the micro-bench)."""

    fast: int = 0  # clean from the plan of their shape
    reference: int = 0  # through the reference path
    plans: int = 0  # item shapes given a plan
    nodes: int = 0  # node shapes checked

    def reset(self) -> None:
        self.fast = self.reference = self.plans = self.nodes = 0


COUNTS = Counts()


class _Bail(Exception):
    """The data is not plain JSON this module models: the item takes the reference path."""


def shape(data: Any) -> tuple[tuple[Any, ...], list[Any]] | None:
    """The item's shape (hashable) and its leaf values in document order; None when the data holds
    anything but JSON values (dict, list, str, int, finite float, bool, None) with string keys."""
    tokens: list[Any] = []
    leaves: list[Any] = []
    try:
        _walk(data, tokens.append, leaves.append, 0)
    except (_Bail, RecursionError):
        return None
    return tuple(tokens), leaves


def _walk(value: Any, token: Callable[[Any], None], leaf: Callable[[Any], None], depth: int) -> None:
    """Shape tokens: `dict` / `list` opens, `_END` closes; keys; `str`, `int`, `float` stand for a
    leaf; booleans and None for themselves; an ``@type`` string for itself."""
    kind = type(value)
    if depth > _DEPTH:
        raise _Bail
    if kind is dict:
        token(dict)
        for key, item in value.items():
            if type(key) is not str:
                raise _Bail
            token(key)
            sub = type(item)
            if sub is str:
                if key == "@type":
                    token(item)
                else:
                    token(str)
                    leaf(item)
            elif sub is int:
                token(int)
                leaf(item)
            elif sub is dict or sub is list:
                _walk(item, token, leaf, depth + 1)
            elif sub is bool or item is None:
                token(item)
            elif sub is float and item - item == 0.0:  # finite: orjson writes NaN and infinities as null
                token(float)
                leaf(item)
            else:
                raise _Bail
        token(_END)
    elif kind is list:
        token(list)
        for item in value:
            sub = type(item)
            if sub is str:
                token(str)
                leaf(item)
            elif sub is int:
                token(int)
                leaf(item)
            elif sub is dict or sub is list:
                _walk(item, token, leaf, depth + 1)
            elif sub is bool or item is None:
                token(item)
            elif sub is float and item - item == 0.0:
                token(float)
                leaf(item)
            else:
                raise _Bail
        token(_END)
    else:
        raise _Bail  # an item is an object


def _is_leaf(value: Any) -> bool:
    kind = type(value)
    return kind is str or kind is int or kind is float


# --- leaf checks: the reference path's own code, on a message holding one field -----------------

_PARSER: Any = None


def _parser() -> Any:
    """json_format's parser as ParseDict makes it (strict: unknown enum names are errors)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = _JSON._Parser(False, None, 100)  # the very converter ParseDict runs
    _PARSER.recursion_depth = 0  # not unwound after an error
    return _PARSER


class _Check:
    """One leaf check, with its answers per value."""

    __slots__ = ("answers",)

    def __init__(self) -> None:
        self.answers: dict[Any, bool] = {}

    def __call__(self, value: Any) -> bool:
        key = value if type(value) is str else (type(value), value)  # 1 == 1.0 == True
        answer = self.answers.get(key)
        if answer is None:
            if len(self.answers) >= MAX_ANSWERS:
                self.answers.clear()
            try:
                with patched():  # the PGV package as the reference path runs it
                    self.run(value)
                answer = True
            except Exception:  # noqa: BLE001 - any error (or a library bug): the reference path decides
                answer = False
            self.answers[key] = answer
        return answer

    def run(self, value: Any) -> None:
        raise NotImplementedError


class _Scalar(_Check):
    """A singular scalar field (string, bytes, number, enum): converted and set as ParseDict does,
    then the field's PGV rules."""

    __slots__ = ("cls", "field", "rules")

    def __init__(self, cls: type[Message], field: FieldDescriptor) -> None:
        super().__init__()
        self.cls, self.field = cls, field
        self.rules: FieldCheck | None = field_rules(field)

    def run(self, value: Any) -> None:
        message = self.cls()
        _parser()._ConvertAndSetScalar(message, self.field, value, "")
        if self.rules is not None:
            self.rules(message)


class _Wkt(_Check):
    """A singular message field written as a JSON scalar (Duration, Timestamp, FieldMask, a wrapper,
    Value): parsed as ParseDict does, then the field's PGV rules (duration bounds, wrapper ranges)."""

    __slots__ = ("cls", "field", "rules")

    def __init__(self, cls: type[Message], field: FieldDescriptor) -> None:
        super().__init__()
        self.cls, self.field = cls, field
        self.rules: FieldCheck | None = field_rules(field)

    def run(self, value: Any) -> None:
        message = self.cls()
        sub = getattr(message, self.field.name)
        sub.SetInParent()
        _parser().ConvertMessage(value, sub, "")
        if self.rules is not None:
            self.rules(message)


class _Bare(_Check):
    """A message written as a JSON scalar where no field rules apply: a Struct's or ListValue's
    value, the ``value`` of an Any holding a well-known type."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Message]) -> None:
        super().__init__()
        self.cls = cls

    def run(self, value: Any) -> None:
        _parser().ConvertMessage(value, self.cls(), "")


class _Group(_Check):
    """A repeated or map field of leaves (scalars, or messages written as scalars), whole: its rules
    (``unique``, ``items``, ``values``) see all its values. Called with (keys, values)."""

    __slots__ = ("cls", "field", "rules")

    def __init__(self, cls: type[Message], field: FieldDescriptor) -> None:
        super().__init__()
        self.cls, self.field = cls, field
        self.rules: FieldCheck | None = field_rules(field)

    def __call__(self, value: Any) -> bool:
        keys, values = value
        return super().__call__((keys, tuple((type(v), v) for v in values)))

    def run(self, value: Any) -> None:
        keys, typed = value
        values = [v for _, v in typed]
        data = values if keys is None else dict(zip(keys, values, strict=True))
        message = self.cls()
        _parser()._ConvertFieldValuePair({self.field.json_name: data}, message, "")
        if self.rules is not None:
            self.rules(message)


@functools.cache
def _class(descriptor: Descriptor) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


@functools.cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A JSON key's field as ParseDict finds it: by JSON name first, then by proto name."""
    out = {f.name: f for f in descriptor.fields}
    out.update((f.json_name, f) for f in descriptor.fields)
    return out


@functools.cache
def _field_check(kind: type[_Scalar | _Wkt | _Group], descriptor: Descriptor, field: FieldDescriptor) -> Any:
    """One check object per field (its remembered answers shared by every shape)."""
    return kind(_class(descriptor), field)


@functools.cache
def _bare_check(descriptor: Descriptor) -> _Bare:
    return _Bare(_class(descriptor))


def _written_as_scalar(descriptor: Descriptor) -> bool:
    return descriptor.full_name in _SCALAR_JSON or _JSON._IsWrapperMessage(descriptor)


def special_json(descriptor: Descriptor) -> bool:
    """A type ParseDict reads from an Any's ``value`` key instead of its other keys."""
    return (_JSON._IsWrapperMessage(descriptor)
            or descriptor.full_name in _JSON._WKTJSONMETHODS)


class _Unmodelled(Exception):
    """The plan does not model this part of a clean item: its shape takes the reference path."""


class Plan:
    """The leaf checks of one shape: (leaf index, check) and (first leaf, count, map keys, check)."""

    __slots__ = ("groups", "singles")

    def __init__(self) -> None:
        self.singles: list[tuple[int, _Check]] = []
        self.groups: list[tuple[int, int, tuple[str, ...] | None, _Group]] = []

    def accepts(self, leaves: list[Any]) -> bool:
        for index, check in self.singles:
            value = leaves[index]  # the remembered answer inline (most leaves), else the check
            answer = check.answers.get(value if type(value) is str else (type(value), value))
            if not (check(value) if answer is None else answer):
                return False
        for start, count, keys, group in self.groups:
            if not group((keys, leaves[start:start + count])):
                return False
        return True


class _Builder:
    """Walks an item with its descriptors in the order of `_walk`: the plan of its shape (the check
    of each leaf) and its *nodes*: each message of the item that is not a well-known type, as
    ParseDict and PGV see it with its sub-messages cut off (a sub-message's JSON replaced by
    ``{}``, an Any's by its ``@type`` alone; well-known types, written as JSON values, stay)."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.index = 0
        self.nodes: list[tuple[Descriptor, dict[str, Any]]] = []

    def single(self, check: _Check) -> None:
        self.plan.singles.append((self.index, check))
        self.index += 1

    def message(self, descriptor: Descriptor, data: Any, skip_type: bool = False) -> None:
        """A node: a message of `descriptor` (an Any's content with `skip_type`)."""
        if type(data) is not dict:
            raise _Unmodelled
        fields = _fields(descriptor)
        cut: dict[str, Any] = {}
        for key, value in data.items():
            if skip_type and key == "@type":
                continue
            field = fields.get(key)
            if field is None:
                raise _Unmodelled  # an extension ("[...]"), or not clean
            cut[key] = self.field(descriptor, field, value)
        self.nodes.append((descriptor, cut))

    def field(self, owner: Descriptor, field: FieldDescriptor, value: Any) -> Any:
        """The checks of a field's leaves (or its sub-messages walked); its JSON in the node."""
        if value is None:
            return None
        target = field.message_type
        if target is not None and target.GetOptions().map_entry:
            value_field = target.fields_by_name["value"]
            if type(value) is not dict:
                raise _Unmodelled
            if value_field.message_type is not None and not _written_as_scalar(value_field.message_type):
                return {key: self.child(value_field.message_type, item) for key, item in value.items()}
            if "@type" in value:
                raise _Unmodelled  # a shape token, not a leaf, in `_walk`
            self.group(owner, field, list(value.values()), tuple(value))
            return value
        if field.is_repeated:
            if type(value) is not list:
                raise _Unmodelled
            if target is not None and not _written_as_scalar(target):
                return [self.child(target, item) for item in value]
            self.group(owner, field, value, None)
            return value
        if target is not None:
            if _written_as_scalar(target) and (_is_leaf(value) or type(value) is bool):
                if type(value) is not bool:  # a BoolValue or Value's boolean is part of the shape
                    self.single(_field_check(_Wkt, owner, field))
                return value
            return self.child(target, value)
        if _is_leaf(value):
            self.single(_field_check(_Scalar, owner, field))
        elif type(value) is not bool:  # a boolean is part of the shape
            raise _Unmodelled
        return value

    def group(self, owner: Descriptor, field: FieldDescriptor, items: list[Any],
              keys: tuple[str, ...] | None) -> None:
        count = sum(1 for item in items if _is_leaf(item))
        if count == 0 and all(type(item) is bool for item in items):
            return  # booleans only (or empty): part of the shape
        if count != len(items):
            raise _Unmodelled
        self.plan.groups.append((self.index, count, keys, _field_check(_Group, owner, field)))
        self.index += count

    def child(self, descriptor: Descriptor, data: Any) -> Any:
        """A message-typed value (a singular field's, a repeated item, a map value): a node of its
        own, or (well-known types) part of this one. Its JSON in this node."""
        if descriptor.full_name == _ANY:
            return self.any(data)
        if special_json(descriptor):
            self.value(descriptor, data)
            return data
        self.message(descriptor, data)
        return {}

    def any(self, data: Any) -> Any:
        if type(data) is not dict:
            raise _Unmodelled
        if not data:
            return data
        type_url = data.get("@type")
        if type(type_url) is not str:
            raise _Unmodelled
        try:
            inner = descriptor_pool.Default().FindMessageTypeByName(type_url.split("/")[-1])
        except KeyError:
            raise _Unmodelled from None
        if special_json(inner):
            if set(data) != {"@type", "value"}:
                raise _Unmodelled  # ParseDict ignores the other keys: not modelled
            self.value(inner, data["value"])
            return data
        self.message(inner, data, skip_type=True)
        return {"@type": type_url}

    def value(self, descriptor: Descriptor, data: Any) -> None:
        """The content of a well-known type written as JSON (Struct, Value, ListValue, Duration,
        Timestamp, FieldMask, wrappers), where only its JSON conversion applies."""
        name = descriptor.full_name
        if _is_leaf(data):
            if not _written_as_scalar(descriptor):
                raise _Unmodelled
            self.single(_bare_check(descriptor))
        elif data is None or type(data) is bool:
            if name != _VALUE and not (type(data) is bool and _JSON._IsWrapperMessage(descriptor)):
                raise _Unmodelled
        elif name == _STRUCT:
            if type(data) is not dict:
                raise _Unmodelled
            for key, item in data.items():
                if key == "@type" and type(item) is str:
                    continue  # a shape token in `_walk` (its value is fixed by the shape)
                self.value(descriptor.fields_by_name["fields"].message_type.fields_by_name["value"].message_type, item)
        elif name == _LIST:
            if type(data) is not list:
                raise _Unmodelled
            for item in data:
                self.value(descriptor.fields_by_name["values"].message_type, item)
        elif name == _VALUE:
            fields = descriptor.fields_by_name
            self.value((fields["struct_value"] if type(data) is dict else fields["list_value"]).message_type, data)
        else:
            raise _Unmodelled  # an Any in an Any, a Duration written as an object, ...


def make_plan(data: Any, cls: type[Message], leaves: list[Any]) -> tuple[Plan, list[tuple[Descriptor, Any]]] | None:
    """The plan of an item's shape and the item's nodes; None when the item has parts the plan
    does not model."""
    builder = _Builder()
    try:
        builder.message(cls.DESCRIPTOR, data)
    except Exception:  # noqa: BLE001 - _Unmodelled, or a descriptor this walk does not expect
        return None
    if builder.index != len(leaves):  # a safeguard: the walks disagree
        return None
    return builder.plan, builder.nodes


_PLANS: dict[tuple[str, tuple[Any, ...]], Plan | None] = {}  # item shape -> its plan (None: unmodelled)
_NODES: set[tuple[str, tuple[Any, ...]]] = set()  # node shapes whose own rules are known to hold


def _node_holds(descriptor: Descriptor, cut: dict[str, Any]) -> bool:
    """Whether a node (a message with its sub-messages cut off) parses strictly and keeps the
    rules of its own fields: ParseDict, then the PGV package's checker of its type without the
    descent into sub-messages (`pgv.own_rules`). Its shape is remembered when it does."""
    seen = shape(cut)
    if seen is None:
        return False
    key = (descriptor.full_name, seen[0])
    if key in _NODES:
        return True
    try:
        try:
            copied = orjson.loads(orjson.dumps(cut))
        except TypeError:
            copied = copy.deepcopy(cut)
        message = json_format.ParseDict(copied, _class(descriptor)(), ignore_unknown_fields=False)
        rules = own_rules(descriptor)
        if rules is not None:
            with patched():
                rules(message)
    except Exception:  # noqa: BLE001 - a parse error, a broken rule, a library bug: not known to hold
        return False
    if len(_NODES) < MAX_NODES:
        _NODES.add(key)
    COUNTS.nodes += 1
    return True


def item_findings(path: Path, data: Any, cls: type[Message], reference: Reference) -> Found:
    """The findings of one item: none when its shape has a plan and every leaf passes; else those
    of `reference`.

    A shape seen for the first time gets its plan when every node of the item holds (each node
    shape is checked once, see `_node_holds`); the item is then clean, for the strict parse and
    the PGV rules of a message are those of its nodes together."""
    seen = shape(data)
    if seen is None:
        COUNTS.reference += 1
        return reference(path, data, cls)
    tokens, leaves = seen
    key = (cls.DESCRIPTOR.full_name, tokens)
    plan = _PLANS.get(key)
    if plan is None and key not in _PLANS and len(_PLANS) < MAX_PLANS:
        made = make_plan(data, cls, leaves)
        if made is None:
            _PLANS[key] = None  # unmodelled: the reference path, always
        elif all(_node_holds(descriptor, cut) for descriptor, cut in made[1]):
            plan = _PLANS[key] = made[0]
            COUNTS.plans += 1
    if plan is not None and plan.accepts(leaves):
        COUNTS.fast += 1
        return []
    COUNTS.reference += 1
    return reference(path, data, cls)


def forget() -> None:
    """Drop every plan, node shape and remembered answer (tests, the micro-bench)."""
    _PLANS.clear()
    _NODES.clear()
    for check in (_field_check, _bare_check):
        check.cache_clear()
