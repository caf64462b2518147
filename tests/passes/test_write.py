"""Pass `write` (emit/write.py `write_bundles`): each environment's Bundle swapped into
out/<env> (atomically), then, with a key, the build recorded under .meshc-cache/builds/. Refuses a
folder meshc did not make (B006); an unwritable output folder is B001.

Kills at every point of this path: tests/test_interrupt.py; the pass inside `meshc build`:
tests/test_estate.py, tests/test_security.py.
"""

from __future__ import annotations

from pathlib import Path

from meshc.emit.bundle import read_bundle
from meshc.emit.write import write_bundles
from meshc.runtime import outdir

from .estates import API, VM, estate, upto


def _bundles() -> dict:
    files = estate(a=API, b=VM.replace("SELECTOR", "db"),
                   files={"environments/prod/env.yaml": "name: prod\nnamespace: egress\n"})
    return {name: env.bundle for name, env in upto("bundle", files).envs.items()}


def test_bundles_are_written_and_the_build_recorded(tmp_path: Path) -> None:
    bundles = _bundles()
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    written, problems = write_bundles(root, out, bundles, "key-1")
    assert problems == [] and written == [out / "dev", out / "prod"]
    for name, bundle in bundles.items():
        assert read_bundle(out / name).files == bundle.files
    record = outdir.read_record(root, out)
    assert record is not None and record.key == "key-1" and sorted(record.envs) == ["dev", "prod"]


def test_without_a_key_nothing_is_recorded_and_an_old_record_is_gone(tmp_path: Path) -> None:
    bundles = _bundles()
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    write_bundles(root, out, bundles, "key-1")
    written, problems = write_bundles(root, out, bundles, None)
    assert problems == [] and len(written) == 2
    assert outdir.read_record(root, out) is None


def test_a_folder_meshc_did_not_make_is_b006_and_nothing_is_written(tmp_path: Path) -> None:
    bundles = _bundles()
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    (out / "prod").mkdir(parents=True)
    (out / "prod" / "notes.txt").write_text("mine")
    written, problems = write_bundles(root, out, bundles, "key-1")
    assert written == [] and [d.code for d in problems] == ["B006"]
    assert not (out / "dev").exists() and (out / "prod" / "notes.txt").read_text() == "mine"


def test_an_output_folder_that_cannot_be_written_is_b001(tmp_path: Path) -> None:
    bundles = _bundles()
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    out.write_text("a file where the output folder should be")
    written, problems = write_bundles(root, out, bundles, "key-1")
    assert written == [] and [d.code for d in problems] == ["B001"]
    assert outdir.read_record(root, out) is None and out.read_text().startswith("a file")
