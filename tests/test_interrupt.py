"""Output that is always what the inputs say, whatever interrupts a build.

A build of a copy of the example estate is SIGKILLed at every named point of the write / record /
cache / spool / swap / lock path (`MESHC_FAULT=<point>[@env][:n]`, `meshc.faults.POINTS`), with
the inputs changed between builds (A <-> B: one service edited, one added). After each kill:
every out/<env> is wholly the A or the B bundle (compared with reference bundles built cleanly in
folders of their own) and no process of the killed build is left; the next build, with the edit
kept and with it reverted, gives exactly the clean bundle, says "up to date" only when the bundles
on disk already are, and leaves nothing behind (no .new-/.old- folders, spool folders or
temporary files). Also: deleted and hand-edited bundle files are repaired, concurrent builds,
unwritable output and cache folders, the two-rename fallback of the swap, leftovers of live and
dead processes, and forked workers dying with their parent.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from meshc.runtime import faults
from meshc.runtime import outdir
from meshc.runtime.userstate import repo_state

REPO = Path(__file__).resolve().parents[1]
ESTATE = ("environments", "meshc.yaml", "policies", "waivers.yaml", "templates", ".meshc-diffignore")
EDITED = "environments/base/legacy.yaml"
ADDED = "environments/base/zz-added.yaml"
ADDED_TEXT = """services:
  - name: audit-sink
    owner: team-security
    description: Audit log sink (added by the B side of the interrupt tests)
    hosts: [audit.sink.example.org]
    location: external
    resolution: dns
    ports:
      - number: 443
        protocol: HTTPS
        name: https
