"""The code table (meshc.model.codes) holds the package, the docs and the tests together, both ways.

(a) every code-shaped literal in the package is in the table, and no code is built at run time;
(b) every code in the table is emitted somewhere, by a module of its family;
(c) every code has one row in a code table of docs/, with the table's severity and summary, and
    every documented code is in the table (codes named in prose and docstrings exist too);
(d) every code has a test that makes meshc emit it: tests/fixtures/codes/<code>.yaml (one small
    estate, lint input or capture spec per code, run through meshc's API as the CLI runs it),
    or, for the Istio families I and A, the rule tables of tests/test_rules.py. Each fixture
    asserts the code, its severity, its position (file:line:col) and a non-empty fix.

A fixture (YAML) says:
    run:      compile (default) | check | build | lint | import | run_checks | iptables (see `_run`)
    files:    path -> text, written into a fresh repository over DEFAULT_FILES (`bare: true`: not)
    links:    path -> target, symbolic links made after the files
    envs:     environments to compile (default: all); layers: check layers (check, run_checks)
    setup:    the name of a preparation in SETUPS (what YAML cannot say: a held lock, a fake envoy)
    at:       where the diagnostic points, relative to the repository: file:line:col, or file when
              meshc gives no line, or null when it gives no position (say why in a comment);
              for `run: iptables`, the finding's data path
    message:  a piece of the message
    known_bug: why meshc does not emit it at `at` yet (a reported bug): the test is an expected
              failure until it does, then fails until known_bug is removed
"""

from __future__ import annotations

import ast
import fcntl
import functools
import io
import ipaddress
import os
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import api
from meshc.adopt.importer import run_import
from meshc.check.common import CheckOptions
from meshc.check.istio import ALL_RULES
from meshc.check.envoy.validate import validate_bootstrap
from meshc.check.layers import run_checks
from meshc.model.codes import _ROWS, CODES, FAMILIES, RETIRED
from meshc.model.diagnostics import Diagnostic, Finding, Severity, format_path
from meshc.proxy.iptables.rules import CaptureSpec, Destination, validate_spec

from .conftest import REPO
from .test_rules import ANALYZER_TRIGGERS, TRIGGERS

PACKAGE = REPO / "compiler" / "meshc"
DOCS = REPO / "docs"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "codes"
CODE = re.compile(r"[A-Z][0-9]{3}")
MENTION = re.compile(r"(?<![\w+])[A-Z][0-9]{3}\b")  # not U+D800
NOQA = re.compile(r"noqa(:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*)?")  # linters' codes (F401)

DEFAULT_FILES = {"environments/dev/env.yaml": "name: dev\nnamespace: egress\n"}

# Codes with no fixture because no test here can make meshc emit them, each with the reason
# (e.g. one that needs a full disk). None today: every code has a fixture or an Istio rule test.
UNTESTABLE: dict[str, str] = {}

# Codes emitted without a fix (an empty hint), each with the reason; the fixture test checks that
# they still have none, so a code leaves this list when it gets one.
NO_HINT: dict[str, str] = {
    "E001": "the envoy layer passes the proto parser's message on, with no fix (reported)",
    "E002": "the envoy layer passes the PGV rule on, with no fix (reported)",
    "E003": "the envoy binary's own output is the message, with no fix (reported)",
    "B005": "info: meshc already does what is needed (it rebuilds); there is nothing to fix",
    "S002": "the message is the CRD rule's own; a CRD has no fix to give (reported)",
    "S005": "the message lists the served apiVersions, but no fix is given (reported)",
    # validate_spec findings outside the pipeline; meshc.proxy.vmcapture adds a fix to every
    # finding it reports, but these settings come from no declaration (library only)
    "T002": "library only: CaptureSpec ports outside 1..65535 come from no declaration",
    "T006": "library only: a destination protocol other than tcp/udp comes from no declaration",
    "T007": "library only: proxy uid/gid are not settable in env.yaml",
    "T013": "library only: a VM's own endpoint is always on its allow-list",
}

