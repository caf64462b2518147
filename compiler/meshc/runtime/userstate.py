"""Per-user state: where meshc keeps its build cache, and the secret that authenticates what it
keeps in a repository.

A repository is data meshc compiles, often a stranger's pull request; nothing in it may make meshc
run code. So the build cache (pickles, which run code when loaded) lives outside the working tree,
in `$MESHC_STATE_DIR` (default `$XDG_CACHE_HOME/meshc/state`, else `~/.cache/meshc/state`), one
folder per repository keyed by the hash of its real path; and every file meshc trusts from there
or from the repository's `.meshc-cache/` (the cache, the record of the last build) carries an
HMAC-SHA256 under a per-user secret (`key` in that folder: 32 random bytes, mode 0600), checked
before anything in the file is used. A file without a valid tag is ignored: a planted one costs a
full build, never anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

STATE_ENV = "MESHC_STATE_DIR"
KEY_BYTES = 32
TAG_BYTES = 32
_key: bytes | None = None


def state_home() -> Path:
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "meshc" / "state"


def repo_state(root: Path) -> Path:
    """The state folder of one repository (its real path hashed: a moved checkout starts anew)."""
    real = os.path.realpath(root)
    return state_home() / "repos" / hashlib.sha256(real.encode()).hexdigest()[:32]


def user_key() -> bytes:
    """The per-user secret, made on first use. A key file that is not this user's private regular
    file is not trusted: this process then uses a key of its own (caches are not reused)."""
    global _key
    if _key is not None:
        return _key
    path = state_home() / "key"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            _key = _read_key(path)
        else:
            key = os.urandom(KEY_BYTES)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            _key = key
    except OSError:
        _key = None
    if _key is None:
        _key = os.urandom(KEY_BYTES)
    return _key


def _read_key(path: Path) -> bytes | None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    return key if len(key) == KEY_BYTES else None


def tag(*parts: bytes) -> bytes:
    mac = hmac.new(user_key(), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def new_mac() -> hmac.HMAC:
    return hmac.new(user_key(), digestmod=hashlib.sha256)


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
