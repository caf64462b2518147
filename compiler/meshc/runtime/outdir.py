"""The output folder: one build at a time, atomic swaps, the record of the last build, leftovers.

Invariants (`tests/test_interrupt.py` kills a build at every `faults` point to hold them):

* **out/<env> is at every instant a whole bundle**, the previous one or the new one. The new
  bundle is written beside it (`out/.<env>.new-<pid>`) and exchanged with it in one step
  (`renameat2(RENAME_EXCHANGE)`); the previous bundle, now at the temporary name, is deleted
  after. Consumers (kubectl kustomize, Argo CD) always find a real directory at out/<env>.
* **A stale bundle never looks current.** The record of the last build
  (`.meshc-cache/builds/<hash of the output path>.json`: the inputs key and the sha256 of every
  bundle file of every environment, with an HMAC tag under the per-user key of meshc.userstate,
  so a record committed to the repository is ignored) is deleted, durably, before out/ is touched, and written
  (temporary file, fsync, rename, fsync of the folder) only after every environment is swapped
  in. A build whose inputs hash to the recorded key stops only when the files on disk are the
  recorded ones (same set, same hashes); a deleted or hand-edited bundle file is rebuilt. So the
  bundle files themselves need no fsync: after a power cut, a bundle that did not reach the disk
  fails that verification and is written again.
* **One build per output folder**: an exclusive flock on the folder itself (no lock file, so out/
  holds bundles only); a second build waits up to `MESHC_LOCK_TIMEOUT` seconds (default 120),
  then gives up naming the holder (from /proc/locks). Render and check write nothing there and
  take no lock.
* **Leftovers of an interrupted build are removed by the next one**: `.<env>.new-<pid>` and
  `.<env>.old-<pid>` folders in out/, `.meshc-spool-<pid>-*` folders and `*.tmp-<pid>` files in
  .meshc-cache/, each only when process <pid> no longer exists (or is this very process, whose
  own temporary names are not made yet) and nobody holds a flock on it: a build holds one on its
  spool folder and on its temporary files while it writes them (`claim`, `hold`), so a live
  build seen from another PID namespace (a container sharing the repository) keeps them too.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meshc.runtime import faults
from meshc.runtime.cache import CACHE_DIR
from meshc.runtime.userstate import repo_state, same, tag

LOCK_TIMEOUT_ENV = "MESHC_LOCK_TIMEOUT"
LOCK_TIMEOUT = 120.0


# ----------------------------------------------------------------------------------- the lock

class Busy(Exception):
    """Another process held the output folder's lock for longer than we would wait."""

    def __init__(self, folder: Path, holder: str, waited: float) -> None:
        super().__init__(f"{folder} is locked by {holder}")
        self.folder, self.holder, self.waited = folder, holder, waited


class Unusable(Exception):
    """The output folder cannot be made or opened (for its lock)."""

    def __init__(self, folder: Path, error: OSError) -> None:
        super().__init__(f"{folder}: {error}")
        self.folder, self.error = folder, error


def lock_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(LOCK_TIMEOUT_ENV, LOCK_TIMEOUT)))
    except ValueError:
        return LOCK_TIMEOUT


