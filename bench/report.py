"""Ratios against their targets, and the two renderings of a run: a markdown table and JSON.

A ratio is computed from medians of wall time; when either side is missing or failed it is None
("n/a"), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

Steps = Mapping[str, Mapping[str, Any]]  # step name -> StepResult.summary()
MIB_PER_GB = 1e9 / 2**20  # the target is in GB (10^9 bytes); RSS is reported in MiB


@dataclass(frozen=True)
class Ratio:
    key: str
    label: str
    target: float | None  # None: shown for information, no target
    compute: Callable[[Steps], float | None]


def _median(steps: Steps, name: str) -> float | None:
    step = steps.get(name) or {}
    value = step.get("median_s")
    return float(value) if step.get("status") == "ok" and value else None


def _over(top: str, bottom: str) -> Callable[[Steps], float | None]:
    def compute(steps: Steps) -> float | None:
        a, b = _median(steps, top), _median(steps, bottom)
        return a / b if a is not None and b else None
    return compute


def _peak_gb(steps: Steps) -> float | None:
    step = steps.get("build") or {}
    peak = step.get("peak_rss_mib")
    return peak / MIB_PER_GB if step.get("status") == "ok" and peak else None


def _growth(kind: str) -> Callable[[Steps], float | None]:
    """Seconds per service of the largest ÷ the smallest estate, over the `kind` steps ("build"
    or "build-nocheck", and their "<kind>-<size>" growth runs)."""
    def compute(steps: Steps) -> float | None:
        per = sorted((s["services"], s["seconds_per_service"]) for name, s in steps.items()
                     if (name == kind or (name.startswith(kind + "-") and name[len(kind) + 1:].isdigit()))
                     and s.get("status") == "ok" and s.get("seconds_per_service"))
        return per[-1][1] / per[0][1] if len(per) >= 2 else None
    return compute


RATIOS = (
    Ratio("build_over_floor", "full build ÷ floor", 1.5, _over("build", "floor")),
    Ratio("nocheck_over_floor", "build --skip-checks ÷ floor", 1.0, _over("build-nocheck", "floor")),
    Ratio("rebuild_over_build", "no-change rebuild ÷ full build", 0.10, _over("rebuild", "build")),
    Ratio("rebuild_one_over_build", "one-file-change rebuild ÷ full build", 0.10,
          _over("rebuild-one", "build")),
    Ratio("check_over_build", "check (all layers, no cache) ÷ full build", 0.5, _over("check", "build")),
    Ratio("diff_over_build", "diff ÷ full build", 2.5, _over("diff", "build")),
    Ratio("meshc_over_kapitan", "meshc full build ÷ kapitan compile", 0.3, _over("build", "kapitan")),
    Ratio("build_peak_rss_gb", "peak memory of the full build (GB, 10⁹ bytes)", 1.0, _peak_gb),
    Ratio("growth", "growth: time per service, largest ÷ smallest estate (full build)", 1.2,
          _growth("build")),
    Ratio("growth_nocheck", "(info) growth of build --skip-checks, largest ÷ smallest", None,
          _growth("build-nocheck")),
    Ratio("nocheck_over_kapitan", "(info) build --skip-checks ÷ kapitan", None,
          _over("build-nocheck", "kapitan")),
    Ratio("check_warm_over_build", "(info) check with the build's cache ÷ full build", None,
          _over("check-warm", "build")),
)


def ratios(steps: Steps) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in RATIOS:
        value = r.compute(steps)
        out[r.key] = {"label": r.label, "value": value, "target": r.target,
                      "met": None if value is None or r.target is None else value <= r.target}
    return out


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _step_row(name: str, s: Mapping[str, Any]) -> str:
    notes = _cell("; ".join(x for x in (s.get("note") or "", _extras(s)) if x))
    return (f"| {s['label']} | {_num(s.get('median_s'))} | {_num(s.get('min_s'))} | "
            f"{_num(s.get('max_s'))} | {_num(s.get('cpu_median_s'))} | "
            f"{_num(s.get('peak_rss_mib'), 0)} | {s.get('runs', 0)} | {s['status']} | {notes} |")


def _extras(s: Mapping[str, Any]) -> str:
    keys = ("output_files", "output_bytes", "files", "objects", "floor_bytes", "findings",
            "files_equal_to_meshc", "files_differing_from_meshc", "seconds_per_service")
    parts = [f"{k}={s[k]}" for k in keys if s.get(k) is not None]
    return ", ".join(parts)


def _code_warning(meta: Mapping[str, Any]) -> list[str]:
    if meta.get("code_before") == meta.get("code_after"):
        return []
    return ["**Warning:** meshc's code, templates or policies changed during this run "
            f"({meta.get('code_before')} → {meta.get('code_after')}): timings mix versions.", ""]


def markdown(meta: Mapping[str, Any], steps: Steps, ratio_table: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f"### {meta['services']:,} services × {meta['envs']} environments (seed {meta['seed']})", "",
             f"{meta['date']} · {meta['nproc']} × {meta['cpu']} · Python {meta['python']} · "
             f"meshc {meta['meshc_version']} ({meta['commit']}) · load avg {meta['load_before']} → "
             f"{meta['load_after']} · RSS via {meta['rss_method']} · median of {meta['repeat']} "
             f"after {meta['warmup']} warm-up", "",
             *_code_warning(meta),
             "| step | median s | min s | max s | CPU s | peak RSS MiB | runs | status | notes |",
             "|---|--:|--:|--:|--:|--:|--:|---|---|"]
    lines += [_step_row(name, s) for name, s in steps.items()]
    lines += ["", "| ratio | value | target | met |", "|---|--:|--:|---|"]
    for r in ratio_table.values():
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "**no**")
        target = "—" if r["target"] is None else f"≤ {r['target']}"
        lines.append(f"| {r['label']} | {_num(r['value'])} | {target} | {'—' if r['target'] is None else met} |")
    failed = [(n, s) for n, s in steps.items() if s["status"] == "failed" and s.get("error")]
    for name, s in failed:
        lines += ["", f"<details><summary>{name} failed: {_cell(s['note'])}</summary>", "", "```",
                  s["error"].strip()[-3000:], "```", "</details>"]
    return "\n".join(lines) + "\n"
