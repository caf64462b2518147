"""The envoy layer's fast path: a cluster or listener whose *shape* was validated before is checked
leaf by leaf instead of by the strict proto parse and the PGV checker of the whole message.

Input: one item of a bootstrap (a cluster or listener as JSON data, its message class, its path)
and the reference check (`validate.py`: ``json_format.ParseDict``, then the PGV rules). Output:
the item's findings, always exactly the reference check's.

**Shape** is everything of an item but its leaf values (strings and numbers): the keys of every
object in their order (fields, map keys, Struct keys), the nesting, list lengths, the ``@type``
of every Any, booleans and nulls. Items of one shape parse into the same message structure: the
same fields present, the same oneof members, the same Any types, the same numbers of repeated
items and map entries. So every check of the reference path depends either on the shape alone
(unknown fields, required fields and oneofs, ``min_items``, map keys, ``any.in``, ...) or on one
field's value (its JSON conversion, the PGV rules of that field: lengths, patterns, ranges, enum
``defined_only``, durations, well-known formats, ...), or on the values of one repeated or map
field together (``unique``, ``items``, ``values``).

**How.** The first item of a shape goes through the reference path; when it is clean, a *plan*
is made for its shape: for each leaf (or each repeated or map field of leaves) the check the
reference path makes of it, done with the reference's own code on a message that holds only that
field: the converter of ``json_format``'s parser (``_ConvertAndSetScalar``, ``ConvertMessage``
for Duration, Timestamp, wrappers, FieldMask and Value, ``_ConvertFieldValuePair`` for repeated
and map fields), then the PGV package's check of that field (`pgv.field_rules`: the text its
template writes for the field into its message's checker). A later item of the same shape is
clean when every leaf passes; any failing leaf, and any item the plan cannot answer (a shape
seen for the first time, one whose first clean item the plan does not model: an extension, a
``@type`` key inside a map, ...), goes through the reference path, so a finding's message and
path are always the reference's. Each leaf check remembers its answer per value (timeouts,
ports, enum names repeat across clusters).

Invariants: a clean answer without the reference path only when the reference path would give
none; the data is not mutated; the plans live for the process (like the PGV package's compiled
checkers), at most `MAX_PLANS` of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from meshc.check.envoy.pgv import FieldCheck, field_rules, patched

_JSON: Any = json_format  # its parser's internals: the converters ParseDict itself runs
Descriptor = Any  # google.protobuf.descriptor.Descriptor or upb's (the stubs tell them apart)
Path = tuple[Any, ...]
Found = list[tuple[Path, Any]]
Reference = Callable[[Path, Any, "type[Message]"], Found]

MAX_PLANS = 20_000  # distinct shapes remembered per process
MAX_ANSWERS = 1 << 16  # answers one leaf check remembers before it starts again
_DEPTH = 200  # deeper data goes through the reference path (which refuses it beyond 100 messages)
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
    plans: int = 0  # shapes with a plan

    def reset(self) -> None:
        self.fast = self.reference = self.plans = 0


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


def _special_json(descriptor: Descriptor) -> bool:
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
            if not check(leaves[index]):
                return False
        for start, count, keys, group in self.groups:
            if not group((keys, leaves[start:start + count])):
                return False
        return True


class _Builder:
    """Walks a clean item with its descriptors in the order of `_walk`, making its shape's plan."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.index = 0

    def single(self, check: _Check) -> None:
        self.plan.singles.append((self.index, check))
        self.index += 1

    def message(self, descriptor: Descriptor, data: Any, skip_type: bool = False) -> None:
        if type(data) is not dict:
            raise _Unmodelled
        fields = _fields(descriptor)
        for key, value in data.items():
            if skip_type and key == "@type":
                continue
            field = fields.get(key)
            if field is None:
                raise _Unmodelled  # an extension ("[...]"), or not clean
            if value is not None:
                self.field(descriptor, field, value)

    def field(self, owner: Descriptor, field: FieldDescriptor, value: Any) -> None:
        target = field.message_type
        if target is not None and target.GetOptions().map_entry:
            value_field = target.fields_by_name["value"]
            if type(value) is not dict:
                raise _Unmodelled
            if value_field.message_type is not None and not _written_as_scalar(value_field.message_type):
                for item in value.values():
                    self.value(value_field.message_type, item)
            elif "@type" in value:
                raise _Unmodelled  # a shape token, not a leaf, in `_walk`
            else:
                self.group(owner, field, list(value.values()), tuple(value))
        elif field.is_repeated:
            if type(value) is not list:
                raise _Unmodelled
            if target is not None and not _written_as_scalar(target):
                for item in value:
                    self.value(target, item)
            else:
                self.group(owner, field, value, None)
        elif target is not None:
            if _is_leaf(value) and _written_as_scalar(target):
                self.single(_field_check(_Wkt, owner, field))
            elif type(value) is bool and _written_as_scalar(target):
                pass  # a BoolValue or Value: part of the shape
            else:
                self.value(target, value)
        elif _is_leaf(value):
            self.single(_field_check(_Scalar, owner, field))
        elif type(value) is not bool:  # a boolean is part of the shape
            raise _Unmodelled

    def group(self, owner: Descriptor, field: FieldDescriptor, items: list[Any],
              keys: tuple[str, ...] | None) -> None:
        count = sum(1 for item in items if _is_leaf(item))
        if count == 0 and all(type(item) is bool for item in items):
            return  # booleans only (or empty): part of the shape
        if count != len(items):
            raise _Unmodelled
        self.plan.groups.append((self.index, count, keys, _field_check(_Group, owner, field)))
        self.index += count

    def value(self, descriptor: Descriptor, data: Any) -> None:
        """A message-typed value outside a singular field: a repeated item, a map value, a Struct's
        value, an Any's ``value``."""
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
        elif name == _ANY:
            self.any(data)
        elif name in _JSON._WKTJSONMETHODS or _written_as_scalar(descriptor):
            raise _Unmodelled
        else:
            self.message(descriptor, data)

    def any(self, data: Any) -> None:
        if type(data) is not dict:
            raise _Unmodelled
        if not data:
            return
        type_url = data.get("@type")
        if type(type_url) is not str:
            raise _Unmodelled
        try:
            inner = descriptor_pool.Default().FindMessageTypeByName(type_url.split("/")[-1])
        except KeyError:
            raise _Unmodelled from None
        if _special_json(inner):
            if set(data) != {"@type", "value"}:
                raise _Unmodelled  # ParseDict ignores the other keys: not modelled
            self.value(inner, data["value"])
        else:
            self.message(inner, data, skip_type=True)


