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
import socket
import struct
import traceback
from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar

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


# ----------------------------------------------------------------------------- the fork server

class Forkserver:
    """A process forked while the build is still small (before the estate is loaded) that forks
    one child per job (`submit`): the job's process holds the server's few pages, its input and
    its own work, never the heap the build has grown since. The job's function travels by name
    (module-level, as pickle names it), its input and its result are pickled through a socket
    pair of its own. The server and its children die with the build (PR_SET_PDEATHSIG, as
    `run_all`'s workers), and the server holds none of the build's descriptors (the output
    folder's lock among them): it closes all but its socket when it starts."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._pid = 0
        self.jobs = 0  # how many jobs were submitted (tests count them)

    @property
    def running(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        if self._sock is not None or not hasattr(os, "fork"):
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent = os.getpid()
        prctl = _prctl()
        pid = os.fork()
        if pid == 0:  # the server: never returns into the build's code
            try:
                _die_with(parent, prctl)
                ours.close()
                _serve(theirs, prctl)
            finally:
                os._exit(0)
        theirs.close()
        self._sock, self._pid = ours, pid

    def submit(self, fn: Callable[[T], R], item: T) -> Pending[R]:
        """fn(item) in a process forked by the server (in this process when none runs)."""
        self.jobs += 1
        if self._sock is None:
            return Pending(value=fn(item))
        mine, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self._sock, [b"j"], [child.fileno()])
        finally:
            child.close()
        with mine.makefile("wb") as fh:  # pickled straight into the socket: never one buffer here
            pickle.dump((fn, item), fh, protocol=pickle.HIGHEST_PROTOCOL)
        return Pending(sock=mine)

    def close(self) -> None:
        """Stop the server (its running jobs first finish) and wait for it."""
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass

    def __enter__(self) -> Forkserver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pending(Generic[R]):
    """A submitted job: `result()` waits for its value (RuntimeError with the job's traceback
    when it failed)."""

    def __init__(self, sock: socket.socket | None = None, value: R | None = None) -> None:
        self._sock, self._value = sock, value

    @property
    def done(self) -> bool:
        """Whether the value is here (a job run in this process), not under way elsewhere."""
        return self._sock is None

    def result(self) -> R:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with sock, sock.makefile("rb") as fh:
                tag = fh.read(1)
                try:
                    answer = pickle.load(fh) if tag in (b"v", b"e") else None
                except (EOFError, pickle.UnpicklingError):
                    tag, answer = b"", None
            if tag != b"v":
                raise RuntimeError(f"a meshc worker failed: {answer if tag == b'e' else 'no answer'}")
            self._value = answer
        return self._value  # type: ignore[return-value]  # set by the job or by the constructor


def _serve(sock: socket.socket, prctl: Callable[..., int] | None) -> None:
    """The server's loop: a job socket in, a child forked for it; ends when the build closes its
    end (or dies). Children are waited for as they end (so their peak memory counts in the
    build's, as `time` reports it); at the end, any still running is abandoned (killed)."""
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle: it closes the server
    running: set[int] = set()

    def reap(*_: object) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            running.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    chld = {signal.SIGCHLD}
    server = os.getpid()
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        except OSError:
            fds = []
        if not fds:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for pid in running:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            os._exit(0)
        signal.pthread_sigmask(signal.SIG_BLOCK, chld)  # reaped only once it is known as running
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, chld)
            _die_with(server, prctl)
            sock.close()
            _job(socket.socket(fileno=fds[0]))
        running.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, chld)
        os.close(fds[0])


def _job(sock: socket.socket) -> None:
    """In a child of the server: the job's function and input, read from its socket; its value
    (tag "v") or its traceback (tag "e") written back, pickled straight into the socket."""
    code = 0
    try:
        with sock.makefile("rb") as fh:
            fn, item = pickle.load(fh)
        try:
            tag, answer = b"v", fn(item)
        except Exception:  # noqa: BLE001 - sent to the build, which raises it
            tag, answer, code = b"e", traceback.format_exc(), 1
        del fn, item
        with sock.makefile("wb") as out:
            out.write(tag)
            pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
        sock.close()
    except BaseException:  # noqa: BLE001 - the build sees no answer and fails
        code = 1
    os._exit(code)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 1024
