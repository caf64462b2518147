"""Pass `emit`: artifacts of one environment -> `Bundle` (path -> bytes), and the atomic writer.

Layout of out/<env>/ (docs/bundle.md): `<namespace>/<service>.yaml` holds the objects of one
service (ServiceEntry, WorkloadEntries, DestinationRules, in that order); `kustomization.yaml`
lists every manifest file; `index.json` maps each object identity to its file, the sha256 of its
YAML document and the declaration it came from. Emit alone decides formatting: canonical key
order, kubectl-style YAML, LF line ends. Same input, same bytes.
Writing is atomic: a new bundle is written beside the old one (`stage_bundle`) and exchanged
with it in one rename (`swap_staged`, `outdir.swap_in`), so out/<env> is at every instant the
whole previous or the whole new bundle, whatever interrupts the build; `meshc build` stages every
environment's bundle as it is compiled and swaps them all in at the end (emit/write.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from meshc.files.yamlout import dump
from meshc.model.bundle import Bundle, Spooled
from meshc.model.core import Artifact
from meshc.model.ids import ObjectId
from meshc.runtime import faults
from meshc.runtime.outdir import is_bundle, remove, swap_in

KIND_ORDER = {"ServiceEntry": 0, "WorkloadEntry": 1, "DestinationRule": 2, "Gateway": 3, "VirtualService": 4,
              "AuthorizationPolicy": 5, "BackendTLSPolicy": 6, "Sidecar": 7}
_TOP = ("apiVersion", "kind", "metadata", "spec")
_META = ("name", "namespace", "labels", "annotations")
_SPEC = ("host", "hosts", "addresses", "ports", "location", "resolution", "endpoints",
         "workloadSelector", "address", "labels", "locality", "weight", "network",
         "serviceAccount", "trafficPolicy", "subsets", "exportTo")


def spool(directory: Path, name: str, data: bytes | Iterable[bytes], sha256: str = "",
          also: Any = None) -> Spooled:
    """`data` (bytes, or pieces of them: `json_pieces`) written to directory/name; `sha256` is its
    digest when the caller already has it, else it is computed here; `also`, a hash object, is
    updated with the same bytes."""
    path = directory / name
    faults.point("spool.write")
    if isinstance(data, bytes) and sha256 and also is None:
        path.write_bytes(data)
    else:
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            for piece in [data] if isinstance(data, bytes) else data:
                fh.write(piece)
                digest.update(piece)
                if also is not None:
                    also.update(piece)
        sha256 = sha256 or digest.hexdigest()
    faults.point("spool.written")
    return Spooled(str(path), sha256)


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


def shared_file(ident: ObjectId) -> str:
    """The file of an object of the whole environment (no service): `_` keeps it apart from
    service files, whose names are DNS labels."""
    return f"{ident.namespace}/_{ident.kind.lower()}-{ident.name}.yaml"


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




_JSON = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON) + b"\n"


def json_pieces(value: Any, depth: int = 2, level: int = 0) -> Iterator[bytes]:
    """`json_bytes(value)` in pieces whose concatenation is the same bytes: the objects and arrays
    of the first `depth` levels are written here, each value below them by orjson on its own
    (re-indented), so a large document (the shared clusters file) is never one buffer."""
    if level == 0:
        yield from json_pieces(value, depth, 1)
        yield b"\n"
        return
    pad = b"  " * level
    if depth <= 0 or not isinstance(value, (dict, list)) or not value:
        yield orjson.dumps(value, option=_JSON).replace(b"\n", b"\n" + pad[2:])
        return
    if isinstance(value, dict):
        items = [(orjson.dumps(key) + b": ", value[key]) for key in sorted(value)]
    else:
        items = [(b"", item) for item in value]
    yield b"{\n" if isinstance(value, dict) else b"[\n"
    for n, (head, item) in enumerate(items):
        yield (b",\n" if n else b"") + pad + head
        yield from json_pieces(item, depth - 1, level + 1)
    yield b"\n" + pad[2:] + (b"}" if isinstance(value, dict) else b"]")


def finish(env: str, files: dict[str, bytes], entries: Iterable[dict[str, str]],
           extra: Mapping[str, Any] | None = None, other: Mapping[str, bytes | Spooled] | None = None) -> Bundle:
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
    """Write out_root/<env>/ atomically (`write_bundle_files`); `written`, when given, receives
    the sha256 of every file under the key of the bundle's resolved path."""
    final, shas = write_bundle_files(out_root, bundle)
    if written is not None:
        written[str(final.resolve())] = shas
    return final