"""
Tree = dict[str, dict[str, bytes]]


# ------------------------------------------------------------------------------- helpers

def make_estate(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ESTATE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        else:
            shutil.copy2(src, target / name)
    return target


def set_side(root: Path, side: str) -> None:
    """Inputs A (the example estate) or B (a connect timeout changed, a service added)."""
    text = (REPO / EDITED).read_text()
    if side == "B":
        assert "connectTimeout: 5s" in text
        text = text.replace("connectTimeout: 5s", "connectTimeout: 7s")
        (root / ADDED).write_text(ADDED_TEXT)
    else:
        (root / ADDED).unlink(missing_ok=True)
    (root / EDITED).write_text(text)


def other(side: str) -> str:
    return "A" if side == "B" else "B"


def meshc(root: Path, *args: str, fault: str = "", full: bool = False,
          extra: dict[str, str] | None = None, timeout: float = 120,
          runner: "Zygote | None" = None) -> subprocess.CompletedProcess[str]:
    """`meshc build` on root as a process of its own session (a new process, or one forked by
    `runner` with meshc already imported); no process of that session may outlive it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHC_FAULT")}
    env.update(extra or {})
    if fault:
        env["MESHC_FAULT"] = fault
    cmd = ["build", "-C", str(root), *args] + ([] if full else ["--skip-checks"])
    if runner is not None:
        pid, code, out, err = runner.run(cmd, env)
    else:
        proc = subprocess.Popen([sys.executable, "-m", "meshc", *cmd], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = proc.communicate(timeout=timeout)
        pid, code = proc.pid, proc.returncode
    assert not session_left(pid), f"processes of `meshc {' '.join(cmd)}` (fault {fault}) outlived it"
    return subprocess.CompletedProcess(cmd, code, out, err)


ZYGOTE = r"""
import importlib, json, os, sys, traceback
import meshc.cli.main, meshc.runtime.faults

reply = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:  # one meshc process: its own session, environment, output files
        code = 1
        try:
            os.setsid()
            os.environ.clear()
            os.environ.update(req["env"])
            importlib.reload(meshc.runtime.faults)  # armed from this process's environment, as at start-up
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, path in ((1, req["out"]), (2, req["err"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            try:
                meshc.cli.main.main(args=req["args"], prog_name="meshc", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    reply.write(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")
    reply.flush()
"""


class Zygote:
    """A Python process with meshc imported that forks one process per build (a build costs
    ~0.15 s; starting Python and importing meshc as much again)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str], env: dict[str, str]) -> tuple[int, int, str, str]:
        out, err = self.scratch / "stdout", self.scratch / "stderr"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"args": args, "env": env, "out": str(out), "err": str(err)}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["pid"], answer["code"], out.read_text(), err.read_text()

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def session_left(sid: int, wait: float = 5.0) -> list[str]:
    """Live processes (not zombies) of the session `sid` (the build's own), after up to `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
                left.append(f"{entry}: {stat[:80]}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def tree(out: Path) -> Tree:
    """Every bundle folder under out (hidden names excluded) -> relative path -> bytes."""
    found: Tree = {}
    if not out.is_dir():
        return found
    for env in sorted(out.iterdir()):
        if env.name.startswith(".") or not env.is_dir():
            continue
        found[env.name] = {p.relative_to(env).as_posix(): p.read_bytes()
                           for p in sorted(env.rglob("*")) if p.is_file()}
    return found


def leftovers(root: Path) -> list[str]:
    """Anything a finished build must not leave: temporary folders in out/, spool folders and
    temporary files in .meshc-cache/ (and builds/) and in the repository's state folder (the
    build cache, per user: meshc.userstate)."""
    found = [p.name for p in (root / "out").iterdir() if p.name.startswith(".")] if (root / "out").is_dir() else []
    cache = root / ".meshc-cache"
    if cache.is_dir():
        found += [p.name for p in cache.iterdir() if p.name not in {".gitignore", "builds"}]
        if (cache / "builds").is_dir():
            found += [p.name for p in (cache / "builds").iterdir() if not p.name.endswith(".json")
                      or ".tmp-" in p.name]
    state = repo_state(root)
    if state.is_dir():
        found += [f"state/{p.name}" for p in state.iterdir() if p.name not in {"root", "state.pickle"}]
    return found


UP_TO_DATE = "up to date"


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:
    """The A and B bundles, each built cleanly in a folder of its own."""
    out: dict[str, Tree] = {}
    for side in ("A", "B"):
        root = make_estate(tmp_path_factory.mktemp("ref") / side)
        set_side(root, side)
        run = meshc(root)
        assert run.returncode == 0, run.stderr
        out[side] = tree(root / "out")
    assert out["A"].keys() == out["B"].keys() == {"dev", "edge", "prod", "staging"}
    for env in out["A"]:
        assert out["A"][env] != out["B"][env]
        assert "egress-dev/audit-sink.yaml" in out["B"]["dev"]
    return out


def whole(root: Path, refs: dict[str, Tree], allow_missing: bool = False) -> list[str]:
    """Problems: an out/<env> that is neither wholly the A nor wholly the B bundle."""
    problems = []
    got = tree(root / "out")
    for env in refs["A"]:
        if env not in got:
            if not allow_missing:
                problems.append(f"out/{env} is missing")
        elif got[env] not in (refs["A"][env], refs["B"][env]):
            diff = sorted(set(got[env]) ^ set(refs["A"][env]))[:3]
            problems.append(f"out/{env} is a mix of A and B (or neither): {diff}")
    return problems


def after_kill_build(root: Path, refs: dict[str, Tree], side: str, what: str, full: bool = False,
                     runner: Zygote | None = None) -> list[str]:
    """Build `side` after a kill: exactly the clean bundle, 'up to date' only if it already was,
    nothing left behind."""
    before = tree(root / "out")
    run = meshc(root, full=full, runner=runner)
    problems = []
    if run.returncode != 0 or "Traceback" in run.stderr:
        return [f"{what}: build {side} failed ({run.returncode}): {run.stderr[-800:]}"]
    if tree(root / "out") != refs[side]:
        problems.append(f"{what}: build {side} did not give the clean {side} bundle")
    if UP_TO_DATE in run.stderr and before != refs[side]:
        problems.append(f"{what}: build {side} said up to date while out/ held something else")
    if left := leftovers(root):
        problems.append(f"{what}: left behind after build {side}: {left}")
    return problems


def kill_at(root: Path, fault: str, refs: dict[str, Tree], full: bool = False,
            extra: dict[str, str] | None = None, allow_missing: bool = False,
            runner: Zygote | None = None) -> list[str]:
    run = meshc(root, fault=fault, full=full, extra=extra, runner=runner)
    if run.returncode != -signal.SIGKILL:
        return [f"{fault}: the build was not killed (exit {run.returncode}): the point was not reached? "
                f"{run.stderr[-500:]}"]
    return [f"{fault}: {p}" for p in whole(root, refs, allow_missing)]


# ------------------------------------------------------------------------------- points

def _source_points() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "compiler" / "meshc").rglob("*.py"):
        names.update(re.findall(r'faults\.point\(\s*"([^"]+)"', path.read_text()))
    names.update(n + ".done" for n in ("clean.out", "clean.cache"))  # `fault + ".done"`
    names.update(("clean.out", "clean.cache"))
    return names


def test_every_point_in_the_code_is_listed_and_the_hook_is_inert_unset() -> None:
    in_code = _source_points()
    assert in_code == set(faults.POINTS), sorted(in_code ^ set(faults.POINTS))
    assert len(faults.POINTS) >= 40
    if faults._SPEC is None:  # the test process itself runs unarmed
        faults.point("lock.open")
        faults.point("bundle.file", "prod")


# Points reached by a build that changes the inputs (A <-> B), over an existing bundle; where a
# point is reached once per environment or per file, variants narrow it (@env, :n).
CHANGE_POINTS = [p for p in faults.POINTS if not p.startswith(("clean.", "swap.first", "swap.fallback"))
                 and p not in ("cache.gitignore", "uptodate.verify")] + [
    "bundle.file@prod:3", "bundle.link@staging:2", "bundle.spool@dev", "bundle.files.done@prod",
    "swap.exchange@staging", "swap.exchanged@prod", "swap.exchanged@staging", "swap.old.delete@prod",
    "build.env.written@prod", "cache.chunk:4", "spool.write:2", "spool.written:3",
    "bundle.file.written:7", "bundle.mkdir@staging", "swap.done@dev",
]
# with the full checks (CUE helpers, schema, envoy layer): a few
FULL_POINTS = ["build.checked", "cache.chunk:2", "swap.exchanged@prod", "record.tmp.written", "build.done"]


def _change_cycle(root: Path, points: list[str], refs: dict[str, Tree], full: bool = False) -> list[str]:
    """For each point, from a clean build of one side: change the inputs to the other side, build
    killed at the point; then, from a copy of that killed state put back at the same path (the
    record is per output path), build once with the edit reverted and once with it kept."""
    problems: list[str] = []
    runner = Zygote(root.with_name(root.name + "-io"))
    try:
        side = "A"
        set_side(root, side)
        first = meshc(root, full=full, runner=runner)
        assert first.returncode == 0, first.stderr
        killed = root.with_name(root.name + "-killed")
        for point in points:
            new = other(side)
            set_side(root, new)
            problems += kill_at(root, point, refs, full, runner=runner)
            shutil.copytree(root, killed, symlinks=True)
            set_side(root, side)
            problems += after_kill_build(root, refs, side, f"{point} (edit reverted)", full, runner)
            shutil.rmtree(root)
            killed.rename(root)
            problems += after_kill_build(root, refs, new, f"{point} (edit kept)", full, runner)
            side = new
    finally:
        runner.close()
    return problems


def test_kill_at_every_point_of_a_changing_build(tmp_path: Path, refs: dict[str, Tree]) -> None:
    halves = [CHANGE_POINTS[0::2], CHANGE_POINTS[1::2]]
    roots = [make_estate(tmp_path / f"w{i}") for i in range(len(halves))]
    with ThreadPoolExecutor(len(halves)) as pool:
        results = list(pool.map(lambda a: _change_cycle(a[0], a[1], refs), zip(roots, halves)))
    problems = [p for r in results for p in r]
    assert not problems, "\n".join(problems)
    assert len(CHANGE_POINTS) >= 50


def test_kill_at_points_of_a_full_build(tmp_path: Path, refs: dict[str, Tree]) -> None:
    """Full builds (every check layer, CUE helpers running) as new processes, not forked."""
    root = make_estate(tmp_path / "full")
    problems: list[str] = []
    side = "A"
    set_side(root, side)
    assert meshc(root, full=True).returncode == 0
    for point in FULL_POINTS:
        side = other(side)
        set_side(root, side)
        problems += kill_at(root, point, refs, full=True)
        problems += after_kill_build(root, refs, side, f"{point} (full build)", full=True)
    assert not problems, "\n".join(problems)


def test_kill_at_points_reached_only_in_some_states(tmp_path: Path, refs: dict[str, Tree]) -> None:
    """The first build (no bundle yet), leftovers to clean, a missing cache .gitignore, a build
    with nothing changed, and the two-rename fallback of the swap."""
    root = make_estate(tmp_path / "some")
    runner = Zygote(tmp_path / "io")
    problems: list[str] = []

    def cycle(side: str, point: str, what: str, **kw: object) -> None:
        set_side(root, side)
        nonlocal problems
        problems += kill_at(root, point, refs, runner=runner, **kw)  # type: ignore[arg-type]
        problems += after_kill_build(root, refs, side, f"{point} ({what})", runner=runner)

    try:
        for point in ("swap.first", "swap.first@staging", "lock.acquired", "bundle.file:2"):
            shutil.rmtree(root / "out", ignore_errors=True)
            shutil.rmtree(root / ".meshc-cache", ignore_errors=True)
            cycle("B", point, "first build", allow_missing=True)
        dead = _dead_pid()
        side = "B"
        for point in ("clean.out", "clean.out.done", "clean.cache", "clean.cache.done"):
            (root / "out" / f".prod.new-{dead}" / "egress").mkdir(parents=True)
            (root / "out" / f".dev.old-{dead}").mkdir()
            (root / ".meshc-cache" / f".meshc-spool-{dead}-x1y2").mkdir()
            (root / ".meshc-cache" / f"state.tmp-{dead}").write_bytes(b"partial")
            (root / ".meshc-cache" / "builds" / f"0123.json.tmp-{dead}").write_bytes(b"{")
            (repo_state(root) / f"state.tmp-{dead}").write_bytes(b"partial")
            side = other(side)
            cycle(side, point, "leftovers of a dead build")
        (root / ".meshc-cache" / ".gitignore").unlink()
        side = other(side)
        cycle(side, "cache.gitignore", "no .gitignore")
        assert (root / ".meshc-cache" / ".gitignore").read_text() == "*\n"
        for point in ("uptodate.read", "uptodate.verify", "uptodate.verify@staging", "lock.release"):
            cycle(side, point, "nothing changed")
        no_exchange = {"MESHC_FAULT_NO_EXCHANGE": "1"}
        for point in ("swap.fallback", "swap.fallback@prod", "swap.fallback.between", "swap.fallback.between@dev"):
            side = other(side)
            cycle(side, point, "two renames", extra=no_exchange, allow_missing=point.startswith("swap.fallback.between"))
            side = other(side)
            set_side(root, side)
            run = meshc(root, extra=no_exchange, runner=runner)
            assert run.returncode == 0 and tree(root / "out") == refs[side] and not leftovers(root), run.stderr
    finally:
        runner.close()
    assert not problems, "\n".join(problems)


def test_kill_during_the_checks_leaves_no_process(tmp_path: Path, refs: dict[str, Tree]) -> None:
    """SIGKILL of a full build from outside while its check layers (CUE helpers) run: nothing of it
    survives, the bundle is the old one, the next build is clean."""
    root = make_estate(tmp_path / "ext")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    set_side(root, "B")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHC_FAULT")}
    proc = subprocess.Popen([sys.executable, "-m", "meshc", "build", "-C", str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if any(not line.startswith(f"{proc.pid}:") for line in session_left(proc.pid, 0)):
            break  # a helper of the check layers is running
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not session_left(proc.pid), "a helper or worker outlived the killed build"
    assert not whole(root, refs)
    problems = after_kill_build(root, refs, "B", "external kill", full=True)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------- bundles edited by hand

def test_deleted_or_edited_bundle_files_are_repaired(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "hand")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    assert UP_TO_DATE in meshc(root).stderr
    out = root / "out"
    cases = [
        lambda: (out / "prod" / "kustomization.yaml").unlink(),
        lambda: (out / "dev" / "index.json").write_bytes((out / "dev" / "index.json").read_bytes() + b" "),
        lambda: _same_size_edit(out / "staging" / "envoy" / "bootstrap.json"),
        lambda: (out / "dev" / "egress-dev" / "stray.yaml").write_text("kind: Secret\n"),
        lambda: shutil.rmtree(out / "staging"),
        lambda: (out / "prod" / "envoy" / "bootstrap.json").unlink() or
        (out / "prod" / "envoy" / "bootstrap.json").symlink_to(out / "dev" / "envoy" / "bootstrap.json"),
    ]
    for i, damage in enumerate(cases):
        damage()
        run = meshc(root)
        assert run.returncode == 0, run.stderr
        assert UP_TO_DATE not in run.stderr and "B005" in run.stderr, (i, run.stderr)
        assert tree(out) == refs["A"], i
        assert UP_TO_DATE in meshc(root).stderr


def _same_size_edit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))


def test_a_hand_edited_unchanged_file_is_not_linked_into_the_new_bundle(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "link")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    untouched = root / "out" / "dev" / "egress-dev" / "orders-db.yaml"
    edited = root / "out" / "prod" / "egress" / "orders-db.yaml"
    assert untouched.is_file() and edited.is_file()
    kept_inode = untouched.stat().st_ino
    _same_size_edit(edited)  # in place: same inode, same size
    set_side(root, "B")
    run = meshc(root)
    assert run.returncode == 0, run.stderr
    assert tree(root / "out") == refs["B"]
    assert untouched.stat().st_ino == kept_inode  # unchanged and verified: linked, not rewritten


# --------------------------------------------------------------------------- concurrency

def test_a_second_build_waits_then_exits_2_naming_the_holder(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "lock")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    set_side(root, "B")
    fd = os.open(root / "out", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another build would
        started = time.monotonic()
        run = meshc(root, extra={"MESHC_LOCK_TIMEOUT": "1"})
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "Directory not empty" not in run.stderr
    assert "error[B002]" in run.stderr and f"process {os.getpid()}" in run.stderr, run.stderr
    assert str(root / "out") in run.stderr and "MESHC_LOCK_TIMEOUT" in run.stderr
    assert waited >= 1.0
    assert tree(root / "out") == refs["A"]
    assert after_kill_build(root, refs, "B", "after the lock is free") == []


def test_concurrent_builds_take_turns(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "pair")
    set_side(root, "B")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHC_FAULT")}
    procs = [subprocess.Popen([sys.executable, "-m", "meshc", "build", "-C", str(root), *flags], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for flags in ([], ["--skip-checks"], [])]
    errs = [p.communicate(timeout=180)[1] for p in procs]
    runs = [(p.returncode, err) for p, err in zip(procs, errs)]
    for code, err in runs:
        assert code == 0 and "Traceback" not in err and "Directory not empty" not in err, err
    assert tree(root / "out") == refs["B"]
    assert not leftovers(root)
    # the two full builds have the same key: whichever ran second found the bundles current
    full = [err for (code, err), flags in zip(runs, ([], ["--skip-checks"], [])) if not flags]
    assert sum(UP_TO_DATE in err for err in full) <= 1


# ----------------------------------------------------------------- unwritable folders (root too)

def test_output_folder_that_is_or_is_under_a_regular_file(tmp_path: Path) -> None:
    """No permission bits involved: this fails for root too."""
    root = make_estate(tmp_path / "ro")
    blocker = root / "not-a-folder"
    blocker.write_text("a file\n")
    settings = (root / "meshc.yaml").read_text()
    for out in (blocker, blocker / "out"):
        (root / "meshc.yaml").write_text(settings.replace("out: out", f"out: {out.relative_to(root)}"))
        run = meshc(root)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert "error[B001]" in run.stderr and str(out) in run.stderr, run.stderr
    (root / "meshc.yaml").write_text(settings)
    run = meshc(root, "--out", str(blocker / "out"))  # the same through --out
    assert run.returncode == 2 and "error[B001]" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert blocker.read_text() == "a file\n"


def _chattr(path: Path, flag: str) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_immutable_output_folder_keeps_the_previous_bundle(tmp_path: Path, refs: dict[str, Tree]) -> None:
    """chattr +i stops root too (where the file system supports it)."""
    root = make_estate(tmp_path / "immutable")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    out = root / "out"
    if not _chattr(out, "+i"):
        pytest.skip("chattr +i is not supported here")
    try:
        set_side(root, "B")
        run = meshc(root)
    finally:
        _chattr(out, "-i")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "error[B001]" in run.stderr and str(out) in run.stderr, run.stderr
    assert tree(out) == refs["A"]
    assert after_kill_build(root, refs, "B", "writable again") == []


def test_cache_folder_that_is_a_file_keeps_the_previous_bundle(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "cachefile")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    shutil.rmtree(root / ".meshc-cache")
    (root / ".meshc-cache").write_text("not a folder\n")
    set_side(root, "B")
    run = meshc(root)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "error[B003]" in run.stderr and str(root / ".meshc-cache") in run.stderr, run.stderr
    assert tree(root / "out") == refs["A"]
    (root / ".meshc-cache").unlink()
    assert after_kill_build(root, refs, "B", "cache folder back") == []


def test_unwritable_state_folder_keeps_the_previous_bundle(tmp_path: Path, refs: dict[str, Tree]) -> None:
    """The build cache's per-user folder (MESHC_STATE_DIR) under a regular file."""
    root = make_estate(tmp_path / "statefile")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("x\n")
    set_side(root, "B")
    run = meshc(root, extra={"MESHC_STATE_DIR": str(blocker / "state")})
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "error[B003]" in run.stderr and str(blocker) in run.stderr, run.stderr
    assert tree(root / "out") == refs["A"]
    assert after_kill_build(root, refs, "B", "state folder back") == []


def test_immutable_cache_folder_keeps_the_previous_bundle(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "cacheimm")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    cache = root / ".meshc-cache"
    if not _chattr(cache, "+i"):
        pytest.skip("chattr +i is not supported here")
    try:
        set_side(root, "B")
        run = meshc(root)
    finally:
        _chattr(cache, "-i")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "error[B003]" in run.stderr and str(cache) in run.stderr, run.stderr
    assert tree(root / "out") == refs["A"]
    assert after_kill_build(root, refs, "B", "cache writable again") == []


# ------------------------------------------------------------------------------ leftovers

def _dead_pid(below: int = 0) -> int:
    """A pid no process has (high, so that the builds of the test do not get it)."""
    pid = below or int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1


def test_leftovers_of_dead_processes_only_are_removed(tmp_path: Path, refs: dict[str, Tree]) -> None:
    root = make_estate(tmp_path / "left")
    set_side(root, "A")
    assert meshc(root).returncode == 0
    dead, live = _dead_pid(), os.getpid()
    state = repo_state(root)  # (absolute: root / state is state)
    planted = {
        f"out/.prod.new-{dead}": False, f"out/.dev.old-{dead}": False,
        f"out/.prod.new-{live}": True, f"out/.dev.old-{live}": True,
        f".meshc-cache/.meshc-spool-{dead}-abc": False, f".meshc-cache/.meshc-spool-{live}-abc": True,
        f".meshc-cache/state.tmp-{dead}": False, f".meshc-cache/state.tmp-{live}": True,
        f".meshc-cache/builds/x.json.tmp-{dead}": False,
        f"{state}/state.tmp-{dead}": False, f"{state}/state.tmp-{live}": True,
    }
    # a live build whose pid this one cannot see (another PID namespace) holds a flock on its files
    other_dead = _dead_pid(dead - 1)
    elsewhere = {f".meshc-cache/.meshc-spool-{dead}-other": True, f"{state}/state.tmp-{other_dead}": True}
    for rel in {**planted, **elsewhere}:
        path = root / rel
        if "tmp-" in rel:
            path.write_bytes(b"partial")
        else:
            (path / "sub").mkdir(parents=True)
    claims = [outdir.claim(root / rel) for rel in elsewhere]
    try:
        set_side(root, "B")
        run = meshc(root)
    finally:
        for fd in claims:
            os.close(fd)
    assert run.returncode == 0, run.stderr
    for rel, kept in {**planted, **elsewhere}.items():
        assert (root / rel).exists() == kept, rel
    assert tree(root / "out") == refs["B"]


# ---------------------------------------------------------------------------------- workers

WORKER_SCRIPT = r"""
import os, sys, time
from pathlib import Path
from meshc.emit import bundle as emit
from meshc.runtime import workers

spool = Path(sys.argv[1])

def work(i):
    (spool / f"pid-{os.getpid()}").write_text("")
    if i == 3:
        emit.spool(spool, f"f{i}", b"x", "sha")  # a fault at spool.write kills the whole build here
    time.sleep(60)
    return i

workers.run_all(work, list(range(4)), workers=4, min_items=1)
"""


@pytest.mark.parametrize("how", ["parent killed", "fault in a worker"])
def test_forked_workers_die_with_the_build(tmp_path: Path, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHC_FAULT")}
    if how == "fault in a worker":
        env["MESHC_FAULT"] = "spool.write"
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path)], env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("pid-*"))) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if how == "parent killed":
        assert len(list(tmp_path.glob("pid-*"))) == 4
        proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not session_left(proc.pid), "a forked worker outlived its parent"
