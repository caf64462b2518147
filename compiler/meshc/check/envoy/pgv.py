"""protoc-gen-validate (PGV) rules on parsed Envoy messages, with bootstrap paths.

Input: a parsed Envoy message and its path inside the bootstrap. Output: ``(path, text)``
pairs, one per violated ``validate.rules`` annotation, placed at the field that broke it.

How: the ``protoc-gen-validate`` PyPI package (1.3.x, ``protoc_gen_validate.validator``) compiles
a checker per message type just in time. Three limits are worked around here:
* it keeps at most 128 compiled checkers (``functools.lru_cache()``), fewer than the message types
  of one bootstrap, so checkers were compiled again and again; `patched` makes the cache
  unbounded (one checker per message type for the life of the process), and makes the Jinja2
  templates it renders checkers from parse once per source instead of once per field;
* it reads ``FieldDescriptor.label``, which protobuf 7 removed; `patched` hands it
  descriptor views that add ``label`` (derived from ``is_repeated``) and forward everything else;
* it does not look inside ``google.protobuf.Any`` (typed_config, typed extension options), so
  every Any is unpacked with the default descriptor pool and validated as a root of its own;
* its messages name only the field (``p.name ...``), so a failing message is narrowed down by
  validating its sub-messages: errors a child reproduces belong to the child.

For the envoy layer's fast path (`meshc.check.envoy.fast`) the package's own checker text is also
compiled in two smaller forms: `field_rules` (one field's rules, as the package writes them into
its message's checker) and `own_rules` (a message type's checker without the descent into
sub-messages).

``protovalidate`` (buf) is not used: it evaluates ``buf.validate`` annotations, and Envoy's
protos carry the older PGV ``validate.rules`` extension instead.

Invariants: read-only; when the package is missing `available()` is False and no PGV findings
are produced (the strict proto parse still runs).
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

import jinja2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

try:
    from protoc_gen_validate import validator as _pgv
except ImportError:  # pragma: no cover - depends on the environment
    _pgv = None

Path = tuple[Any, ...]
_FIELD = re.compile(r"^p\.([A-Za-z0-9_]+)")
_REPLACEMENTS: dict[tuple[Any, str], Any] = {}


def descriptor_of(message: Message | type[Message]) -> Descriptor:
    """A message's descriptor. The stubs also allow upb's own Descriptor type, which is a `Descriptor`
    at run time (protobuf's metaclass makes isinstance hold for every implementation)."""
    return cast(Descriptor, message.DESCRIPTOR)


class _FieldView:
    """A FieldDescriptor with the ``label`` attribute protobuf 7 no longer has."""

    __slots__ = ("_field",)

    def __init__(self, fd: FieldDescriptor) -> None:
        self._field = fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._field, name)

    @property
    def label(self) -> int:
        repeated: bool = self._field.is_repeated
        return 3 if repeated else 1  # FieldDescriptor.LABEL_REPEATED / LABEL_OPTIONAL


class _OneofView:
    def __init__(self, oneof: Any) -> None:
        self._oneof = oneof

    def __getattr__(self, name: str) -> Any:
        return getattr(self._oneof, name)

    @property
    def fields(self) -> list[_FieldView]:
        return [_FieldView(f) for f in self._oneof.fields]


class _DescriptorView:
    def __init__(self, descriptor: Descriptor) -> None:
        self._descriptor = descriptor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._descriptor, name)

    @property
    def fields(self) -> list[_FieldView]:
        return [_FieldView(f) for f in self._descriptor.fields]

    @property
    def oneofs(self) -> list[_OneofView]:
        return [_OneofView(o) for o in self._descriptor.oneofs]


def _replacements() -> dict[tuple[Any, str], Any]:
    """What the package's module needs swapped while meshc validates (see the module docstring):
    unbounded checker caches, templates parsed once, descriptor views with ``label``. Built once;
    the same objects every time, so the compiled checkers are kept between validations."""
    if _REPLACEMENTS or _pgv is None:
        return _REPLACEMENTS
    for name in ("_validate_all_inner", "_validate_inner"):
        compiled = getattr(_pgv, name, None)
        if compiled is not None and hasattr(compiled, "__wrapped__"):
            _REPLACEMENTS[(_pgv, name)] = functools.lru_cache(maxsize=None)(compiled.__wrapped__)
    if getattr(_pgv, "Template", None) is jinja2.Template:
        _REPLACEMENTS[(_pgv, "Template")] = _template
    if not hasattr(FieldDescriptor, "label"):
        def init(self: Any, proto_message: Message) -> None:
            self.DESCRIPTOR = _DescriptorView(descriptor_of(proto_message))

        _REPLACEMENTS[(_pgv.ValidatingMessage, "__init__")] = init
    return _REPLACEMENTS


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """The replacements in place for the duration of one validation (a bootstrap, or one message),
    and the package as it was afterwards: nothing outside meshc's own calls sees a changed
    protoc-gen-validate. Nested uses leave the outer one's replacements in place."""
    if _pgv is None or getattr(_pgv, "_meshc_patched", False):
        yield
        return
    saved = [(owner, name, getattr(owner, name)) for owner, name in _replacements()]
    _pgv._meshc_patched = True
    try:
        for (owner, name), value in _REPLACEMENTS.items():
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        del _pgv._meshc_patched


@functools.cache
def _template(source: str) -> jinja2.Template:
    """jinja2.Template(source), parsed once per distinct source (templates are reentrant)."""
    template: jinja2.Template = jinja2.Template(source)  # Template.__new__ is typed as returning Any
    return template


def available() -> bool:
    return _pgv is not None


