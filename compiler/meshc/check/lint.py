"""`meshc lint`: the schema and Istio checks on existing Istio YAML (files, directories, stdin).

Input: paths (or "-" for stdin) holding multi-document YAML. Output: diagnostics at the
file:line:col of the offending field in that YAML. ServiceEntry, WorkloadEntry, DestinationRule and
the egress path's kinds (Gateway, VirtualService, Sidecar, AuthorizationPolicy, BackendTLSPolicy)
are checked; the Kubernetes core/v1 Service, Pod, Node and Namespace are read into the analyzers'
inventory (Istio's analyzers read them from the cluster: Service hosts and selectors, Pod labels with
their Node's topology labels) and get the analyzers' findings about them, not the CRD/webhook checks.
Objects of other kinds are skipped (counted); YAML errors are input errors (exit 2).
The analyzers run with `istioctl analyze`'s view of the mesh config (LINT_SETTINGS): no proxyMetadata
turning on DNS capture and VIP auto-allocation, so A405 (IST0134) reports every TCP port of a
ServiceEntry without addresses, whatever its resolution, as istioctl analyze does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode

from meshc.check.istio import AnalyzerSettings, analyze, check_object
from meshc.check.istio.inventory import CORE_KINDS, is_core
from meshc.files.source import Document, locate, node_position, parse
from meshc.model.diagnostics import Diagnostic, Finding, Position, Severity, format_path

# what meshc emits (the egress path's kinds included: the egress analyzers read them) and the
# core kinds the analyzers use
KINDS = {"ServiceEntry", "WorkloadEntry", "DestinationRule", "Gateway", "VirtualService", "Sidecar",
         "AuthorizationPolicy", "BackendTLSPolicy", *CORE_KINDS}
LINT_SETTINGS = AnalyzerSettings(mesh_dns_auto_allocate=False)


@dataclass
class LintInput:
    docs: list[Document] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    skipped: int = 0


def _sources(paths: Sequence[str]) -> Iterator[tuple[str, bytes | Diagnostic]]:
    """(name, bytes) per file under `paths` ("-" is stdin; folders recursively, *.yaml and *.yml
    sorted), or (name, Y001) for a file that cannot be read."""
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        path = Path(raw)
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")
                       and not any(part.startswith(".") for part in p.relative_to(path).parts)
                       ) if path.is_dir() else [path]  # hidden files and folders (.git, .github) are not input
        for f in files:
            try:
                yield f.as_posix(), f.read_bytes()
            except OSError as exc:
                yield f.as_posix(), Diagnostic("Y001", Severity.ERROR, f"cannot read file: {exc.strerror}",
                                               Position(f.as_posix()), hint="check the path")


def read_documents(paths: Sequence[str]) -> tuple[list[Document], list[Diagnostic]]:
    """Every document under `paths`, `kind: List` items unwrapped, with the files' YAML errors."""
    docs: list[Document] = []
    errors: list[Diagnostic] = []
    for name, data in _sources(paths):
        if isinstance(data, Diagnostic):
            errors.append(data)
            continue
        parsed, diags = parse(name, data, carried=False, scalar_keys=True)
        errors.extend(diags)
        docs.extend(_unwrap(parsed))
    return docs, errors


def read_inputs(paths: Sequence[str]) -> LintInput:
    out = LintInput()
    for name, data in _sources(paths):
        if isinstance(data, Diagnostic):
            out.errors.append(data)
        else:
            _add(out, name, data)
    return out


def _add(out: LintInput, name: str, data: bytes) -> None:
    docs, diags = parse(name, data, carried=False, scalar_keys=True)
    out.errors.extend(diags)
    skipped: list[Document] = []
    for doc in _unwrap(docs):
        if isinstance(doc.value, dict) and doc.value.get("kind") in KINDS and (
                doc.value.get("kind") not in CORE_KINDS or is_core(doc.value)):
            out.docs.append(doc)
        else:
            skipped.append(doc)
    out.skipped += len(skipped)
    if skipped:
        kinds = sorted({str(d.value.get("kind") or "(no kind)") if isinstance(d.value, dict) else "(not an object)"
                        for d in skipped})
        first = skipped[0]
        out.errors.append(Diagnostic(
            "Y009", Severity.INFO, f"{len(skipped)} document(s) not checked: {', '.join(kinds)}",
            node_position(name, first.node) if first.node is not None else Position(name),
            hint="meshc lint checks ServiceEntry, WorkloadEntry, DestinationRule, Gateway, VirtualService, "
                 "Sidecar, AuthorizationPolicy and BackendTLSPolicy, and reads Kubernetes "
                 "Service, Pod, Node and Namespace for the analyzers; other kinds are left to their own tools"))


def _unwrap(docs: Sequence[Document]) -> list[Document]:
    """Documents, with the items of a `kind: List` (what `kubectl get -o yaml` prints) in its place."""
    out: list[Document] = []
    for doc in docs:
        value = doc.value
        items = value.get("items") if isinstance(value, dict) and value.get("kind") == "List" else None
        if not isinstance(items, list):
            out.append(doc)
            continue
        nodes = _item_nodes(doc.node)
        out.extend(_unwrap([Document(doc.file, item, nodes[i] if i < len(nodes) else doc.node)
                            for i, item in enumerate(items)]))
    return out


def _item_nodes(node: Node | None) -> list[Node]:
    if not isinstance(node, MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, SequenceNode):
            return list(value.value)
    return []


def _diag(doc: Document, finding: Finding) -> Diagnostic:
    pos = locate(doc.file, doc.node, finding.path)[0] if doc.node is not None else Position(doc.file)
    meta = doc.value.get("metadata") or {}
    ident = f"{doc.value.get('kind')}/{meta.get('namespace', 'default')}/{meta.get('name', '')}"
    return Diagnostic(finding.code, finding.severity, finding.message, pos, format_path(finding.path),
                      finding.hint, "", ident, finding.istio_code)


def lint_docs(docs: Sequence[Document], crds: Any | None) -> list[Diagnostic]:

    out: list[Diagnostic] = []
    by_id: dict[tuple[str, str, str], Document] = {}
    for doc in docs:
        meta = doc.value.get("metadata") or {}
        by_id.setdefault((doc.value["kind"], meta.get("namespace", "default"), meta.get("name", "")), doc)
        if is_core(doc.value):
            continue  # no CRD and no webhook rule: the analyzers read it
        findings = list(crds.validate(doc.value)) if crds is not None else []
        findings.extend(check_object(doc.value))
        out.extend(_diag(doc, f) for f in findings)
    for ident, finding in analyze([_with_ns(d.value) for d in docs], LINT_SETTINGS):
        found = by_id.get(ident)
        if found is not None:
            out.append(_diag(found, finding))
    return out


def _with_ns(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    if "namespace" in meta:
        return body
    return {**body, "metadata": {**meta, "namespace": "default"}}
