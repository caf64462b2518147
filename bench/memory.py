"""Peak memory of one `meshc build`, per process and per phase: the sampler polls /proc.

    bench/memory.py ROOT [--skip-checks] [--env NAME ...] [--out DIR] [--warm] [--interval 0.05] [--json]

It runs meshc's own command line (`meshc build -C ROOT`) in a child process whose progress
messages (the phases: loading, compiling, Envoy, checking, writing; one line per environment
when the build streams them) come back through a pipe, and polls /proc every `--interval`
seconds for that process and every process below it (forked workers, the fork server and its
jobs, CUE engines): VmRSS now and VmHWM (the kernel's peak) of each. It prints the peak of the
largest single process of the build (ru_maxrss of wait4 over the build and every process it
waited for: what GNU time's %M reports), then per phase the largest RSS seen of the build
process, of a single worker, of a single CUE engine and of the whole tree, then each kind of
process's peak (VmHWM). A process that lives for less than one interval may be missed by the
sampler: its figures are lower bounds; the overall peak is exact.

A clean build (the default) removes the repository's per-user build cache
(`meshc.runtime.userstate.repo_state(ROOT)`), the record of the last build and the output folder
first; `--warm` keeps them (a second run then measures a cached build).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The child: meshc's command line with its progress messages sent to the pipe (fd in argv[1])
# instead of a terminal; everything else (gc.disable(), the API call, the printing) is the CLI's.
_DRIVER = r"""
import os, sys
fd = int(sys.argv[1])
import meshc.cli.main as cli

class Progress:
    def __init__(self):
        pass
    def __call__(self, message):
        os.write(fd, (message + "\n").encode("utf-8", "replace"))
    def done(self):
        pass

cli.Progress = Progress
os.write(fd, b"start\n")
try:
    cli.main(sys.argv[2:], standalone_mode=False)
finally:
    os.write(fd, b"exit\n")
