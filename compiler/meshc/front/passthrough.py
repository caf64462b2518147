"""Objects an estate keeps verbatim: environments/base/passthrough/ and environments/<env>/passthrough/.

What meshc cannot express as a declaration (`meshc import` lists each with its reason, and puts it
here) still belongs in the bundle. A pass-through file is a multi-document YAML stream of objects
of the API groups the shipped CRDs serve (model.release.PASSTHROUGH_GROUPS); the base folder's
objects go into every environment, an environment's into that one. Each object joins the
environment's objects in the assemble pass: it is checked by every layer (CRD schema, Istio rules
and analyzers, release), read by the proxy pass like any emitted object, written as its own file
and placed, in findings and diffs, at the line it was read from.

Input: a SourceTree and a layer folder. Output: `PassDoc`s, or diagnostics.
Invariants: the body is the document as written (the environment's namespace filled in when it
has none, at assemble); nothing else is added, not even meshc's labels.
Codes: F010 a document that is not an object of a carried group (no apiVersion, kind or
metadata.name; another group; a `kind: List`), F011 an identity met twice in an environment
(two pass-through documents, or a pass-through document and an object a declaration makes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.files.source import Document, locate, node_position, parse
from meshc.files.tree import SourceTree
from meshc.model.core import Artifact, EnvSettings
from meshc.model.diagnostics import Diagnostic, Finding, Position, Severity, format_path
from meshc.model.ids import ObjectId, identity_problem
from meshc.model.release import PASSTHROUGH_GROUPS

FOLDER = "passthrough"


@dataclass(frozen=True, slots=True)
class PassDoc:
    body: dict[str, Any]
    position: Position
    node: Any  # the document's YAML node (positions of fields inside it)


def is_passthrough(path: str) -> bool:
    """environments/<layer>/passthrough/...: not a declaration file."""
    parts = path.split("/")
    return len(parts) >= 4 and parts[2] == FOLDER


def load_passthrough(tree: SourceTree, layer_dir: str) -> tuple[tuple[PassDoc, ...], list[Diagnostic]]:
    folder = f"{layer_dir}/{FOLDER}"
    docs: list[PassDoc] = []
    diags: list[Diagnostic] = []
    for path in tree.list(folder) if tree.is_dir(folder) else []:
        if not path.endswith((".yaml", ".yml")):
            diags.append(Diagnostic("L004", Severity.WARNING, "not a .yaml file; ignored", Position(path),
                                    hint="rename it to .yaml or move it out"))
            continue
        try:
            raw = tree.read(path)
        except OSError as exc:
            diags.append(Diagnostic("Y001", Severity.ERROR, f"cannot read file: {exc.strerror or type(exc).__name__}",
                                    Position(path), hint="check the file exists and is readable"))
            continue
        parsed, problems = parse(path, raw, scalar_keys=True)
        diags.extend(problems)
        for doc in parsed:
            if doc.value is None:
                continue
            problem = _problem(doc)
            if problem:
                diags.append(Diagnostic("F010", Severity.ERROR, problem, _pos(doc), hint=(
                    "a pass-through file holds objects of Istio's API groups or the Gateway API's "
                    "(apiVersion, kind, metadata.name), one per document; move other objects out")))
                continue
            docs.append(PassDoc(doc.value, _pos(doc), doc.node))
    return tuple(docs), diags


def _pos(doc: Document) -> Position:
    return node_position(doc.file, doc.node) if doc.node is not None else Position(doc.file)


def _problem(doc: Document) -> str:
    value = doc.value
    if not isinstance(value, dict):
        return "a pass-through document must be a Kubernetes object (a mapping)"
    meta = value.get("metadata")
    if not (isinstance(value.get("apiVersion"), str) and isinstance(value.get("kind"), str)
            and isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]):
        return "a pass-through document needs apiVersion, kind and metadata.name"
    if value["kind"] == "List":
        return "a `kind: List` cannot be kept as pass-through; write its items as documents of their own"
    group = value["apiVersion"].rpartition("/")[0]
    if group not in PASSTHROUGH_GROUPS:
        return (f"{value['kind']} ({value['apiVersion']}) is not an object meshc carries: "
                f"only the groups {', '.join(PASSTHROUGH_GROUPS)}")
    namespace = meta.get("namespace")
    problem = identity_problem(value["kind"], namespace if namespace is not None else "default", meta["name"])
    return f"not a Kubernetes object: {problem}" if problem else ""


def with_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The body, in `namespace` when it names none (as `kubectl apply -n` would place it)."""
    meta = body["metadata"]
    if meta.get("namespace"):
        return body
    return {**body, "metadata": {**meta, "namespace": namespace}}


def passthrough_artifacts(settings: EnvSettings, made: Sequence[Artifact], docs: Sequence[PassDoc],
                          validate: Callable[[Mapping[str, Any]], Sequence[Finding]] = lambda _b: ()
                          ) -> tuple[list[Artifact], list[Diagnostic]]:
    """The environment's pass-through objects (base first) as artifacts of no service; an identity
    that a declaration or an earlier pass-through document already gives is F011. `validate` (the
    CRD schema) runs before an object joins: the passes after assemble (Envoy, iptables) read
    objects as their schema types them, and a hand-written file is not held to it otherwise until
    the check layers; its errors are reported at their lines and the object is left out."""
    taken = {a.identity: a for a in made}
    where: dict[ObjectId, PassDoc] = {}
    out: list[Artifact] = []
    diags: list[Diagnostic] = []
    for doc in docs:
        body = with_namespace(doc.body, settings.namespace)
        ident = ObjectId.of(body)
        if ident in taken or ident in where:
            other = taken.get(ident)
            by = (f"service {other.service}'s declaration" if other is not None and other.service
                  else "env.yaml's settings" if other is not None else f"{where[ident].position}")
            diags.append(Diagnostic(
                "F011", Severity.ERROR, f"{ident} is kept as pass-through, but {by} already makes it",
                doc.position, env=settings.name, object=ident,
                related=(where[ident].position,) if ident in where else (),
                hint="an object is either declared or kept verbatim, once: delete the pass-through document, "
                     "or the declaration that makes it"))
            continue
        where[ident] = doc
        errors = [f for f in validate(body) if f.severity is Severity.ERROR]
        if errors:
            diags.extend(Diagnostic(f.code, f.severity, f.message,
                                    locate(doc.position.file, doc.node, f.path)[0] if doc.node is not None
                                    else doc.position, format_path(f.path), f.hint, settings.name, ident,
                                    f.istio_code) for f in errors)
            continue
        out.append(Artifact(ident, body, "", source=doc.position, node=doc.node))
    return out, diags
