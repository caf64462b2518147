"""Shared fixtures. Golden files are rewritten when MESHC_UPDATE_GOLDENS=1 (or `make goldens`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from meshc.model.release import shipped_crds

# Property tests are deterministic in CI: a fixed derandomized search (plus each test's explicit
# @example cases) and no example database carried between runs. MESHC_LONG_PROPERTY=1 runs a long
# random search by hand instead; put what it finds into an @example.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("long", max_examples=2000, derandomize=False, database=None)
settings.load_profile("long" if os.environ.get("MESHC_LONG_PROPERTY") == "1" else "ci")

REPO = Path(__file__).resolve().parents[1]
CRDS = shipped_crds()
# The full official CRD file (optional, beside the repository): only the tests that compare the
# shipped schemas with their source need it; they skip with a message when it is absent.
FULL_CRDS = Path(os.environ.get("MESHC_FULL_CRDS", REPO.parent / "shared" / "schemas" / "istio-crds-all.yaml"))
UPDATE = os.environ.get("MESHC_UPDATE_GOLDENS") == "1"


def check_golden(path: Path, actual: bytes) -> None:
    """Compare with a golden file; rewrite it instead when MESHC_UPDATE_GOLDENS=1."""
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
        return
    assert path.exists(), f"missing golden {path}; run `make goldens` and review the result"
    expected = path.read_bytes()
    assert actual.decode() == expected.decode(), f"{path} differs; if intended, run `make goldens`"


def check_golden_dir(directory: Path, files: dict[str, bytes]) -> None:
    """A whole directory of goldens: same file set, same bytes."""
    if UPDATE and directory.exists():
        for old in sorted(directory.rglob("*"), reverse=True):
            if old.is_file():
                old.unlink()
    for rel, data in files.items():
        check_golden(directory / rel, data)
    if not UPDATE:
        present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
        assert present == set(files), f"golden files differ in {directory}: {sorted(present ^ set(files))}"


@pytest.fixture(scope="session", autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """meshc's per-user build cache (meshc.userstate) in a folder of this test run, so tests
    neither read nor fill the user's own."""
    os.environ["MESHC_STATE_DIR"] = str(tmp_path_factory.mktemp("meshc-state"))


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def crds_path() -> Path:
    return CRDS
