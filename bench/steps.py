"""The measured steps of the benchmark, each a whole process run K times after a warm-up.

A step never raises: `guarded` turns any exception into a failed `StepResult` with its message, and
a command that exits with an unexpected code is recorded as failed with the tail of its stderr.
Steps that need a built bundle build one first (untimed); steps that change the estate restore it.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import measure
from meshc.runtime.userstate import repo_state

BENCH = Path(__file__).resolve().parent
CACHE_DIR = ".meshc-cache"


@dataclass
class StepResult:
    name: str
    label: str
    status: str = "ok"  # ok | failed | n/a
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    note: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, run: measure.RunResult) -> None:
        self.walls.append(run.wall)
        if run.cpu is not None:
            self.cpus.append(run.cpu)
        if run.rss_kb is not None:
            self.rss_kb.append(run.rss_kb)

    def fail(self, note: str, error: str = "") -> "StepResult":
        """Failed: a one-line `note` for the table, the details (stderr, traceback) in `error`."""
        first = note.strip().splitlines()[0] if note.strip() else "failed"
        self.status, self.note, self.error = "failed", first[:160], error[-4000:]
        return self

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.status == "ok" and self.walls else None

    def summary(self) -> dict[str, Any]:
        ok = self.status == "ok" and bool(self.walls)
        return {"label": self.label, "status": self.status, "runs": len(self.walls),
                "median_s": self.median, "min_s": min(self.walls) if ok else None,
                "max_s": max(self.walls) if ok else None, "walls_s": self.walls,
                "cpu_median_s": statistics.median(self.cpus) if ok and self.cpus else None,
                "peak_rss_mib": max(self.rss_kb) / 1024 if self.rss_kb else None,
                "note": self.note, "error": self.error, **self.extra}


@dataclass
class Bench:
    """Where things are and how to run them; shared by every step."""

    estate: Path
    head: Path
    work: Path
    meshc: str
    repeat: int = 3
    warmup: int = 1
    timeout: float = 7200.0
    services: int = 0  # of the main estate

    def meshc_cmd(self, *args: str) -> list[str]:
        return [self.meshc, *args]


def guarded(name: str, label: str, fn: Callable[[StepResult], None]) -> StepResult:
    res = StepResult(name, label)
    try:
        fn(res)
    except Exception as exc:  # noqa: BLE001 - a step failure is a result, not a crash
        res.fail(f"{type(exc).__name__}: {exc}", f"{exc}\n\n{traceback.format_exc()}")
    return res


def timed(b: Bench, res: StepResult, cmd: Sequence[str], cwd: Path | None = None,
          before: Callable[[int], None] | None = None, ok: tuple[int, ...] = (0,),
          stdout: Path | None = None, repeat: int | None = None, warmup: int | None = None) -> bool:
    """Warm-up runs, then the measured ones; stops at the first unexpected exit code."""
    warm = b.warmup if warmup is None else warmup
    for i in range(warm + (b.repeat if repeat is None else repeat)):
        if before is not None:
            before(i)
        run = measure.run(cmd, cwd, stdout, b.timeout)
        if run.returncode not in ok:
            what = "timed out" if run.returncode == -9 else f"exit code {run.returncode}"
            res.fail(f"{what}: {' '.join(map(str, cmd[1:3]))}: {_first_error(run.stderr_tail)}",
                     run.stderr_tail)
            return False
        if i >= warm:
            res.add(run)
    return True


def _first_error(stderr: str) -> str:
    """The first line that reads like an error, for the one-line note."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")


def clean(root: Path, out: bool = True) -> None:
    """Remove the bundle and meshc's caches of an estate: the next build starts from nothing. The
    build cache lives outside the repository, in the per-user state folder of the estate
    (meshc.runtime.userstate.repo_state): leaving it would time a warm build as a clean one."""
    if out:
        shutil.rmtree(root / "out", ignore_errors=True)
    shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
    shutil.rmtree(repo_state(root), ignore_errors=True)


def ensure_built(b: Bench) -> None:
    """An up-to-date bundle in estate/out (an untimed `meshc build`); raises when it fails."""
    proc = subprocess.run(b.meshc_cmd("build", "-C", str(b.estate)), capture_output=True, text=True,
                          timeout=b.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"meshc build failed (exit {proc.returncode}): {_first_error(proc.stderr)}"
                           f"\n{proc.stderr[:1500]}\n[...]\n{proc.stderr[-1500:]}")


def bundle_stats(out: Path) -> dict[str, int]:
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"output_files": len(files), "output_bytes": sum(p.stat().st_size for p in files)}


def help_text(b: Bench, *command: str) -> str | None:
    """`meshc <command> --help`, or None when meshc has no such command."""
    proc = subprocess.run(b.meshc_cmd(*command, "--help"), capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def check_layers(b: Bench) -> list[str]:
    """The layers `meshc check --layer` accepts (empty when the option does not exist yet)."""
    text = help_text(b, "check") or ""
    found = re.search(r"--layer\s+\[([a-z|_-]+)\]", text)
    return found.group(1).split("|") if found else []


def edit_one_file(path: Path, original: str, n: int) -> None:
    """Change one value (the first service's description) in a base declaration file."""
    edited, count = re.subn(r"^(  description: ).*$", rf"\g<1>bench edit {n}", original, count=1,
                            flags=re.M)
    if not count:
        raise RuntimeError(f"no description line to edit in {path}")
    path.write_text(edited)


def python() -> str:
    return sys.executable
