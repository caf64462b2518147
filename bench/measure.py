"""Run one command as a whole process and measure it: wall time, peak RSS, exit code, output.

Peak RSS comes from GNU time (`/usr/bin/time -f %M -o FILE`) when it is installed, else from a
tiny Python wrapper that runs the command and reports its own RUSAGE_CHILDREN maxrss (a fresh
wrapper per run, so the maximum covers this command only). Either way it is the peak of the
largest single process of the command's tree (forked workers are not added up).
Wall time is taken around the process by the caller's clock (perf_counter), or inside the wrapper.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

GNU_TIME = "/usr/bin/time"
_WRAPPER = (
    "import resource,subprocess,sys,time\n"
    "t=time.perf_counter();rc=subprocess.call(sys.argv[2:]);t=time.perf_counter()-t\n"
    "u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1],'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime} {t}')\n"
    "sys.exit(rc)\n")


@dataclass
class RunResult:
    wall: float
    cpu: float | None  # user + system seconds of the command and its waited-for children
    rss_kb: int | None
    returncode: int
    stdout_bytes: int
    stderr_tail: str
    stdout_path: Path | None = None


@functools.lru_cache(maxsize=1)
def has_gnu_time() -> bool:
    if not os.access(GNU_TIME, os.X_OK):
        return False
    probe = subprocess.run([GNU_TIME, "-f", "%M", "true"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stderr.strip().isdigit()


def _tail(path: Path, limit: int = 2000) -> str:
    """The start and the end of a stderr file (the message is often first, a stack trace last)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) > 2 * limit:
        data = data[:limit] + b"\n[...]\n" + data[-limit:]
    return data.decode("utf-8", "replace")


def _parse_report(path: Path, wrapper: bool) -> tuple[int | None, float | None, float | None]:
    """(maxrss KiB, cpu s, inner wall s or None) from the report file. GNU time writes
    "maxrss user sys" (after a "Command exited with non-zero status" line on failure), the
    wrapper "maxrss cpu wall"; only the last line is read."""
    try:
        numbers = [float(x) for x in path.read_text().strip().splitlines()[-1].split()]
        if len(numbers) != 3:
            return None, None, None
    except (OSError, IndexError, ValueError):
        return None, None, None
    if wrapper:
        return int(numbers[0]), numbers[1], numbers[2]
    return int(numbers[0]), numbers[1] + numbers[2], None


def run(cmd: Sequence[str], cwd: Path | None = None, keep_stdout: Path | None = None,
        timeout: float = 7200.0, env: dict[str, str] | None = None) -> RunResult:
    """Run `cmd` once; stdout goes to `keep_stdout` (or is counted and dropped)."""
    with tempfile.TemporaryDirectory(prefix="meshc-bench-") as tmp:
        report, err = Path(tmp) / "rusage", Path(tmp) / "stderr"
        out = keep_stdout or Path(tmp) / "stdout"
        wrapper = not has_gnu_time()
        full = ([sys.executable, "-c", _WRAPPER, str(report), *cmd] if wrapper
                else [GNU_TIME, "-f", "%M %U %S", "-o", str(report), *cmd])
        with open(out, "wb") as fo, open(err, "wb") as fe:
            start = time.perf_counter()
            code = _wait(subprocess.Popen(full, cwd=cwd, stdout=fo, stderr=fe, start_new_session=True,
                                          env={**os.environ, **(env or {})}), timeout)
            wall = time.perf_counter() - start
        rss, cpu, inner = _parse_report(report, wrapper)
        return RunResult(inner if inner is not None else wall, cpu, rss, code, out.stat().st_size,
                         _tail(err), keep_stdout)


def _wait(proc: "subprocess.Popen[bytes]", timeout: float) -> int:
    """Exit code of `proc`; on timeout its whole process group is killed and -9 returned."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


def method() -> str:
    return "GNU time %M" if has_gnu_time() else "python wrapper (RUSAGE_CHILDREN)"
