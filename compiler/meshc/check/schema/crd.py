"""Validate emitted manifests against CustomResourceDefinitions as the Kubernetes API server does.

Input:  a YAML file of ``apiextensions.k8s.io/v1`` CustomResourceDefinitions (several documents,
        or the ``v1 List`` printed by ``kubectl get crd -o yaml``), then manifests as plain dicts.
Output: ``CrdSet.validate(manifest)`` returns the list of ``Finding``s for that object, sorted by
        path, then code, then message. Nothing is raised for invalid manifests; ``CrdError`` is
        raised only by ``CrdSet.load`` for an unreadable or malformed CRD file.

Invariants:
* Everything is compiled at load: one JSON Schema validator (jsonschema_rs) per distinct
  served schema (versions with identical schemas share it), every CEL rule once, and the tree
  of schema nodes that carry rules or list keys; ``validate`` only walks the manifest along
  that tree, and runs the full error report only when the fast ``is_valid`` check fails.
* A ``CrdSet``'s schemas and rules are immutable after ``load``; its only mutable part is a
  bounded memo of rule outcomes per observed value (outcomes are pure functions of it).

Codes (all Severity.ERROR, path = keys/indices into the manifest):
  S001 OpenAPI schema violation (unknown field, type, enum, range, length, required, oneOf...)
  S002 an ``x-kubernetes-validations`` rule evaluated to false (its message)
  S003 a rule could not be compiled or evaluated
  S004 duplicate key in ``x-kubernetes-list-type: map`` / duplicate item in ``set``
  S005 no CRD serves the manifest's apiVersion/kind
"""

from __future__ import annotations

import difflib
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from meshc.check.schema.cel import CelCompiler
from meshc.check.schema.defaults import apply_node, schema_node
from meshc.check.schema.openapi import compile_validator, explain, to_json_schema
from meshc.check.schema.sites import RuleMemo, SiteNode, build_sites, check
from meshc.files.confine import CRD_LIMIT, read_regular
from meshc.model.diagnostics import DataPath, Finding, Severity

UNKNOWN_KIND = "S005"
_CRD_API_VERSION = "apiextensions.k8s.io/v1"


class CrdError(Exception):
    """The CRD file cannot be used; str() names the file (and line) and what to do."""


@dataclass(frozen=True)
class _Served:
    """Everything compiled for one served schema."""

    validator: Any
    json_schema: dict[str, Any]
    sites: SiteNode | None


@dataclass(frozen=True)
class _Document:
    data: Any
    line: int


