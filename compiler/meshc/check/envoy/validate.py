"""Checks of an emitted Envoy bootstrap against Envoy's own API definitions.

Input: a bootstrap dict (proto-JSON, as `meshc.envoy.build_bootstrap` returns) or a file path.
Output: `Finding` values, with the data path inside the bootstrap where the problem is.

Codes:
* E001 - the strict proto parse failed: unknown field, wrong type, bad enum value, unresolvable
  ``@type`` (``google.protobuf.json_format.ParseDict`` with ``ignore_unknown_fields=False``).
  Each cluster and listener is parsed on its own so one bad object does not hide the others;
  the failing field is then found by re-parsing ever smaller parts of the object.
* E002 - a protoc-gen-validate rule of Envoy's protos is violated (see `meshc.envoy_pgv`).
* E003 - ``envoy --mode validate`` rejected the file (only when an ``envoy`` binary is on PATH).

Each cluster and listener goes first to the fast path (`meshc.check.envoy.fast`: per item shape,
leaf checks instead of the parse and PGV of the whole message), which answers only clean items;
an item with a finding, or one the fast path does not model, goes through the reference path
above, so the findings are the same either way (``validate_bootstrap(..., fast=False)``, or
MESHC_ENVOY_REFERENCE=1 in the environment, runs the reference path alone).

Invariants: the input is not mutated; findings come in bootstrap order.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson

# Imported for their side effect: registering the types named in ``@type`` with the pool.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.proxy_protocol.v3 import (  # noqa: F401
    upstream_proxy_protocol_pb2,
)
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from meshc.check.envoy.fast import Reference, item_findings, special_json
from meshc.check.envoy.pgv import descriptor_of, patched, pgv_violations
from meshc.model.diagnostics import Finding, Severity

REFERENCE_ENV = "MESHC_ENVOY_REFERENCE"  # =1: the reference path alone (debugging, comparing)
Path = tuple[Any, ...]
Located = list[tuple[Path, Finding]]  # findings with the path in the bootstrap of each
_PREFIX = re.compile(r"^(Failed to parse \w+ field: )+")
# What a parse can raise: ParseDict turns a field's ValueError and TypeError into a ParseError, but
# not one of a message parsed whole (a wrapper out of range when a parse error is narrowed down),
# nor an OverflowError (an integer too large for a Struct's number), nor the KeyError of an Any
# of a well-known type without its "value", nor the SystemError upb raises (over a
# UnicodeEncodeError) when an enum name is a string that is not UTF-8.
_PARSE_ERRORS = (json_format.ParseError, TypeError, ValueError, AttributeError, OverflowError, KeyError,
                 SystemError)
_ITEMS: tuple[tuple[str, type[Message]], ...] = (
    ("clusters", cluster_pb2.Cluster), ("listeners", listener_pb2.Listener))


def _finding(code: str, path: Path, message: str) -> tuple[Path, Finding]:
    return path, Finding(code, Severity.ERROR, message, path)


def _clean(error: str) -> str:
    return _PREFIX.sub("", error.split("\n", 1)[0]).strip()


def _text(error: Exception) -> str:
    if isinstance(error, SystemError) and isinstance(error.__cause__, UnicodeError):
        error = error.__cause__
    if isinstance(error, KeyError):
        return f"missing key {error.args[0]!r}" if error.args else "missing key"
    return _clean(str(error))


def _message_class(descriptor: Descriptor) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def _parse(data: Any, cls: type[Message]) -> Message:
    """Strict ParseDict on a copy: json_format re-inserts ``@type`` keys, reordering its input."""
    try:
        copied = orjson.loads(orjson.dumps(data))
    except TypeError:
        copied = copy.deepcopy(data)
    return json_format.ParseDict(copied, cls(), ignore_unknown_fields=False)


def _resolve_any(value: dict[str, Any], path: Path) -> tuple[Descriptor | None, tuple[Path, str] | None]:
    type_url = value.get("@type")
    name = str(type_url or "").rpartition("/")[2]
    try:
        return descriptor_pool.Default().FindMessageTypeByName(name), None
    except KeyError:
        return None, (path + ("@type",), f"cannot resolve Any type {type_url!r}")


def _check_value(descriptor: Descriptor, value: Any, path: Path) -> tuple[Path, str] | None:
    """None when `value` parses as `descriptor`, else the deepest failing place."""
    if descriptor.full_name == "google.protobuf.Any" and isinstance(value, dict):
        if not value:
            return None  # an empty Any
        resolved, problem = _resolve_any(value, path)
        if resolved is None:
            return problem
        if special_json(resolved):  # a well-known type: its JSON is the Any's "value"
            if "value" not in value:
                return path, f'an Any of {resolved.full_name} needs its "value"'
            descriptor, value, path = resolved, value["value"], path + ("value",)
        else:
            descriptor, value = resolved, {k: v for k, v in value.items() if k != "@type"}
    try:
        _parse(value, _message_class(descriptor))
    except _PARSE_ERRORS as error:
        if descriptor.full_name.startswith("google.protobuf."):
            return path, _text(error)
        return _locate(value, descriptor, path, _text(error))
    return None


def _field_values(fd: FieldDescriptor, value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry and isinstance(value, dict):
        yield from ((path + (k,), v) for k, v in value.items())
    elif fd.is_repeated and isinstance(value, list):
        yield from ((path + (i,), v) for i, v in enumerate(value))
    elif not fd.is_repeated:
        yield path, value


def _locate(value: Any, descriptor: Descriptor, path: Path, error: str) -> tuple[Path, str]:
    """Narrow a parse error of `value` (a `descriptor` message) down to one field."""
    if not isinstance(value, dict):
        return path, error
    fields = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
    cls = _message_class(descriptor)
    for key, sub in value.items():
        fd = fields.get(key)
        if fd is None:
            return path + (key,), f'unknown field "{key}" in {descriptor.full_name}'
        try:
            _parse({key: sub}, cls)
            continue
        except _PARSE_ERRORS as field_error:
            message = _text(field_error)
        if fd.message_type is None:
            return path + (key,), message
        entry = fd.message_type
        target = entry.fields_by_name["value"].message_type if entry.GetOptions().map_entry else entry
        if target is not None:
            for sub_path, item in _field_values(fd, sub, path + (key,)):
                problem = _check_value(target, item, sub_path)
                if problem is not None:
                    return problem
        return path + (key,), message
    return path, error


def _parse_item(data: Any, cls: type[Message], path: Path) -> tuple[Message | None, list[tuple[Path, Finding]]]:
    try:
        return _parse(data, cls), []
    except _PARSE_ERRORS as error:
        where, message = _locate(data, descriptor_of(cls), path, _text(error))
        return None, [_finding("E001", where, message)]


def _split(bootstrap: dict[str, Any]) -> Iterator[tuple[Path, Any, type[Message]]]:
    """Each cluster and listener on its own, then the rest of the bootstrap."""
    static = bootstrap.get("static_resources")
    rest = dict(bootstrap)
    if isinstance(static, dict):
        rest_static = dict(static)
        for key, cls in _ITEMS:
            items = static.get(key)
            if isinstance(items, list):
                del rest_static[key]
                yield from ((("static_resources", key, i), item, cls) for i, item in enumerate(items))
        rest["static_resources"] = rest_static
    yield (), rest, bootstrap_pb2.Bootstrap


def _validate_item(path: Path, data: Any, cls: type[Message]) -> list[tuple[Path, Finding]]:
    message, problems = _parse_item(data, cls, path)
    if message is not None:
        problems += [_finding("E002", where, text) for where, text in pgv_violations(message, path)]
    return problems


def validate_bootstrap(bootstrap: dict[str, Any], memo: dict[tuple[str, ...], Any] | None = None, *,
                       fast: bool | None = None) -> Located:
    """Strict proto parse (E001), then PGV rules (E002) of everything that parsed.

    Each cluster and listener is validated on its own; with a `memo`, an item whose content was
    seen before (in another environment, or an earlier run) is answered from it. With `fast` (the
    default unless MESHC_ENVOY_REFERENCE=1), clean items are answered by the fast path
    (`meshc.check.envoy.fast`), with the same findings; `fast=False` runs the reference path on
    every item."""
    if fast is None:
        fast = os.environ.get(REFERENCE_ENV, "").strip() in ("", "0")
    if not isinstance(bootstrap, dict):
        return [_finding("E001", (), "the bootstrap must be a JSON object")]
    out: list[tuple[Path, Finding]] = []
    with patched():  # once for the whole bootstrap, not per message
        _validate_items(bootstrap, memo, out, fast)
    return out


def _validate_items(bootstrap: dict[str, Any], memo: dict[tuple[str, ...], Any] | None,
                    out: list[tuple[Path, Finding]], fast: bool) -> None:
    for path, data, cls in _split(bootstrap):
        check = item_findings if fast and path else _reference
        key = None if memo is None else _memo_key(data, cls)
        if memo is None or key is None:
            out.extend(check(path, data, cls, _validate_item))
            continue
        if key not in memo:  # stored relative to the item, re-based below
            memo[key] = [(p[len(path):], f) for p, f in check(path, data, cls, _validate_item)]
        out.extend((path + rel, f) for rel, f in memo[key])


def _memo_key(data: Any, cls: type[Message]) -> tuple[str, ...] | None:
    """The item's key in the memo: its type and content; None for data JSON cannot hold (an
    integer beyond 64 bits, a non-string key), validated every time."""
    try:
        content = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return "envoy-item", cls.DESCRIPTOR.full_name, hashlib.sha256(content).hexdigest()


def _reference(path: Path, data: Any, cls: type[Message], reference: Reference) -> Located:
    return reference(path, data, cls)


def envoy_validate_binary(bootstrap_path: str) -> list[Finding]:
    """``envoy --mode validate -c PATH`` when ``envoy`` is on PATH; [] when it is absent."""
    executable = shutil.which("envoy")
    if executable is None:
        return []
    command = [executable, "--mode", "validate", "-c", bootstrap_path]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [Finding("E003", Severity.ERROR, f"envoy --mode validate could not run: {error}")]
    if proc.returncode == 0:
        return []
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
    return [Finding("E003", Severity.ERROR, f"envoy --mode validate rejected {bootstrap_path}: {tail}")]