# Codes a fixture reaches through the library API only: no declaration, meshc.yaml or command
# line makes meshc emit them today (reported as unreachable; kept because the library is public).
LIBRARY_ONLY: dict[str, str] = {
    "C004": "api.check always passes a CRD file (the user's or the shipped schemas)",
    "T001": "VM workload names are <service>-<endpoint>, both DNS labels by the declaration schema",
    "T002": "ports in env.yaml and declarations are schema-checked to 1..65535",
    "T006": "allow-list destinations are built as tcp or udp",
    "T007": "proxy uid/gid are not settable in env.yaml",
    "T008": "proxy uid/gid are not settable in env.yaml",
    "T013": "a VM's own endpoint is always on its allow-list",
    "E001": "meshc's own bootstraps parse; env.yaml values Envoy would refuse are L009 at load",
    "E002": "meshc's own bootstraps keep Envoy's rules; env.yaml values Envoy would refuse are L009 at load",
}


# --- (a), (b): the codes in the package --------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    code: str
    module: str
    line: int
    emits: bool  # the code is a call's first argument (or a constant that is): it can be emitted
    severity: Severity | None = None  # the Severity the call names beside it, if it names one


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


TABLE = PACKAGE / "model" / "codes.py"


def _sources() -> Iterator[tuple[Path, str]]:
    """The package's modules, but for the table itself."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != TABLE:
            yield path, path.read_text(encoding="utf-8")


def _first_arg(node: ast.AST, parent: ast.AST) -> bool:
    if not isinstance(parent, ast.Call):
        return False
    if parent.args and parent.args[0] is node:
        return True
    return any(k.arg == "code" and k.value is node for k in parent.keywords)


def _severities(tree: ast.Module) -> dict[str, Severity]:
    """Module-level names bound to a Severity (`E, W = Severity.ERROR, Severity.WARNING`)."""
    names: dict[str, Severity] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = (zip(target.elts, value.elts, strict=False) if isinstance(target, ast.Tuple)
                 and isinstance(value, ast.Tuple) else [(target, value)])
        for name, expr in pairs:
            if isinstance(name, ast.Name) and isinstance(expr, ast.Attribute) and expr.attr in Severity.__members__:
                names[name.id] = Severity[expr.attr]
    return names


# Helpers whose name says the severity (meshc.check.istio.codes).
_SEVERITY_HELPERS = {"webhook_error": Severity.ERROR, "webhook_warning": Severity.WARNING}


def _named_severity(call: ast.Call, names: dict[str, Severity]) -> Severity | None:
    """The severity a call passes (Severity.WARNING, or a module alias of one), if any."""
    func = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
    if func in _SEVERITY_HELPERS:
        return _SEVERITY_HELPERS[func]
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        if (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "Severity"
                and arg.attr in Severity.__members__):
            return Severity[arg.attr]
        if isinstance(arg, ast.Name) and arg.id in names:
            return names[arg.id]
    return None


@functools.cache
def code_sites() -> tuple[Site, ...]:
    """Every string constant in the package that looks like a code, and whether it is emitted.

    A code is emitted when it is the first argument (or `code=`) of a call (Diagnostic, Finding,
    and every helper that passes its first argument on: chk.add, _err, webhook_error, ...), or
    a constant (UNKNOWN_KIND = "S005") whose name is, anywhere in the package. Any other use must
    be a comparison; anything else fails, so that a new way of writing a code is looked at, not
    missed."""
    sites: list[Site] = []
    aliases: list[tuple[str, Site]] = []
    passed: set[str] = set()  # names given as a call's first argument
    odd: list[str] = []
    for path, text in _sources():
        tree = ast.parse(text)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        names = _severities(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node in parents and _first_arg(node, parents[node]):
                passed.add(node.id)
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value)):
                continue
            parent = parents[node]
            site = Site(node.value, _module(path), node.lineno, True)
            if _first_arg(node, parent):
                sites.append(Site(site.code, site.module, site.line, True,
                                  _named_severity(parent, names)))  # type: ignore[arg-type]
            elif isinstance(parent, ast.Assign) and [type(t) for t in parent.targets] == [ast.Name]:
                aliases.append((parent.targets[0].id, site))  # type: ignore[attr-defined]
            elif isinstance(parent, ast.Compare):
                sites.append(Site(node.value, site.module, site.line, False))
            else:
                odd.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r} in a {type(parent).__name__}")
    assert not odd, "code literals used in a way the scan does not know (teach code_sites):\n" + "\n".join(odd)
    sites.extend(site if name in passed else Site(site.code, site.module, site.line, False) for name, site in aliases)
    return tuple(sites)


def test_table_is_well_formed() -> None:
    codes = [row[0] for row in _ROWS]
    assert len(codes) == len(set(codes)) == len(CODES), "a code is listed twice"
    for code, entry in CODES.items():
        assert CODE.fullmatch(code) and entry.code == code
        assert code[0] in FAMILIES, f"{code}: no family {code[0]!r} in FAMILIES"
        assert isinstance(entry.severity, Severity)
        assert entry.summary.strip() == entry.summary and entry.summary and "\n" not in entry.summary
    letters = [c[0] for c in codes]
    assert letters == sorted(letters, key=list(dict.fromkeys(letters)).index), "a family's rows are not together"
    for letter in FAMILIES:
        mine = [c for c in codes if c[0] == letter]
        assert mine, f"family {letter} has no code"
        assert mine == sorted(mine), f"family {letter} is not in code order"
    assert not set(RETIRED) & set(CODES), "a retired number is in use again"
    for family in FAMILIES.values():
        assert (REPO / family.docs).is_file(), family


def test_every_code_in_the_package_is_in_the_table() -> None:
    """(a)"""
    unknown = sorted({f"{s.code} at {s.module}:{s.line}" for s in code_sites() if s.code not in CODES})
    assert not unknown, ("codes the package writes but meshc.model.codes does not list (add a row: code, "
                         "severity, summary):\n" + "\n".join(unknown))


def test_no_code_is_built_at_run_time() -> None:
    """(a) without false negatives: a code made from pieces ("V" + n, f"V{n:03d}") escapes the scan."""
    built = []
    for path, text in _sources():
        for node in ast.walk(ast.parse(text)):
            piece: ast.AST | None = None
            if isinstance(node, ast.JoinedStr) and node.values:
                piece = node.values[0]
                if len(node.values) == 1 or not isinstance(node.values[1], ast.FormattedValue):
                    piece = None
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
                piece = node.left
            if (isinstance(piece, ast.Constant) and isinstance(piece.value, str)
                    and re.fullmatch(r"[A-Z][0-9]{0,2}(%.*)?", piece.value)):
                built.append(f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}")
    assert not built, ("codes must be written out as literals (the scan and the table depend on it):\n"
                       + "\n".join(built))


def test_every_code_in_the_table_is_emitted_by_its_family() -> None:
    """(b)"""
    by_code: dict[str, list[Site]] = {}
    for site in code_sites():
        if site.emits:
            by_code.setdefault(site.code, []).append(site)
    never = sorted(set(CODES) - set(by_code))
    assert not never, f"codes in the table that no module emits (retire them: RETIRED): {never}"
    strays = [f"{s.code} emitted by {s.module}:{s.line}, not by {FAMILIES[s.code[0]].modules}"
              for sites in by_code.values() for s in sites
              if not any(s.module == m or s.module.startswith(m + ".") for m in FAMILIES[s.code[0]].modules)]
    assert not strays, "\n".join(strays)


def test_every_call_names_the_codes_severity() -> None:
    """A code has one severity: every call that names a severity beside a code names the table's
    (the fixtures check the others, at one call each)."""
    wrong = [f"{s.module}:{s.line}: {s.code} emitted as {s.severity.label}, the table says "
             f"{CODES[s.code].severity.label}" for s in code_sites()
             if s.severity is not None and s.code in CODES and s.severity != CODES[s.code].severity]
    assert not wrong, "\n".join(wrong)
    named = {s.code for s in code_sites() if s.severity is not None}
    assert len(named) > len(CODES) // 2, "the scan no longer sees severities: teach _named_severity"


def test_istio_rows_match_the_rule_registry() -> None:
    """Families I, A and G have a registry of their own (sources, fixes): the rows here repeat it."""
    rules = {r.code: (r.severity, r.title) for r in ALL_RULES}
    mine = {c.code: (c.severity, c.summary) for c in CODES.values() if c.code[0] in "IAG"}
    short = {Severity.ERROR: "E", Severity.WARNING: "W", Severity.INFO: "INFO"}
    missing = [f'    ("{code}", {short[sev]}, {title!r}),' for code, (sev, title) in sorted(rules.items())
               if mine.get(code) != (sev, title)]
    assert not missing, "rows to add to (or fix in) meshc.model.codes:\n" + "\n".join(missing)
    assert set(mine) == set(rules), f"rows without a rule: {sorted(set(mine) - set(rules))}"


# --- (c): the docs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DocRow:
    code: str
    severity: str
    summary: str
    where: str


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def doc_rows() -> list[DocRow]:
    """Rows of the code tables in docs/*.md: markdown table rows whose first cell is a code. A
    code table's header names the columns Code, Severity and Meaning (others may follow)."""
    rows: list[DocRow] = []
    for path in sorted(DOCS.glob("*.md")):
        header: list[str] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.startswith("|"):
                header = []
                continue
            cells = _cells(line)
            if not header:
                header = [c.lower() for c in cells]
                continue
            first = cells[0].strip("`") if cells else ""
            if not CODE.fullmatch(first):
                continue
            where = f"{path.relative_to(REPO)}:{number}"
            assert header[:1] == ["code"] and "severity" in header and "meaning" in header, (
                f"{where}: a code table needs the columns Code, Severity, Meaning; it has {header}")
            rows.append(DocRow(first, cells[header.index("severity")], cells[header.index("meaning")], where))
    return rows


def test_every_code_is_documented_as_the_table_says() -> None:
    """(c) both ways: one docs row per code, in its family's page, with its severity and summary."""
    rows = doc_rows()
    seen: dict[str, str] = {}
    problems = []
    for row in rows:
        if row.code in seen:
            problems.append(f"{row.where}: {row.code} is documented twice (also {seen[row.code]})")
        seen[row.code] = row.where
        entry = CODES.get(row.code)
        if entry is None:
            problems.append(f"{row.where}: {row.code} is documented but meshc does not have it")
            continue
        if not row.where.startswith(entry.family.docs + ":"):
            problems.append(f"{row.where}: {row.code} belongs in {entry.family.docs}")
        if row.severity != entry.severity.label:
            problems.append(f"{row.where}: {row.code} is {entry.severity.label}, documented as {row.severity!r}")
        if row.summary != entry.summary:
            problems.append(f"{row.where}: {row.code} summary differs from meshc.model.codes:\n"
                            f"    docs:  {row.summary}\n    table: {entry.summary}")
    for code in sorted(set(CODES) - set(seen)):
        entry = CODES[code]
        cell = entry.summary.replace("|", "\\|")
        problems.append(f"{code} is not documented; add to {entry.family.docs}: "
                        f"| {code} | {entry.severity.label} | {cell} |")
    assert not problems, "\n".join(problems)


def _mentions(text: str) -> set[str]:
    return set(MENTION.findall(text))


def test_codes_named_in_docs_and_docstrings_exist() -> None:
    """Prose and docstrings name only codes meshc has ("V001-V031" names V001 and V031)."""
    named: dict[str, list[str]] = {}
    for path in [*sorted(DOCS.glob("*.md")), REPO / "README.md", REPO / "ARCHITECTURE.md"]:
        for code in _mentions(path.read_text(encoding="utf-8")):
            named.setdefault(code, []).append(str(path.relative_to(REPO)))
    for path, text in _sources():
        pieces = [NOQA.sub("", tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                  if tok.type in (tokenize.COMMENT, tokenize.STRING)]
        for code in _mentions("\n".join(pieces)):
            named.setdefault(code, []).append(str(path.relative_to(REPO)))
    unknown = {code: files for code, files in named.items() if code not in CODES and code not in STALE_MENTIONS}
    assert not unknown, f"codes named that meshc does not have: {unknown}"
    fixed = sorted(code for code in STALE_MENTIONS if code not in named)
    assert not fixed, f"no longer named anywhere: remove from STALE_MENTIONS: {fixed}"


# Codes named in text (not emitted) that are known to be stale; reported, outside this test's files.
STALE_MENTIONS: dict[str, str] = {}


# --- (d): a test per code ----------------------------------------------------------------------------

def fixtures() -> dict[str, Path]:
    return {p.stem: p for p in sorted(FIXTURES.glob("*.yaml"))}


def istio_tested() -> set[str]:
    return {t[0] for t in TRIGGERS} | {t[0] for t in ANALYZER_TRIGGERS}


def test_every_code_has_a_test() -> None:
    """(d) both ways: a fixture per code (Istio rules: tests/test_rules.py), nothing else."""
    have = set(fixtures())
    assert not have - set(CODES), f"fixtures for codes meshc does not have: {sorted(have - set(CODES))}"
    istio = istio_tested()
    missing = sorted(set(CODES) - have - istio - set(UNTESTABLE))
    assert not missing, f"codes without a test (add tests/fixtures/codes/<code>.yaml): {missing}"
    assert not (have & istio), f"I/A codes are tested in tests/test_rules.py: {sorted(have & istio)}"
    assert not set(UNTESTABLE) & (have | istio), "a code in UNTESTABLE has a test: remove it from UNTESTABLE"
    assert set(NO_HINT) <= set(have), "NO_HINT names a code without a fixture"
    library = {code for code, path in fixtures().items()
               if yaml.safe_load(path.read_text(encoding="utf-8")).get("run") in ("iptables", "run_checks", "envoy")}
    assert library == set(LIBRARY_ONLY), ("fixtures that call the library (run: iptables, run_checks, envoy) are the "
                                          f"codes in LIBRARY_ONLY: {sorted(library ^ set(LIBRARY_ONLY))}")


def _fill(text: str, fills: dict[str, Any]) -> str:
    """Placeholders replaced by generated text: `count` copies of `text` formatted with the copy's
    number `i`, a port number `n` (1000 + i), an IPv4 address `ip` (10.0.0.1 + i) and `long`
    (60 letters); a placeholder alone on its line is replaced with its line."""
    for name, spec in fills.items():
        made = "".join(spec["text"].format(i=i, n=1000 + i, ip=ipaddress.IPv4Address(0x0A000001 + i), long="a" * 60)
                       for i in range(spec["count"]))
        text = text.replace(name + "\n", made) if made.endswith("\n") else text.replace(name, made)
    return text


def _write(root: Path, files: dict[str, Any], fills: dict[str, Any] | None = None) -> None:
    for rel, data in files.items():
        if fills and isinstance(data, str):
            data = _fill(data, fills)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else str(data).encode())


def _relative(diag: Diagnostic, root: Path) -> str | None:
    pos = diag.position
    if pos is None:
        return None
    file = pos.file
    for base in (str(root) + "/", str(root.resolve()) + "/"):
        file = file.removeprefix(base)
    return f"{file}:{pos.line}:{pos.col}" if pos.line else file


def _hold_lock(root: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Another build holds the output folder's lock; meshc waits no time for it."""
    out = root / "out"
    out.mkdir(exist_ok=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setenv("MESHC_LOCK_TIMEOUT", "0")
    return lambda: os.close(fd)


def _edit_bundle(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first build, then a bundle file edited by hand: the next build's inputs are unchanged."""
    first = api.build(root, checks=False)
    assert first.ok, first.diagnostics
    (bundle,) = (root / "out" / "dev" / "egress").glob("*.yaml")
    bundle.write_text(bundle.read_text() + "# edited\n")


def _failing_envoy(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `envoy` on PATH that rejects every configuration."""
    bin_dir = root.parent / "bin"
    bin_dir.mkdir()
    envoy = bin_dir / "envoy"
    envoy.write_text("#!/bin/sh\necho 'error: this envoy rejects every bootstrap' >&2\nexit 1\n")
    envoy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


# Preparations a fixture names with `setup:`; each may return what undoes it after the run.
SETUPS: dict[str, Callable[[Path, pytest.MonkeyPatch], Callable[[], None] | None]] = {
    "hold-lock": _hold_lock, "edit-bundle": _edit_bundle, "failing-envoy": _failing_envoy}


def _capture_spec(spec: dict[str, Any]) -> CaptureSpec:
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    if "egress_allow_list" in values:
        values["egress_allow_list"] = tuple(Destination(**d) for d in spec["egress_allow_list"])
    return CaptureSpec(**values)


def _run(case: dict[str, Any], root: Path) -> list[Diagnostic] | list[Finding]:
    run = case.get("run", "compile")
    envs = case.get("envs", ())
    layers = case.get("layers", ())
    if run == "compile":  # load, merge, validate, expand, proxy: what `meshc render` and `build` do first
        return api.compile_repo(root, envs, use_cache=case.get("cache", False))[1].diagnostics
    if run == "check":
        return api.check(root, envs, layers, envoy_binary=case.get("envoy_binary", False),
                         use_cache=False).diagnostics
    if run == "build":
        return api.build(root, envs, checks=case.get("checks", False), use_cache=case.get("cache", True)).diagnostics
    if run == "lint":
        return api.lint(root, [str(root / p) for p in case["paths"]]).diagnostics
    if run == "run_checks":  # the check layers as a library, with options the API never passes
        project, result = api.compile_repo(root, envs, use_cache=False)
        assert result.ok, result.diagnostics
        return run_checks(result, CheckOptions(layers=tuple(layers), repo_root=root, **case.get("options", {})))
    if run == "import":  # meshc import of files in the repository, one input per environment
        return run_import(root, [(env, [str(root / p) for p in paths]) for env, paths in case["inputs"].items()],
                          dry_run=case.get("dry_run", True)).diagnostics
    if run == "iptables":
        return validate_spec(_capture_spec(case["spec"]))
    if run == "envoy":  # the envoy layer's validator on a bootstrap meshc itself would not write
        return [Finding(f.code, f.severity, f.message, tuple(path), f.istio_code, f.hint)
                for path, f in validate_bootstrap(case["bootstrap"])]
    raise AssertionError(f"unknown run: {run}")


@pytest.mark.parametrize("code", sorted(fixtures()))
def test_code_is_emitted(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(d) the fixture makes meshc emit the code, with its severity, at its position, with a fix."""
    case = yaml.safe_load(fixtures()[code].read_text(encoding="utf-8"))
    root = tmp_path / "repo"
    root.mkdir()
    _write(root, {} if case.get("bare") else DEFAULT_FILES)
    _write(root, case.get("files") or {}, case.get("fill"))
    for rel, target in (case.get("links") or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    monkeypatch.chdir(root)
    undo = SETUPS[case["setup"]](root, monkeypatch) if case.get("setup") else None
    try:
        found = _run(case, root)
    finally:
        if undo is not None:
            undo()
    entry = CODES[code]
    hits = [d for d in found if d.code == code]
    shown = [(d.code, _relative(d, root) if isinstance(d, Diagnostic) else format_path(d.path), d.message)
             for d in found]
    assert hits, f"{code} not emitted; got {shown}"
    assert {d.severity for d in hits} == {entry.severity}, shown
    where: list[str | None] = [format_path(d.path) if isinstance(d, Finding) else _relative(d, root) for d in hits]
    hit = hits[where.index(case["at"])] if case.get("at") in where else hits[0]
    assert case["message"] in hit.message, hit.message
    if code in NO_HINT:
        assert not hit.hint, f"{code} has a fix now ({hit.hint!r}): remove it from NO_HINT"
    else:
        assert hit.hint.strip(), f"{code} is emitted without a fix (hint)"
    if case.get("known_bug"):  # the position meshc should give; reported, not yet fixed
        assert case.get("at") not in where, f"{code} is emitted at {case['at']} now: remove known_bug"
        pytest.xfail(f"{code} emitted at {where}: {case['known_bug']}")
    assert case.get("at") in where, f"{code} expected at {case.get('at')}, emitted at {where}"