FieldCheck = Callable[[Message], None]  # raises when the field's rules reject the message's value
_NOW = "time.time()"  # in the checker text of the timestamp rules lt_now, gt_now and within


@functools.cache
def field_rules(fd: FieldDescriptor) -> FieldCheck | None:
    """The package's own check of one field's rules, as it writes it into the checker of the
    field's message type (the same template text, the same helpers): called on a message, it
    raises when the field's value breaks a rule. None when the field has no rules, or the package
    is missing; a check that always raises when the package cannot render or compile it. The
    fast path (`meshc.check.envoy.fast`) runs it on a message holding only that field; call it
    inside `patched()`."""
    if _pgv is None:
        return None
    try:
        with patched(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # as in `_errors`
            source = _pgv.rule_type(_FieldView(fd))
        if not source.strip():
            return None
        if _NOW in source:
            return _refuse  # a timestamp rule relative to the clock: its answer would not keep
        scope: dict[str, Any] = {}
        exec(compile(f"def generate_validate(p):\n    pass{source}\n    return None\n",
                     f"<pgv {fd.full_name}>", "exec"), vars(_pgv), scope)
        check: FieldCheck = scope["generate_validate"]
        return check
    except Exception:  # noqa: BLE001 - then every value of this field takes the reference path
        return _refuse


def _refuse(message: Message) -> None:
    raise ValueError("no field check")


@functools.cache
def own_rules(descriptor: Descriptor) -> FieldCheck | None:
    """The package's own checker of one message type (the text its template writes for the type,
    in the form that stops at the first violation) with one change: it does not descend into
    sub-messages (``validate`` is a no-op in its namespace). Called on a message, it raises when a
    rule of the message itself is broken: its fields' rules, required oneofs and fields, item and
    pair counts, map keys, Any types. None when the package is missing; a check that always raises
    when the package cannot render or compile it. Call it inside `patched()`."""
    if _pgv is None:
        return None
    try:
        with patched(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            source = _pgv.file_template(_pgv.ValidatingMessage(message_factory.GetMessageClass(descriptor)()))
        if _NOW in source:
            return _refuse  # a timestamp rule relative to the clock (none in Envoy's protos)
        namespace = dict(vars(_pgv))
        namespace["validate"] = _no_descent
        scope: dict[str, Any] = {}
        exec(compile(source, f"<pgv {descriptor.full_name}>", "exec"), namespace, scope)
        check: FieldCheck = scope["generate_validate"]
        return check
    except Exception:  # noqa: BLE001 - then messages of this type take the reference path
        return _refuse


def _no_descent(message: Message) -> None:
    return None


def _errors(message: Message) -> list[str]:
    try:
        with warnings.catch_warnings():
            # the package rewrites rule options in place for well-known regexes (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return list(_pgv._validate_all(message))
    except Exception:  # noqa: BLE001 - a library bug must not hide the other checks
        return []


def _is_plain_message(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and not fd.message_type.full_name.startswith("google.protobuf.")


def _children(message: Message, path: Path) -> Iterator[tuple[Path, Message]]:
    """Direct sub-messages the PGV checker descends into, with their paths."""
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            if _is_plain_message(value_fd):
                yield from ((path + (fd.name, key), value[key]) for key in sorted(value))
        elif not _is_plain_message(fd):
            continue
        elif fd.is_repeated:
            yield from ((path + (fd.name, index), item) for index, item in enumerate(value))
        else:
            yield path + (fd.name,), value


def _unpack(any_message: Any) -> Message | None:
    name = any_message.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    inner = message_factory.GetMessageClass(descriptor)()
    return inner if any_message.Unpack(inner) else None


def _any_roots(message: Message, path: Path) -> Iterator[tuple[Path, Message]]:
    """Every message packed in an Any below `message` (recursively), with its path."""
    for fd, value in message.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is None:
                continue
            items: Iterator[tuple[Path, Any]] = ((path + (fd.name, k), value[k]) for k in sorted(value))
        elif fd.is_repeated:
            items = ((path + (fd.name, i), v) for i, v in enumerate(value))
        else:
            items = iter([(path + (fd.name,), value)])
        for sub_path, sub in items:
            if sub.DESCRIPTOR.full_name == "google.protobuf.Any":
                inner = _unpack(sub)
                if inner is not None:
                    yield sub_path, inner
                    yield from _any_roots(inner, sub_path)
            elif not sub.DESCRIPTOR.full_name.startswith("google.protobuf."):
                yield from _any_roots(sub, sub_path)


def _localise(message: Message, path: Path, errors: list[str]) -> list[tuple[Path, str]]:
    remaining = list(errors)
    out: list[tuple[Path, str]] = []
    for sub_path, child in _children(message, path):
        child_errors = _errors(child)
        if not child_errors or any(remaining.count(e) < child_errors.count(e) for e in child_errors):
            continue
        for error in child_errors:
            remaining.remove(error)
        out.extend(_localise(child, sub_path, child_errors))
    for error in remaining:
        match = _FIELD.match(error)
        where = path + (match.group(1),) if match else path
        out.append((where, f"{message.DESCRIPTOR.full_name}: {error.removeprefix('p.')}"))
    return out


def pgv_violations(message: Message, path: Path) -> list[tuple[Path, str]]:
    """All PGV rule violations in `message` and the messages packed inside it."""
    if _pgv is None:
        return []
    out: list[tuple[Path, str]] = []
    with patched():
        for root_path, root in [(path, message), *_any_roots(message, path)]:
            errors = _errors(root)
            if errors:
                out.extend(_localise(root, root_path, errors))
    return out
