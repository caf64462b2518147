"""The `envoy` layer of pass `check`: the emitted Envoy bootstrap, parsed strictly by Envoy's own
protos (xds-protos) and checked against their validate rules, and optionally `envoy --mode validate`.

Input: compiled environments (their bootstrap and its sources table). Output: diagnostics at the
declaration behind the Istio object each problem came from. Codes: E001-E003 (docs/envoy.md).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshc.check.common import CheckKey, CheckOptions, CheckRun, Placer
from meshc.check.envoy.validate import Located, envoy_validate_binary, validate_bootstrap
from meshc.model.diagnostics import DataPath, Diagnostic, Finding, format_path
from meshc.model.results import CompileResult, EnvResult
from meshc.runtime.workers import run_all

Sources = Mapping[tuple[Any, ...], tuple[str, str, str]]  # bootstrap path prefix -> (kind, namespace, name)


FORK_ARTIFACTS = 3000  # below this many objects, forking costs more than it saves


def run_envoy(result: CompileResult, run: CheckRun) -> list[Diagnostic]:
    """Every environment's bootstrap validated (one forked worker per environment when the estate
    is large), the findings placed at their declarations."""

    configs = [(env, env.envoy) for env in result.envs.values() if env.envoy is not None]
    envs = [env for env, _ in configs]
    pending = any(envoy.findings is None for _, envoy in configs)
    big = pending and sum(len(env.artifacts) for env in envs) >= FORK_ARTIFACTS
    out: list[Diagnostic] = []
    opts = run.opts
    checked = run_all(lambda env: _validate_env(env, opts), envs, min_items=2 if big else len(envs) + 1)
    for (env, envoy), (found, learned) in zip(configs, checked, strict=False):
        if opts.cache is not None:
            run.learned.update(learned)
        sources: Sources = envoy.sources
        for path, finding in found:
            out.append(_place(env, sources, tuple(path), finding))
        if opts.envoy_binary:
            out.extend(_binary(env))
    return out


class _Overlay(dict[CheckKey, Any]):
    """A memo that reads through to `base` and keeps only what is new (to send back to the parent)."""

    def __init__(self, base: Mapping[CheckKey, Any] | None) -> None:
        super().__init__()
        self.base: Mapping[CheckKey, Any] = base if base is not None else {}

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def __getitem__(self, key: CheckKey) -> Any:
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self.base[key]


def _validate_env(env: EnvResult, opts: CheckOptions) -> tuple[Located, dict[CheckKey, Any]]:
    """Findings of one environment's bootstrap, and the check-cache entries this call computed
    (none when the proxy worker that built the bootstrap already checked it)."""
    envoy = env.envoy
    assert envoy is not None
    if envoy.findings is not None:
        return envoy.findings, {}
    key = ("envoy", envoy.sha256)  # as CheckOptions.memo; the file's bytes have sorted keys
    if opts.cache is not None and key in opts.cache:
        return opts.cache[key], {}
    return validate_config(envoy.bootstrap(), envoy.sha256, opts.cache)


def validate_config(bootstrap: dict[str, Any], sha256: str, cache: Mapping[CheckKey, Any] | None
                    ) -> tuple[Located, dict[CheckKey, Any]]:
    """The envoy layer on one bootstrap (`sha256`: of its bundle file): findings (path, Finding),
    and the check-cache entries computed (read through `cache`, which is not modified)."""

    memo = _Overlay(cache)
    key = ("envoy", sha256)
    if key not in memo:
        memo[key] = validate_bootstrap(bootstrap, memo)
    found: Located = memo[key]
    return found, dict(dict.items(memo))


def _place(env: EnvResult, sources: Sources, path: DataPath, finding: Finding) -> Diagnostic:

    placer = Placer(env)
    for cut in range(len(path), -1, -1):
        ident = sources.get(tuple(path[:cut]))
        if ident is not None:
            art = placer.by_identity(ident)
            if art is not None:
                diag = placer(art, Finding(finding.code, finding.severity, finding.message, (),
                                           finding.istio_code, finding.hint))
                return Diagnostic(diag.code, diag.severity, diag.message, diag.position,
                                  f"envoy: {format_path(path)}", diag.hint, diag.env, diag.object)
    return Diagnostic(finding.code, finding.severity, finding.message, None,
                      f"envoy: {format_path(path)}", finding.hint, env.settings.name, "envoy bootstrap")


def _binary(env: EnvResult) -> list[Diagnostic]:


    if shutil.which("envoy") is None or env.envoy is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_bytes(env.envoy.data())
        return [Diagnostic(f.code, f.severity, f.message, None, "", f.hint, env.settings.name,
                           "envoy bootstrap") for f in envoy_validate_binary(str(path))]
