"""Run independent units of work on every core: fork-based, results in input order.

The parent has already loaded and merged everything; forked children inherit it (no re-loading,
no pickling of inputs), compute their share of the units and send pickled results back through
a pipe. Output does not depend on how the units were split: results are reassembled by index.
Falls back to a plain loop for small inputs or where fork is unavailable.
Workers die with the build: on Linux each child asks for SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG), and exits at once if the parent is already gone; a killed build leaves
no worker behind (nor one holding the output folder's lock, which the fork inherited).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_PARALLEL = 400


def worker_count() -> int:
    env = os.environ.get("MESHC_WORKERS")
    if env and env.isdigit():
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_all(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None,
            min_items: int = MIN_PARALLEL) -> list[R]:
    """fn over items, on every core when there are at least `min_items` of them."""
    n = min(worker_count() if workers is None else workers, len(items))
    if n <= 1 or len(items) < min_items or not hasattr(os, "fork"):
        return [fn(item) for item in items]
    chunks = [list(range(k, len(items), n)) for k in range(n)]
    pids = [_spawn(fn, items, chunk) for chunk in chunks[1:]]
    results: list[R | None] = [None] * len(items)
    for i in chunks[0]:
        results[i] = fn(items[i])
    for (pid, read), chunk in zip(pids, chunks[1:], strict=False):
        payload = _read_all(read)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            raise RuntimeError(f"a meshc worker failed (status {status})")
        for i, value in zip(chunk, pickle.loads(payload), strict=False):
            results[i] = value
    return results  # type: ignore[return-value]  # every index is in one chunk: no None is left


def _spawn(fn: Callable[[T], R], items: Sequence[T], chunk: list[int]) -> tuple[int, int]:
    """Fork a child computing fn over items[chunk]; (its pid, the pipe its results come on)."""
    read, write = os.pipe()
    parent = os.getpid()
    prctl = _prctl()
    pid = os.fork()
    if pid == 0:  # child
        _die_with(parent, prctl)
        os.close(read)
        _child(fn, items, chunk, write)
    os.close(write)
    return pid, read


_PR_SET_PDEATHSIG = 1
_PRCTL: Callable[..., int] | Literal[False] | None = None  # False: looked for, not there


def _prctl() -> Callable[..., int] | None:
    """libc's prctl (None where there is none), loaded in the parent so children only call it."""
    global _PRCTL
    if _PRCTL is None:
        try:
            import ctypes

            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            _PRCTL = False
    return _PRCTL or None


def _die_with(parent: int, prctl: Callable[..., int] | None) -> None:
    """In a forked child: be killed when the parent dies; leave now if it already has. (The
    signal follows the forking thread, which `run_all` keeps until every child has answered.)"""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _child(fn: Callable[[T], R], items: Sequence[T], chunk: list[int], write: int) -> None:
    code = 0
    try:
        data = pickle.dumps([fn(items[i]) for i in chunk], protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write, "wb") as fh:
            fh.write(struct.pack("<Q", len(data)))
            fh.write(data)
    except BaseException:  # noqa: BLE001 - reported as a failed worker by the parent
        code = 1
    os._exit(code)


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return b""
        (size,) = struct.unpack("<Q", head)
        return fh.read(size)