def write_bundle_files(out_root: Path, bundle: Bundle) -> tuple[Path, dict[str, str]]:
    """Write out_root/<env>/ atomically: the new bundle is written beside the old one
    (`stage_bundle`) and swapped in (`swap_staged`); the final path and the sha256 of every file."""
    staged = stage_bundle(out_root, bundle)
    return swap_staged(staged), staged.shas


@dataclass(frozen=True)
class Staged:
    """A bundle written beside out/<env> (`folder`: out/.<env>.new-<pid>), waiting to be swapped
    in; `shas`: the sha256 of every file."""

    env: str
    folder: Path
    final: Path
    shas: dict[str, str]


def stage_bundle(out_root: Path, bundle: Bundle) -> Staged:
    """Write the bundle's files beside out_root/<env> (which is not touched); nothing is left when
    this raises.

    A file whose bytes did not change is hard-linked from the previous bundle instead of written
    again, but only after its current content is compared with the new bytes (a bundle file
    edited by hand is never carried over), and only from a folder meshc made. Spooled files are
    linked from the spool."""

    env = bundle.env
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / env
    tmp = out_root / f".{env}.new-{os.getpid()}"
    faults.point("bundle.begin", env)
    remove(tmp)
    after: dict[str, str] = {}
    try:
        faults.point("bundle.mkdir", env)
        tmp.mkdir()
        # plain strings and fds below: ~4,000 files per environment at 1,000 services
        top = str(tmp) + os.sep
        ours = final.is_dir() and not final.is_symlink() and is_bundle(final)
        previous = str(final) + os.sep if ours else None
        made = {""}
        for rel, data in bundle.files.items():
            folder = rel.rpartition("/")[0]
            if folder not in made:
                os.makedirs(top + folder, exist_ok=True)
                made.add(folder)
            path = top + rel
            if isinstance(data, Spooled):
                after[rel] = data.sha256
                faults.point("bundle.spool", env)
                if not _link(data.path, path):
                    shutil.copyfile(data.path, path)
                continue
            after[rel] = hashlib.sha256(data).hexdigest()
            if previous is not None and _reuse(previous + rel, path, data):
                faults.point("bundle.link", env)
                continue
            faults.point("bundle.file", env)
            _write(path, data)
            faults.point("bundle.file.written", env)
        faults.point("bundle.files.done", env)
    except BaseException:
        discard_staged(tmp)
        raise
    return Staged(env, tmp, final, after)


def swap_staged(staged: Staged) -> Path:
    """Swap a staged bundle in at out_root/<env> (`outdir.swap_in`: out/<env> is at every instant
    the whole previous or the whole new bundle); the final path. Nothing staged is left when
    this raises."""
    old = staged.final.parent / f".{staged.env}.old-{os.getpid()}"
    try:
        swap_in(staged.folder, staged.final, old, staged.env)
    except BaseException:
        discard_staged(staged.folder)
        raise
    return staged.final


def discard_staged(folder: Path) -> None:
    """Remove a staged folder (a bundle that will not be swapped in)."""
    try:
        remove(folder)
    except OSError:
        pass  # a leftover for the next build to remove


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _reuse(src: str, dst: str, data: bytes) -> bool:
    """Hard-link src to dst when src holds exactly `data` now (checked on the linked file, so on
    the very inode that goes into the new bundle)."""
    try:
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        return False
    try:
        fd = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)
        try:
            same = _read(fd, len(data) + 1) == data
        finally:
            os.close(fd)
        if same:
            return True
    except OSError:
        pass
    os.unlink(dst)
    return False


def _read(fd: int, size: int) -> bytes:
    """Up to `size` bytes from fd (fewer only at the end of the file)."""
    parts = []
    while size > 0 and (chunk := os.read(fd, size)):
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _link(src: str, dst: str) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False


def read_bundle(directory: Path) -> Bundle:
    files: dict[str, bytes | Spooled] = {p.relative_to(directory).as_posix(): p.read_bytes()
                                         for p in sorted(directory.rglob("*")) if p.is_file()}
    return Bundle(directory.name, files)