"""


@dataclass
class Proc:
    pid: int
    role: str
    hwm_kb: int = 0
    rss_kb: int = 0  # largest VmRSS sampled


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    peak: dict[str, int] = field(default_factory=dict)  # role -> largest single-process RSS (KiB)
    tree_kb: int = 0  # largest sum over the tree


def _status(pid: int) -> tuple[int, int, int] | None:
    """(ppid, VmRSS KiB, VmHWM KiB) of a live process, None when it is gone or a kernel thread."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    ppid = rss = hwm = -1
    for line in text.splitlines():
        if line.startswith(b"PPid:"):
            ppid = int(line.split()[1])
        elif line.startswith(b"VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1])
    if rss < 0:
        return None
    return ppid, rss, hwm


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _tree(root: int) -> dict[int, tuple[int, int, int]]:
    """Every live process at or below `root`: pid -> (ppid, rss, hwm)."""
    table: dict[int, tuple[int, int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = _status(int(name))
            if found is not None:
                table[int(name)] = found
    keep = {root} if root in table else set()
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if pid not in keep and ppid in keep:
                keep.add(pid)
                grew = True
    return {pid: table[pid] for pid in keep}


def _role(pid: int, ppid: int, root: int, comm: str) -> str:
    """meshc (the build), worker (forked by it: compile units, the fork server), job (forked by
    the fork server: an environment's Envoy configuration), cue engine, or the command's name."""
    if pid == root:
        return "meshc"
    if comm.startswith("python") or comm == "meshc":
        return "worker" if ppid == root else "job"
    if comm in ("node", "cue"):
        return "cue engine"
    return comm


def measure(root: Path, args: list[str], interval: float, warm: bool, out: Path | None) -> dict[str, object]:
    from meshc.front.project import load_project
    from meshc.runtime.cache import CACHE_DIR
    from meshc.runtime.userstate import repo_state

    if not warm:
        shutil.rmtree(repo_state(root), ignore_errors=True)
        shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
        project, _ = load_project(root)
        out_root = out if out is not None else project.resolve(project.out) or root / "out"
        shutil.rmtree(out_root, ignore_errors=True)
    read, write = os.pipe()
    cmd = [sys.executable, "-c", _DRIVER, str(write), "build", "-C", str(root), *args]
    started = time.perf_counter()
    errors = tempfile.TemporaryFile()
    child = subprocess.Popen(cmd, pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=errors)
    os.close(write)
    os.set_blocking(read, False)
    procs: dict[int, Proc] = {}
    phases: list[Phase] = [Phase("start", 0.0)]
    buffer = b""
    status = None
    rusage = None
    while status is None:
        now = time.perf_counter() - started
        ready, _, _ = select.select([read], [], [], interval)
        if ready:
            try:
                chunk = os.read(read, 65536)
            except BlockingIOError:
                chunk = b""
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                name = line.decode("utf-8", "replace").strip()
                if name and name != "start":
                    phases[-1].end = now
                    phases.append(Phase(name, now))
        tree = _tree(child.pid)
        phase = phases[-1]
        total = 0
        for pid, (ppid, rss, hwm) in tree.items():
            proc = procs.get(pid)
            if proc is None:
                proc = procs[pid] = Proc(pid, _role(pid, ppid, child.pid, _comm(pid)))
            proc.rss_kb = max(proc.rss_kb, rss)
            proc.hwm_kb = max(proc.hwm_kb, hwm)
            phase.peak[proc.role] = max(phase.peak.get(proc.role, 0), rss)
            total += rss
        phase.tree_kb = max(phase.tree_kb, total)
        pid, code, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            status, rusage = code, usage
    wall = time.perf_counter() - started
    phases[-1].end = wall
    os.close(read)
    errors.seek(0)
    stderr = errors.read().decode("utf-8", "replace")
    errors.close()
    assert rusage is not None
    return {
        "command": cmd[3:],
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 2),
        "peak_kb": rusage.ru_maxrss,
        "phases": [{"phase": p.name, "start_s": round(p.start, 2), "end_s": round(p.end, 2),
                    "peak_kb": p.peak, "tree_kb": p.tree_kb} for p in phases],
        "processes": [{"pid": p.pid, "role": p.role, "peak_kb": p.hwm_kb} for p in procs.values()],
        "stderr_tail": stderr[-2000:],
    }


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def table(report: dict[str, object]) -> str:
    phases = report["phases"]
    assert isinstance(phases, list)
    roles = ["meshc", "worker", "job", "cue engine"]
    lines = [f"meshc build: exit {report['exit']}, {report['wall_s']} s, peak RSS of its largest process "
             f"{_mb(int(report['peak_kb']))} MB (ru_maxrss, as GNU time %M)", "",  # type: ignore[call-overload]
             "| phase | from s | to s | meshc MB | largest worker MB | largest job MB | largest CUE engine MB "
             "| tree MB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in phases:
        peak = p["peak_kb"]
        cells = [_mb(peak[r]) if r in peak else "" for r in roles]
        lines.append(f"| {p['phase']} | {p['start_s']} | {p['end_s']} | {' | '.join(cells)} | {_mb(p['tree_kb'])} |")
    procs = report["processes"]
    assert isinstance(procs, list)
    by_role: dict[str, list[int]] = {}
    for proc in procs:
        by_role.setdefault(proc["role"], []).append(proc["peak_kb"])
    lines += ["", "| process | count | largest peak MB (VmHWM) |", "| --- | ---: | ---: |"]
    for role, peaks in sorted(by_role.items(), key=lambda kv: -max(kv[1])):
        lines.append(f"| {role} | {len(peaks)} | {_mb(max(peaks))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--warm", action="store_true", help="keep the build cache, the record and out/")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    ns = ap.parse_args(argv)
    args = [*(["--skip-checks"] if ns.skip_checks else []), *(a for e in ns.env for a in ("--env", e)),
            *(["--out", str(ns.out)] if ns.out is not None else [])]
    report = measure(ns.root.resolve(), args, ns.interval, ns.warm, ns.out)
    print(json.dumps(report, indent=2) if ns.json else table(report))
    if report["exit"] != 0:
        print(report["stderr_tail"], file=sys.stderr)
    return 0 if report["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