@contextmanager
def locked(folder: Path, progress: Callable[[str], None] | None = None,
           timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `folder` (made if missing) for the body; raise `Busy` after
    waiting `timeout` seconds for another holder; `Unusable` when the folder cannot be made or opened."""
    faults.point("lock.open")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unusable(folder, exc) from None
    try:
        _acquire(fd, folder, progress, lock_timeout() if timeout is None else timeout)
        faults.point("lock.acquired")
        yield
        faults.point("lock.release")
    finally:
        os.close(fd)  # releases the lock (forked workers are gone by then)


def _acquire(fd: int, folder: Path, progress: Callable[[str], None] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause, told = 0.05, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return  # a file system without flock (some network mounts): build unlocked, as before
            raise
        if not told and progress is not None:
            progress(f"waiting for {holder(fd)} to finish writing {folder}")
            told = True
        left = deadline - time.monotonic()
        if left <= 0:
            raise Busy(folder, holder(fd), timeout)
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)


def holder(fd: int) -> str:
    """Who holds the flock on fd's file: 'process <pid> (<command line>)', from /proc/locks."""
    st = os.fstat(fd)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != where:
            continue
        pid = fields[4]
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = ""
        return f"process {pid}" + (f" ({cmd[:200]})" if cmd else "")
    return "another process"


# ------------------------------------------------------------------------------- leftovers

_OUT_LEFTOVER = re.compile(r"^\..+\.(?:new|old)-(\d+)$")
_CACHE_LEFTOVER = re.compile(r"^(?:\.meshc-spool-(\d+)-.*|.+\.tmp-(\d+))$")


def claim(path: Path) -> int:
    """Open a temporary folder or file of this build and `hold` it; the fd to close when done."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    hold(fd)
    return fd


def hold(fd: int) -> None:
    """Shared flock on fd's file for as long as fd stays open: `_clean` leaves it alone."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        pass  # no flock here: the pid check alone decides


def _claimed(path: Path) -> bool:
    """Someone holds a flock on path (a live build's temporary)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def gone(pid: int) -> bool:
    """True when no process `pid` exists, or it is this process (whose temporary names are made
    only after the clean-up: a leftover under our pid is a dead build's that had the same pid)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists (EPERM: another user's)
    return False


def remove(path: Path) -> None:
    """Delete a file, link or folder tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def clean_out(folder: Path) -> list[Path]:
    """Remove the .<env>.new-<pid> / .old-<pid> folders of dead builds from `folder` (called with
    its lock held); the paths removed."""
    return _clean(folder, _OUT_LEFTOVER, "clean.out")


def clean_cache(root: Path) -> list[Path]:
    """Remove spool folders and temporary files of dead processes from .meshc-cache/ (and its
    builds/ folder)."""
    cache = root / CACHE_DIR
    try:
        (cache / "builds.json").unlink()  # where earlier versions recorded builds: never read now
    except OSError:
        pass

    return (_clean(cache, _CACHE_LEFTOVER, "clean.cache") + _clean(cache / "builds", _CACHE_LEFTOVER, "clean.cache")
            + _clean(repo_state(root), _CACHE_LEFTOVER, "clean.cache"))


def _clean(folder: Path, pattern: re.Pattern[str], fault: str) -> list[Path]:
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m is None:
            continue
        pid = int(next(g for g in m.groups() if g is not None))
        if not gone(pid) or _claimed(folder / name):
            continue
        faults.point(fault)
        try:
            remove(folder / name)
            removed.append(folder / name)
        except OSError:
            pass  # left for a later build; it never reads these names
        faults.point(fault + ".done")
    return removed


# ------------------------------------------------------------------------------------ swap

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Callable[..., int] | Literal[False] | None = None  # False: looked for, not there


def _exchange_fn() -> Callable[..., int] | None:
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes  # only when a bundle is swapped (not on the no-change path)

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):  # not Linux, or glibc < 2.28
            _renameat2 = False
    return _renameat2 or None


def exchange(a: Path, b: Path) -> bool:
    """Swap the names a and b in one step (both must exist); False where the system cannot."""
    fn = None if faults.NO_EXCHANGE else _exchange_fn()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # kernel before 3.15, or a file system without RENAME_EXCHANGE
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, final: Path, old: Path, env: str = "") -> None:
    """Put the folder `new` at `final`, atomically at every instant; the previous content of
    `final` is deleted. `old` is the name the previous bundle takes only on the fallback path."""
    if not os.path.lexists(final):
        faults.point("swap.first", env)
        os.rename(new, final)  # first build: nothing to keep
        faults.point("swap.done", env)
        return
    faults.point("swap.exchange", env)
    if exchange(new, final):
        old = new  # the previous bundle is at the temporary name now
        faults.point("swap.exchanged", env)
    else:
        # Fallback, only where renameat2(RENAME_EXCHANGE) is unsupported (not Linux, kernel
        # before 3.15, a file system without it): two renames, and out/<env> does not exist
        # between them. A build killed there leaves it missing, never stale: the record is
        # already gone, so the next build writes it again.
        faults.point("swap.fallback", env)
        remove(old)
        os.rename(final, old)
        faults.point("swap.fallback.between", env)
        try:
            os.rename(new, final)
        except BaseException:
            os.rename(old, final)
            raise
    faults.point("swap.old.delete", env)
    try:
        remove(old)
    except OSError:
        pass  # a leftover for the next build to remove; the new bundle is in place
    faults.point("swap.done", env)


# ---------------------------------------------------------------------------------- record

@dataclass(frozen=True)
class Record:
    """What the last build wrote to an output folder: its inputs key, per environment the sha256
    of every bundle file."""

    key: str
    envs: dict[str, dict[str, str]]


def record_path(root: Path, out_root: Path) -> Path:
    name = hashlib.sha256(str(out_root.resolve()).encode()).hexdigest()[:32]
    return root / CACHE_DIR / "builds" / f"{name}.json"


def read_record(root: Path, out_root: Path) -> Record | None:
    faults.point("uptodate.read")
    try:
        signed = json.loads(record_path(root, out_root).read_bytes())
        data = signed["record"]
        if not same(bytes.fromhex(signed["mac"]), tag(_canonical(data))):
            return None  # not written by this user's meshc (a committed or planted record): ignored
        if data.get("out") != str(out_root.resolve()):
            return None
        envs = {str(env): {str(rel): str(sha) for rel, sha in files.items()}
                for env, files in data["envs"].items()}
        return Record(str(data["key"]), envs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def invalidate(root: Path, out_root: Path) -> None:
    """Delete the record of `out_root`, durably, before anything there changes."""
    path = record_path(root, out_root)
    faults.point("record.invalidate")
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        return  # no record (or no cache folder at all): nothing claims anything
    faults.point("record.invalidated")
    _sync_dir(path.parent)
    faults.point("record.invalidated.synced")


def write_record(root: Path, out_root: Path, record: Record) -> None:
    """Write the record atomically: temporary file, fsync, rename, fsync of the folder."""
    path = record_path(root, out_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    payload = {"out": str(out_root.resolve()), "key": record.key, "envs": record.envs}
    data = json.dumps({"mac": tag(_canonical(payload)).hex(), "record": payload},
                      sort_keys=True, separators=(",", ":")).encode()
    faults.point("record.tmp")
    try:
        with open(tmp, "wb") as fh:
            hold(fh.fileno())
            fh.write(data)
            fh.flush()
            faults.point("record.tmp.written")
            os.fsync(fh.fileno())
        faults.point("record.tmp.synced")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    faults.point("record.renamed")
    _sync_dir(path.parent)
    faults.point("record.synced")


_MARKER = re.compile(rb'^\{\s*"environment":[^\n]*\n\s*"environmentSource":[^\n]*\n\s*"meshcBundle": 1,', re.S)


def is_bundle(folder: Path) -> bool:
    """A folder meshc wrote: its index.json opens with the `meshcBundle` marker. meshc replaces
    (and so deletes) only such folders, never one it did not make."""
    try:
        fd = os.open(folder / "index.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _MARKER.match(os.read(fd, 4096)) is not None
    finally:
        os.close(fd)


def not_ours(out_root: Path, envs: Iterable[str]) -> list[Path]:
    """The out_root/<env> folders that exist but are not bundles meshc wrote."""
    return [out_root / env for env in envs
            if ((out_root / env).exists() or (out_root / env).is_symlink()) and not is_bundle(out_root / env)]


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def verify(out_root: Path, envs: dict[str, dict[str, str]]) -> str | None:
    """None when every out_root/<env> holds exactly the recorded files with the recorded sha256;
    else the first difference found (for a message). About 0.1 s for 1,000 services x 3 (4,000
    files, 57 MB), most of it per-file system calls: plain strings and fds, no Path objects."""
    for env, files in sorted(envs.items()):
        faults.point("uptodate.verify", env)
        base = out_root / env
        if not base.is_dir() or base.is_symlink():
            return f"{base} was deleted or replaced"
        found: list[str] = []
        try:
            odd = _walk(str(base) + os.sep, "", found)
        except OSError as exc:
            return f"{exc.filename or base} cannot be read ({exc.strerror})"
        if odd:
            return f"{base / odd} is a link or special file"
        if len(found) != len(files) or set(found) != set(files):
            extra = sorted(set(found) - set(files))
            missing = sorted(set(files) - set(found))
            return f"{base / missing[0]} was deleted" if missing else f"{base / extra[0]} was added"
        top = str(base) + os.sep
        for rel in found:
            if _sha256(top + rel) != files[rel]:
                return f"{base / rel} was changed"
    return None


def _walk(top: str, prefix: str, found: list[str]) -> str | None:
    """Relative paths of the regular files under top + prefix into `found`; the first entry that
    is neither a folder nor a regular file (a link, a socket), if any."""
    with os.scandir(top + prefix) as it:
        for entry in it:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                odd = _walk(top, rel + "/", found)
                if odd:
                    return odd
            elif entry.is_file(follow_symlinks=False):
                found.append(rel)
            else:
                return rel
    return None


def _sha256(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)
