"""Fault injection for the kill tests: `MESHC_FAULT=<point>[@<env>][:<n>]` makes the build SIGKILL
itself the n-th time (default 1) it reaches the named point of the write / record / cache / spool /
swap / lock path (`POINTS`; `tests/test_interrupt.py` kills a build at every one of them).

Only the process environment arms it, read once at import: nothing in a repository (meshc.yaml,
declarations, templates) can. Unset, `point` returns at once (one global test). The kill takes
the whole build: the meshc process first (its forked workers follow by PR_SET_PDEATHSIG), then the
caller, when the point is reached in a forked worker.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "MESHC_FAULT"

# Every point meshc can stop at, in the order a build reaches them (`@<env>` narrows a point
# that is reached once per environment to one environment).
POINTS = (
    "lock.open", "lock.acquired",
    "clean.out", "clean.out.done", "clean.cache", "clean.cache.done",
    "uptodate.read", "uptodate.verify",
    "cache.gitignore", "spool.dir",
    # per environment: compiled, checked, staged beside out/<env>
    "spool.write", "spool.written", "build.compiled", "build.checked",
    "bundle.begin", "bundle.mkdir", "bundle.file", "bundle.file.written", "bundle.link", "bundle.spool",
    "bundle.files.done",
    "cache.tmp", "cache.chunk", "cache.written", "cache.renamed",
    "record.invalidate", "record.invalidated", "record.invalidated.synced",
    "swap.first", "swap.exchange", "swap.exchanged", "swap.fallback", "swap.fallback.between",
    "swap.old.delete", "swap.done",
    "build.env.written",
    "record.tmp", "record.tmp.written", "record.tmp.synced", "record.renamed", "record.synced",
    "build.recorded", "spool.remove", "lock.release", "build.done",
)

_SPEC = os.environ.get(ENV_VAR) or None
# Test only: behave as where renameat2(RENAME_EXCHANGE) is unsupported (the two-rename swap).
NO_EXCHANGE = os.environ.get("MESHC_FAULT_NO_EXCHANGE") == "1"
_MAIN = os.getpid()
_seen = 0


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.partition(":")
    return name, int(count) if count.isdigit() and int(count) > 0 else 1


_TARGET = _parse(_SPEC) if _SPEC else ("", 0)


def point(name: str, env: str = "") -> None:
    """A named place on the write path; kills the build when MESHC_FAULT names it."""
    if _SPEC is None:
        return
    _hit(name, env)


def _hit(name: str, env: str) -> None:
    global _seen
    target, count = _TARGET
    if target != name and not (env and target == f"{name}@{env}"):
        return
    _seen += 1
    if _seen >= count:
        if os.getpid() != _MAIN:
            try:
                os.kill(_MAIN, signal.SIGKILL)
            except OSError:
                pass
        os.kill(os.getpid(), signal.SIGKILL)