def make_plan(data: Any, cls: type[Message], leaves: list[Any]) -> Plan | None:
    """The plan of a clean item's shape; None when the item has parts the plan does not model (or,
    as a safeguard, the plan does not accept the item it was made from)."""
    builder = _Builder()
    try:
        builder.message(cls.DESCRIPTOR, data)
    except Exception:  # noqa: BLE001 - _Unmodelled, or a descriptor this walk does not expect
        return None
    plan = builder.plan
    if builder.index != len(leaves) or not plan.accepts(leaves):
        return None
    return plan


_PLANS: dict[tuple[str, tuple[Any, ...]], Plan | None] = {}


def item_findings(path: Path, data: Any, cls: type[Message], reference: Reference) -> Found:
    """The findings of one item: none when its shape has a plan and every leaf passes; else those
    of `reference` (which makes the plan of a shape seen for the first time, when it finds none)."""
    seen = shape(data)
    if seen is None:
        COUNTS.reference += 1
        return reference(path, data, cls)
    tokens, leaves = seen
    key = (cls.DESCRIPTOR.full_name, tokens)
    with patched():
        plan = _PLANS.get(key)
        if plan is not None and plan.accepts(leaves):
            COUNTS.fast += 1
            return []
        COUNTS.reference += 1
        found = reference(path, data, cls)
        if not found and key not in _PLANS and len(_PLANS) < MAX_PLANS:
            plan = _PLANS[key] = make_plan(data, cls, leaves)
            COUNTS.plans += plan is not None
    return found


def forget() -> None:
    """Drop every plan and remembered answer (tests)."""
    _PLANS.clear()
    for check in (_field_check, _bare_check):
        check.cache_clear()
