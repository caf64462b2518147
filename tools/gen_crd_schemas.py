"""Writes the CRD schemas meshc ships (compiler/meshc/data/crds-istio-<release>.json).

Run: python tools/gen_crd_schemas.py [SCHEMAS_DIR]   (default: ../shared/schemas beside the repository)

Input: the official CRD files, unchanged: istio-crds-all.yaml (every Istio CRD of one istio/api
commit, named in its header) and gateway-api-crds.yaml (Gateway API standard channel).
Output: one JSON `List` of apiextensions.k8s.io/v1 CustomResourceDefinitions holding only what
validation needs: group, kind, plural, scope, and per served version its openAPIV3Schema with
types, formats, enums, limits, required fields, list types and keys, CEL rules
(x-kubernetes-validations), preserve-unknown-fields and int-or-string markers. Description prose,
printer columns, labels and annotations are dropped. The file's `meshc` field names the sources
and their sha256, so a test can prove the shipped file is what this script makes of them.
The output is deterministic (sorted keys, no clock).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "compiler" / "meshc" / "data"
SOURCES = ("istio-crds-all.yaml", "gateway-api-crds.yaml")

# Keys of a schema node that validation reads; every other key of a node is prose or tooling.
_NODE_KEYS = {
    "type", "format", "enum", "default", "nullable", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "minItems",
    "maxItems", "uniqueItems", "minProperties", "maxProperties", "required", "properties",
    "additionalProperties", "items", "allOf", "anyOf", "oneOf", "not",
    "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-embedded-resource",
}
_RULE_KEYS = {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}


def strip_schema(node: Any) -> Any:
    """A schema node with only the keys validation needs (recursively)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _NODE_KEYS:
            continue
        if key == "properties":
            out[key] = {name: strip_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = strip_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strip_schema(sub) for sub in value]
        elif key == "x-kubernetes-validations":
            out[key] = [{k: v for k, v in rule.items() if k in _RULE_KEYS} for rule in value]
        else:
            out[key] = value
    return out


def strip_crd(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd["spec"]
    names = spec["names"]
    versions = []
    for version in spec["versions"]:
        kept: dict[str, Any] = {"name": version["name"], "served": bool(version.get("served")),
                                "storage": bool(version.get("storage"))}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            kept["schema"] = {"openAPIV3Schema": strip_schema(schema)}
        if version.get("deprecated"):
            kept["deprecated"] = True
        versions.append(kept)
    return {
        "apiVersion": crd["apiVersion"], "kind": crd["kind"], "metadata": {"name": crd["metadata"]["name"]},
        "spec": {"group": spec["group"], "scope": spec["scope"],
                 "names": {"kind": names["kind"], "plural": names["plural"],
                           "singular": names.get("singular", names["plural"]),
                           "listKind": names.get("listKind", names["kind"] + "List")},
                 "versions": versions},
    }


def source_commit(text: str) -> str:
    match = re.search(r"istio/api commit ([0-9a-f]{40})", text)
    if match is None:
        raise SystemExit("istio-crds-all.yaml: no `istio/api commit <sha>` line in its header")
    return match.group(1)


def generate(schemas: Path, release: str) -> tuple[str, bytes]:
    items: list[dict[str, Any]] = []
    sources = []
    commit = ""
    for name in SOURCES:
        raw = (schemas / name).read_bytes()
        text = raw.decode("utf-8")
        if name == "istio-crds-all.yaml":
            commit = source_commit(text)
        sources.append({"file": name, "sha256": hashlib.sha256(raw).hexdigest(),
                        "header": text.splitlines()[0].lstrip("# ").strip()})
        for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                items.append(strip_crd(doc))
    items.sort(key=lambda c: c["metadata"]["name"])
    data = {"apiVersion": "v1", "kind": "List",
            "meshc": {"istio": release, "istioApiCommit": commit, "sources": sources,
                      "generator": "tools/gen_crd_schemas.py"},
            "items": items}
    return f"crds-istio-{release}.json", orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


# The Istio release the shipped istio/api commit belongs to: its CRDs carry 1.31's fields
# (DestinationRule zoneAwareLbSetting, retryBudget budgetInterval; shared/reference/istio-releases.md).
RELEASE = "1.31"


def main(argv: list[str]) -> int:
    schemas = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "schemas"
    name, data = generate(schemas, RELEASE)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / name).write_bytes(data)
    print(f"wrote {OUT_DIR / name} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
