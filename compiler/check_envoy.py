"""The `envoy` layer of pass `check`: the emitted Envoy bootstrap, parsed strictly by Envoy's own
protos (xds-protos) and checked against their validate rules, and optionally `envoy --mode validate`.

Input: compiled environments (their bootstrap and its sources table). Output: diagnostics at the
declaration behind the Istio object each problem came from. Codes: E001-E003 (docs/envoy.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .diagnostics import DataPath, Diagnostic, Finding, format_path

if TYPE_CHECKING:
    from .check import CheckOptions
    from .pipeline import CompileResult, EnvResult


def run_envoy(result: "CompileResult", opts: "CheckOptions") -> list[Diagnostic]:
    from .check import body_bytes
    from .envoy import validate_bootstrap

    out: list[Diagnostic] = []
    for env in result.envs.values():
        if env.envoy is None:
            continue
        bootstrap, sources = env.envoy
        found = opts.memo("envoy", body_bytes(bootstrap),
                          lambda b=bootstrap: validate_bootstrap(b, opts.cache if opts.cache is not None else {}))
        for path, finding in found:
            out.append(_place(env, sources, tuple(path), finding))
        if opts.envoy_binary:
            out.extend(_binary(env))
    return out


def _place(env: "EnvResult", sources: dict, path: DataPath, finding: Finding) -> Diagnostic:
    from .check import Placer

    placer = Placer(env)
    for cut in range(len(path), -1, -1):
        ident = sources.get(tuple(path[:cut]))
        if ident is not None:
            art = placer.by_identity(tuple(ident))
            if art is not None:
                diag = placer(art, Finding(finding.code, finding.severity, finding.message, (),
                                           finding.istio_code, finding.hint))
                return Diagnostic(diag.code, diag.severity, diag.message, diag.position,
                                  f"envoy: {format_path(path)}", diag.hint, diag.env, diag.object)
    return Diagnostic(finding.code, finding.severity, finding.message, None,
                      f"envoy: {format_path(path)}", finding.hint, env.settings.name, "envoy bootstrap")


def _binary(env: "EnvResult") -> list[Diagnostic]:
    import shutil
    import tempfile
    from pathlib import Path

    import orjson

    from .envoy import envoy_validate_binary

    if shutil.which("envoy") is None or env.envoy is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_bytes(orjson.dumps(env.envoy[0]))
        return [Diagnostic(f.code, f.severity, f.message, None, "", f.hint, env.settings.name,
                           "envoy bootstrap") for f in envoy_validate_binary(str(path))]
