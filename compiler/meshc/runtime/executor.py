"""The runtime the pipeline is run by: what to recompute, and where.

Passes are plain functions; they never read the clock, fork, or write the cache. They ask the
`Executor` to map a function over items, and it decides: a unit whose key is in the previous
build's cache is taken from it (`cached_map`), the rest runs on every core when there are
enough of them (`map`, fork-based: meshc.runtime.workers). What a pass learned for the next
build comes back as a `CacheDelta` in its result; the driver applies the deltas to the cache
once, after the last pass (`apply`). So a pass's output depends only on its input, and the
same input gives the same bytes whether it was cached, forked or run in one process.

A build that streams its environments also gives the executor a fork server
(`workers.Forkserver`, started before the estate is loaded): `isolated` runs one large job (an
environment's Envoy configuration) in a process forked from it, which holds that job's input and
work only, not the build's heap; and `spill` pickles what a pass learned for the cache to the
state folder at once (`cache.Spilled`) instead of holding it until the cache is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from meshc.runtime import workers as pool
from meshc.runtime.cache import BuildCache, Spilled

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class CacheDelta:
    """What one pass learned for the next build. `None` leaves a section as it was; a mapping
    replaces it (`parse`, `units`, `envoy`: the entries this build used) or is added to it
    (`checks`: findings per content hash)."""

    parse: dict[str, Any] | None = None
    units: dict[str, Mapping[str, Any]] | None = None
    envoy: Mapping[str, Any] | None = None
    checks: dict[tuple[str, ...], Any] | None = None


@dataclass(frozen=True)
class Executor:
    """How this run computes: the previous build's cache (read only), the worker count
    (None: every core), where large files are spooled (None: kept in memory), and the fork
    server of a streamed build (None: `isolated` runs in this process)."""

    cache: BuildCache | None = None
    workers: int | None = None
    spool: Path | None = None
    check_envoy: bool = False
    parallel_from: int = field(default=pool.MIN_PARALLEL)
    server: pool.Forkserver | None = field(default=None, compare=False)

    def map(self, fn: Callable[[T], R], items: Sequence[T], min_items: int | None = None) -> list[R]:
        """fn over items, in order; forked over the workers when there are at least `min_items`."""
        return pool.run_all(fn, items, self.workers, self.parallel_from if min_items is None else min_items)

    def cached_map(self, fn: Callable[[T], R], items: Sequence[T], keys: Sequence[str],
                   known: Mapping[str, R]) -> list[R]:
        """fn over items, except those whose key the previous build already answered (`known`)."""
        out: list[R | None] = [known.get(k) for k in keys]
        todo = [i for i, hit in enumerate(out) if hit is None]
        for i, value in zip(todo, self.map(lambda i: fn(items[i]), todo), strict=True):
            out[i] = value
        return [value for value in out if value is not None]

    def known(self, section: str, part: str) -> Mapping[str, Any]:
        """The previous build's entries of a cache section (`units` per environment)."""
        if self.cache is None:
            return {}
        table: dict[str, Mapping[str, Any]] = getattr(self.cache, section)
        return table.get(part, {})

    def cores(self) -> int:
        """How many processes this run may keep busy at once."""
        return pool.worker_count() if self.workers is None else self.workers

    def isolated(self, fn: Callable[[T], R], item: T) -> pool.Pending[R]:
        """fn(item) in a process of the fork server (here when there is none); `.result()` waits."""
        if self.server is None:
            return pool.Pending(value=fn(item))
        return self.server.submit(fn, item)

    def spill_path(self, name: str) -> Path | None:
        """Where a job may `Spilled.write` entries for the cache; None: keep them in memory (no
        fork server, or a state folder that cannot be written: saving the cache reports it)."""
        if self.cache is None or self.server is None:
            return None
        try:
            return self.cache.spill_path(name)
        except OSError:
            return None

    def spill(self, section: str, env: str | None, items: Mapping[str, Any]) -> Mapping[str, Any]:
        """Entries learned for the cache, pickled to the state folder now when this run streams
        (`spill_path`), else kept as they are."""
        path = self.spill_path(f"{section}-{env or ''}")
        if path is None:
            return items
        try:
            return Spilled.write(path, section, env, items.items())
        except OSError:
            return items


def apply(cache: BuildCache, deltas: Sequence[CacheDelta]) -> None:
    """The deltas of one run, in pass order, written into the cache the next build reads."""
    for delta in deltas:
        if delta.parse is not None:
            cache.parse = delta.parse
        if delta.units is not None:
            cache.units = delta.units
        if delta.envoy is not None:
            cache.envoy = delta.envoy
        if delta.checks is not None:
            cache.checks.update(delta.checks)
