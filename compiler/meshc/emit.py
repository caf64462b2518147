"""Pass `emit`: artifacts of one environment -> `Bundle` (path -> bytes), and the atomic writer.

Layout of out/<env>/ (docs/bundle.md): `<namespace>/<service>.yaml` holds the objects of one
service (ServiceEntry, WorkloadEntries, DestinationRules, in that order); `kustomization.yaml`
lists every manifest file; `index.json` maps each object identity to its file, the sha256 of its
YAML document and the declaration it came from. Emit alone decides formatting: canonical key
order, kubectl-style YAML, LF line ends. Same input, same bytes.
Writing is atomic: a new bundle is written beside the old one and swapped in by rename, so a
failed or interrupted build leaves the previous bundle untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson

from .model import Artifact
from .yamlout import dump

KIND_ORDER = {"ServiceEntry": 0, "WorkloadEntry": 1, "DestinationRule": 2}
_TOP = ("apiVersion", "kind", "metadata", "spec")
_META = ("name", "namespace", "labels", "annotations")
_SPEC = ("host", "hosts", "addresses", "ports", "location", "resolution", "endpoints",
         "workloadSelector", "address", "labels", "locality", "weight", "network",
         "serviceAccount", "trafficPolicy", "subsets", "exportTo")


@dataclass(frozen=True)
class Spooled:
    """A bundle file already on disk, written by the worker that made it (the Envoy bootstrap of a
    large estate: ~130 MB at 10,000 services, not worth holding or piping). `write_bundle` links
    it into place; anything else reads it."""

    path: str
    sha256: str

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


def spool(directory: Path, name: str, data: bytes, sha256: str) -> Spooled:
    """`data` written to directory/name; `sha256` is its digest, which the caller already has."""
    path = directory / name
    path.write_bytes(data)
    return Spooled(str(path), sha256)


def content(data: "bytes | Spooled") -> bytes:
    return data.read() if isinstance(data, Spooled) else data


@dataclass(frozen=True)
class Bundle:
    env: str
    files: dict[str, "bytes | Spooled"] = field(default_factory=dict)


def _ordered(d: Mapping[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out = {k: d[k] for k in order if k in d}
    for k in sorted(d):
        if k not in out:
            out[k] = d[k]
    return out


def canonical(body: Mapping[str, Any]) -> dict[str, Any]:
    out = _ordered(body, _TOP)
    if isinstance(out.get("metadata"), Mapping):
        out["metadata"] = _ordered(out["metadata"], _META)
    if isinstance(out.get("spec"), Mapping):
        out["spec"] = _ordered(out["spec"], _SPEC)
    return out


def service_file(namespace: str, service: str) -> str:
    return f"{namespace}/{service}.yaml"


def render_service(artifacts: list[Artifact]) -> tuple[bytes, list[tuple[Artifact, str]]]:
    """One service's objects as a multi-document YAML file, with each document's sha256."""
    ordered = sorted(artifacts, key=lambda a: (KIND_ORDER.get(a.identity.kind, 9), a.identity.name))
    docs: list[str] = []
    shas: list[tuple[Artifact, str]] = []
    for art in ordered:
        text = dump(canonical(art.body))
        docs.append(text)
        shas.append((art, hashlib.sha256(text.encode()).hexdigest()))
    return ("---\n" + "---\n".join(docs)).encode(), shas


def index_entry(art: Artifact, file: str, sha: str, source: str) -> dict[str, str]:
    ident = art.identity
    return {"apiVersion": str(art.body.get("apiVersion", "")), "kind": ident.kind,
            "namespace": ident.namespace, "name": ident.name, "file": file, "sha256": sha,
            "service": art.service, "source": source}


ENVOY_FILE = "envoy/bootstrap.json"


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def finish(env: str, files: dict[str, bytes], entries: Iterable[dict[str, str]],
           extra: Mapping[str, Any] | None = None, other: Mapping[str, bytes] | None = None) -> Bundle:
    """Add kustomization.yaml and index.json to the manifest files of one environment; `other`
    files (envoy/, iptables/) are part of the bundle but not Kubernetes resources."""
    manifests = sorted(files)
    kust = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": manifests}
    index = {"meshcBundle": 1, "environment": env,
             "objects": sorted(entries, key=lambda e: (e["kind"], e["namespace"], e["name"])),
             **(extra or {})}
    out = {**files, **(other or {})}
    out["kustomization.yaml"] = dump(kust).encode()
    out["index.json"] = orjson.dumps(index, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    return Bundle(env, dict(sorted(out.items())))


def write_bundle(out_root: Path, bundle: Bundle,
                 written: dict[str, dict[str, str]] | None = None) -> Path:
    """Write out_root/<env>/ atomically (write beside, then swap by rename).

    `written` remembers the sha256 of every file of the bundle last written there; a file whose
    bytes did not change is hard-linked from the previous bundle instead of written again."""
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / bundle.env
    tmp = out_root / f".{bundle.env}.new-{os.getpid()}"
    old = out_root / f".{bundle.env}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    key = str(final.resolve())
    before = (written or {}).get(key, {})
    after: dict[str, str] = {}
    try:
        made: set[Path] = set()
        for rel, data in bundle.files.items():
            path = tmp / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            spooled = isinstance(data, Spooled)
            after[rel] = sha = data.sha256 if spooled else hashlib.sha256(data).hexdigest()
            if before.get(rel) == sha and _link(final / rel, path):
                continue
            if spooled:
                if not _link(Path(data.path), path):
                    shutil.copyfile(data.path, path)
            else:
                path.write_bytes(data)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if written is not None:
        written[key] = after
    return final


def _link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False


def read_bundle(directory: Path) -> Bundle:
    files = {p.relative_to(directory).as_posix(): p.read_bytes()
             for p in sorted(directory.rglob("*")) if p.is_file()}
    return Bundle(directory.name, files)
