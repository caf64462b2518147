"""The index of the pass tests: one module tests/passes/test_<pass>.py for every pass of
`meshc.pipeline.PASSES`, each opening with "Pass `<pass>`", no module that names no pass, and
fixture folders (tests/fixtures/passes/<pass>/) only for passes. A new pass needs its module."""

from __future__ import annotations

import ast
from pathlib import Path

from meshc.pipeline import PASSES

from .estates import FIXTURES

HERE = Path(__file__).resolve().parent
NAMES = [p.name for p in PASSES]
NOT_A_PASS = {"index"}  # this module


def _modules() -> dict[str, Path]:
    return {p.stem.removeprefix("test_"): p for p in sorted(HERE.glob("test_*.py"))}


def test_every_pass_has_a_test_module() -> None:
    missing = [f"tests/passes/test_{name}.py" for name in NAMES if name not in _modules()]
    assert not missing, f"passes of pipeline.PASSES without a test module: {missing}"


def test_every_test_module_names_a_pass() -> None:
    stray = sorted(str(p.relative_to(HERE.parents[1])) for name, p in _modules().items()
                   if name not in NAMES and name not in NOT_A_PASS)
    assert not stray, f"test modules in tests/passes/ that name no pass of pipeline.PASSES: {stray}"


def test_every_module_opens_with_its_pass_and_has_tests() -> None:
    wrong = []
    for name, path in _modules().items():
        if name in NOT_A_PASS:
            continue
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree) or ""
        tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        if not doc.startswith(f"Pass `{name}`"):
            wrong.append(f"{path.name}: the docstring does not open with \"Pass `{name}`\"")
        if not tests:
            wrong.append(f"{path.name}: no test")
    assert not wrong, "\n".join(wrong)


def test_fixture_folders_are_named_after_passes() -> None:
    folders = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert folders and all(name in NAMES for name in folders), folders


def test_the_index_sees_a_missing_or_stray_module(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The meta-tests above fail as they should: on a folder with a stray module and one pass short."""
    for name in NAMES[1:]:
        (tmp_path / f"test_{name}.py").write_text(f'"""Pass `{name}`."""\n\n\ndef test_x() -> None:\n    pass\n')
    (tmp_path / "test_linking.py").write_text('"""Pass `linking`."""\n')
    monkeypatch.setattr(__import__(__name__, fromlist=["HERE"]), "HERE", tmp_path)
    for meta, says in ((test_every_pass_has_a_test_module, f"test_{NAMES[0]}.py"),
                       (test_every_test_module_names_a_pass, "test_linking.py")):
        try:
            meta()
        except AssertionError as exc:
            assert says in str(exc)
        else:
            raise AssertionError(f"{meta.__name__} passed on a broken folder")