class CrdSet:
    """The kinds served by a set of CRDs, with their compiled validators."""

    def __init__(self, path: pathlib.Path, entries: dict[tuple[str, str], tuple[bytes, _Document, dict[str, Any]]],
                 served: dict[bytes, _Served]) -> None:
        self._path = path
        self._entries = dict(entries)
        self._compiled = dict(served)
        self._compiler = CelCompiler()
        self._memo = RuleMemo()
        self._defaults: dict[tuple[str, str], Any] = {}

    @classmethod
    def load(cls, path: str | pathlib.Path, eager: bool = True) -> CrdSet:
        """Read a CRD file. `eager` compiles every served schema now (a broken one raises
        CrdError here); otherwise each is compiled when an object of its kind is first validated
        (the shipped schemas hold every Istio and Gateway API kind; most builds need three)."""
        path = pathlib.Path(path)
        entries: dict[tuple[str, str], tuple[bytes, _Document, dict[str, Any]]] = {}
        for doc in _crd_documents(path):
            for api_version, kind, schema in _served_schemas(path, doc):
                entries[(api_version, kind)] = (orjson.dumps(schema, option=orjson.OPT_SORT_KEYS), doc, schema)
        if not entries:
            raise CrdError(f"{path}: no served CustomResourceDefinition version found; "
                           "use a file holding apiextensions.k8s.io/v1 CRDs with served versions")
        crds = cls(path, entries, {})
        if eager:
            for identity in entries:
                crds._served(identity)
        return crds

    def _served(self, identity: tuple[str, str]) -> _Served | None:
        entry = self._entries.get(identity)
        if entry is None:
            return None
        key, doc, schema = entry
        served = self._compiled.get(key)
        if served is None:
            served = self._compiled[key] = _compile_schema(self._path, doc, schema, self._compiler)
        return served

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._entries)

    def validate(self, manifest: Mapping[str, Any]) -> list[Finding]:
        try:
            served = self._served(_identity(manifest))
        except CrdError as exc:
            return [Finding("S003", Severity.ERROR, str(exc), ("kind",))]
        if served is None:
            return [self._unknown_kind(manifest)]
        manifest = self._defaulted(manifest)
        try:
            valid = served.validator.is_valid(manifest)
        except (TypeError, ValueError, OverflowError) as exc:
            return [Finding("S001", Severity.ERROR, f"object is not plain JSON data: {exc}", ())]
        findings: list[Finding] = []
        blocked: set[DataPath] = set()
        if not valid:
            findings, blocked = _schema_findings(served, manifest)
        if served.sites is not None:
            findings.extend(check(served.sites, manifest, blocked, self._memo))
        return sort_findings(findings)

    def _defaulted(self, manifest: Mapping[str, Any]) -> Mapping[str, Any]:
        """`manifest` as the API server validates it: with its schema's defaults (check.schema.defaults;
        the kinds meshc emits have none, and are returned as they are)."""
        identity = _identity(manifest)
        if identity not in self._defaults:
            entry = self._entries.get(identity)
            node = schema_node(entry[2]) if entry is not None else None
            self._defaults[identity] = node if node is not None and node.defaulting else None
        node = self._defaults[identity]
        return apply_node(manifest, node) if node is not None else manifest

    def _unknown_kind(self, manifest: Any) -> Finding:
        api_version, kind = _identity(manifest)
        versions = sorted(av for av, k in self._entries if k == kind)
        if versions:
            return Finding(UNKNOWN_KIND, Severity.ERROR,
                           f'kind {kind} is not served as apiVersion "{api_version}"; '
                           f"served versions: {', '.join(versions)}", ("apiVersion",))
        kinds = sorted({k for _, k in self._entries})
        close = difflib.get_close_matches(str(kind), kinds, n=1)
        suggestion = f' (did you mean "{close[0]}"?)' if close else ""
        return Finding(UNKNOWN_KIND, Severity.ERROR,
                       f'no CRD serves apiVersion "{api_version}" kind "{kind}"{suggestion}',
                       ("kind",), hint=f"known kinds: {', '.join(kinds)}")


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Deduplicated, ordered by path (ints before strings at a level), code, message."""
    def key(f: Finding) -> tuple[Any, ...]:
        path = tuple((0, e, "") if isinstance(e, int) else (1, 0, str(e)) for e in f.path)
        return (path, f.code, f.message)
    return sorted(dict.fromkeys(findings), key=key)


def _identity(manifest: Any) -> tuple[str, str]:
    if not isinstance(manifest, dict):
        return ("", "")
    return (str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))


def _schema_findings(served: _Served, manifest: Any) -> tuple[list[Finding], set[DataPath]]:
    findings: list[Finding] = []
    blocked: set[DataPath] = set()
    for error in served.validator.iter_errors(manifest):
        findings.extend(explain(error, served.json_schema))
        if type(error.kind).__name__.endswith("AdditionalProperties"):
            continue
        path = tuple(error.instance_path)
        blocked.update(path[:i] for i in range(len(path) + 1))
    return findings, blocked


# --------------------------------------------------------------------------- loading


def _crd_documents(path: pathlib.Path) -> Iterator[_Document]:
    """CRD documents of the file, with `List` wrappers unpacked; raises CrdError otherwise."""
    for doc in _yaml_documents(path):
        data = doc.data
        if data is None:
            continue
        is_list = isinstance(data, dict) and data.get("kind") == "List"
        items = data.get("items") if is_list else None
        if isinstance(items, list):
            for item in items:
                yield _require_crd(path, _Document(item, doc.line))
        else:
            yield _require_crd(path, doc)


def _yaml_documents(path: pathlib.Path) -> list[_Document]:
    try:
        text = read_regular(path, CRD_LIMIT).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CrdError(f"{path}: cannot read the CRD file ({reason}); check the path "
                       "(or fetch the CRDs with `kubectl get crd -o yaml`)") from None
    if path.suffix == ".json":
        try:
            return [_Document(orjson.loads(text), 1)]
        except orjson.JSONDecodeError as exc:
            raise CrdError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON in the CRD file ({exc.msg}); "
                           "fix the JSON syntax or regenerate the file") from None
    loader = yaml.CSafeLoader(text)
    documents: list[_Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said a document follows
            documents.append(_Document(loader.construct_document(node), node.start_mark.line + 1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CrdError(f"{where}: malformed YAML in the CRD file ({problem}); "
                       "fix the YAML syntax or regenerate the file") from None
    finally:
        loader.dispose()
    return documents


def _require_crd(path: pathlib.Path, doc: _Document) -> _Document:
    data = doc.data
    if not isinstance(data, dict) or data.get("kind") != "CustomResourceDefinition":
        what = (data.get("kind", "a mapping without kind") if isinstance(data, dict)
                else type(data).__name__)
        raise CrdError(f"{path}:{doc.line}: document is {what!s}, not a CustomResourceDefinition; "
                       "the CRD file must contain only CRDs (or a `kubectl get crd -o yaml` List)")
    if data.get("apiVersion") != _CRD_API_VERSION:
        raise CrdError(f"{path}:{doc.line}: CustomResourceDefinition has apiVersion "
                       f"{data.get('apiVersion')!r}; only {_CRD_API_VERSION} is supported, "
                       "re-export it from a current cluster")
    return doc


def _served_schemas(path: pathlib.Path,
                    doc: _Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(group/version, kind, openAPIV3Schema) for each served version of one CRD."""
    spec = doc.data.get("spec")
    group = _get(path, doc, spec, "group")
    kind = _get(path, doc, _get(path, doc, spec, "names"), "kind")
    versions = _get(path, doc, spec, "versions")
    if not isinstance(versions, list):
        raise CrdError(f"{path}:{doc.line}: spec.versions must be a list; fix the CRD")
    for version in versions:
        if not isinstance(version, dict) or version.get("served") is False:
            continue
        name = _get(path, doc, version, "name")
        schema = _get(path, doc, _get(path, doc, version, "schema"), "openAPIV3Schema")
        if not isinstance(schema, dict):
            raise CrdError(f"{path}:{doc.line}: {kind} {name}: openAPIV3Schema is not a mapping")
        yield f"{group}/{name}", str(kind), schema


def _get(path: pathlib.Path, doc: _Document, mapping: Any, key: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        metadata = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
        raise CrdError(f"{path}:{doc.line}: CustomResourceDefinition {name} lacks `{key}`; "
                       "the file looks truncated or hand-edited, regenerate it")
    return mapping[key]


def _compile_schema(path: pathlib.Path, doc: _Document, schema: dict[str, Any],
                    compiler: CelCompiler) -> _Served:
    json_schema = to_json_schema(schema)
    try:
        validator = compile_validator(json_schema)
    except (ValueError, TypeError) as exc:
        raise CrdError(f"{path}:{doc.line}: the CRD schema cannot be compiled ({exc}); "
                       "fix the openAPIV3Schema") from None
    return _Served(validator, json_schema, build_sites(schema, compiler))
