"""Bad input: every class of mistake yields the right ./file:line:col, a fix, exit 2, no traceback
and no change to an existing bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshc.model.diagnostics import Severity
from meshc.pipeline import compile_estate
from meshc.files.tree import MemoryTree
from .passes.estates import API as GOOD  # the smallest valid service

ENV = "name: dev\nnamespace: egress\n"

# (case id, files, expected code, file, line, col, text in message)
CASES = [
    ("unknown-key", {"environments/base/a.yaml": GOOD.replace("    owner: team", "    ownr: team")},
     "D001", "environments/base/a.yaml", 3, 5, "did you mean 'owner'"),
    ("wrong-type", {"environments/base/a.yaml": GOOD.replace("number: 443", "number: [443]")},
     "D002", "environments/base/a.yaml", 7, 17, "expected an integer"),
    ("missing-key", {"environments/base/a.yaml": GOOD.replace("    hosts: [api.example.com]\n", "")},
     "D003", "environments/base/a.yaml", 2, 5, "hosts"),
    ("bad-enum", {"environments/base/a.yaml": GOOD.replace("resolution: dns", "resolution: dsn")},
     "D004", "environments/base/a.yaml", 5, 17, "did you mean 'dns'"),
    ("duplicate-yaml-key", {"environments/base/a.yaml": GOOD.replace("    owner: team", "    owner: a\n    owner: b")},
     "Y004", "environments/base/a.yaml", 4, 5, "duplicate key 'owner'"),
    ("duplicate-service", {"environments/base/a.yaml": GOOD, "environments/base/b.yaml": GOOD},
     "M001", "environments/base/b.yaml", 2, 5, "declared twice"),
    ("override-unknown", {"environments/base/a.yaml": GOOD,
                          "environments/dev/x.yaml": "overrides:\n  - name: apii\n    owner: x\n"},
     "M002", "environments/dev/x.yaml", 2, 5, "did you mean 'api'"),
    ("delete-unknown-port", {"environments/base/a.yaml": GOOD,
                             "environments/dev/x.yaml": "overrides:\n  - name: api\n    ports:\n      - number: 80\n        $patch: delete\n"},
     "M003", "environments/dev/x.yaml", 4, 9, "does not have"),
    ("escaping-name", {"environments/base/a.yaml": GOOD.replace("name: api", "name: ../../etc")},
     "D004", "environments/base/a.yaml", 2, 11, "not a valid name"),
    ("malformed-yaml", {"environments/base/a.yaml": "services:\n  - name: [api\n"},
     "Y003", "environments/base/a.yaml", 3, 1, "YAML syntax error"),
    ("binary", {"environments/base/a.yaml": b"services:\n\x00\x01\x02"},
     "Y002", "environments/base/a.yaml", 2, 1, "binary"),
    ("not-utf8", {"environments/base/a.yaml": b"services: []\n# caf\xe9\n"},
     "Y002", "environments/base/a.yaml", 2, 6, "UTF-8"),
    ("alias-bomb", {"environments/base/a.yaml": "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(6))},
     "Y005", "environments/base/a.yaml", 0, 0, "alias"),
    ("host-without-dot", {"environments/base/a.yaml": GOOD.replace("api.example.com", "mydb")},
     "V001", "environments/base/a.yaml", 4, 13, "has no dot"),
    ("none-with-endpoints", {"environments/base/a.yaml": GOOD.replace("resolution: dns", "resolution: none")
                             + "    endpoints:\n      - address: 10.0.0.1\n"},
     "V005", "environments/base/a.yaml", 10, 7, "resolution none"),
    ("round-robin-two-endpoints", {"environments/base/a.yaml": GOOD.replace("resolution: dns", "resolution: dns-round-robin")
                                   + "    endpoints:\n      - address: a.example.com\n      - address: b.example.com\n"},
     "V006", "environments/base/a.yaml", 11, 9, "at most one endpoint"),
    ("double-tls", {"environments/base/a.yaml": GOOD + "    tls: {mode: simple}\n"},
     "V015", "environments/base/a.yaml", 9, 17, "TLS in TLS"),
    ("credential-without-selector", {"environments/base/a.yaml": GOOD.replace("HTTPS", "HTTP\n        targetPort: 443")
                                     + "    tls: {mode: simple, credentialName: c}\n"},
     "V012", "environments/base/a.yaml", 10, 41, "plaintext"),
    ("overlay-position", {"environments/base/a.yaml": GOOD,
                          "environments/dev/x.yaml": "overrides:\n  - name: api\n    trafficPolicy:\n      outlierDetection: {interval: 500us}\n"},
     "V019", "environments/dev/x.yaml", 4, 36, "1ms"),
    ("env-name-mismatch", {"environments/base/a.yaml": GOOD, "environments/dev/env.yaml": "name: prod\nnamespace: x\n"},
     "L002", "environments/dev/env.yaml", 1, 1, "does not match"),
]


def _tree(files: dict[str, str | bytes]) -> MemoryTree:
    full: dict[str, str | bytes] = {"environments/dev/env.yaml": ENV}
    full.update(files)
    return MemoryTree(full)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported_at_its_position(case: tuple) -> None:
    _, files, code, file, line, col, text = case
    result = compile_estate(_tree(files))
    assert not result.ok
    matching = [d for d in result.diagnostics if d.code == code]
    assert matching, [f"{d.code} {d.position} {d.message}" for d in result.diagnostics]
    diag = matching[0]
    assert diag.severity is Severity.ERROR
    assert diag.position is not None and diag.position.file == file
    if line:
        assert (diag.position.line, diag.position.col) == (line, col), str(diag.position)
    assert text in diag.message
    assert diag.hint, "every error says how to fix it"
    assert all(env.bundle is None for env in result.envs.values())


def test_all_errors_are_reported_at_once() -> None:
    bad = GOOD.replace("owner: team", "ownr: team").replace("resolution: dns", "resolution: dsn")
    result = compile_estate(_tree({"environments/base/a.yaml": bad,
                                   "environments/base/b.yaml": "services:\n  - name: b\n    hosts: [x]\n"}))
    codes = sorted(d.code for d in result.diagnostics)
    assert codes.count("D001") == 1 and codes.count("D004") == 1 and codes.count("D003") >= 1


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read files whatever their mode")
    repo = _disk_repo(tmp_path, {"environments/base/a.yaml": GOOD})
    (repo / "environments/base/a.yaml").chmod(0)
    run = _meshc(repo, "build")
    assert run.returncode == 2 and "Y001" in run.stderr


def _disk_repo(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    repo = tmp_path / "repo"
    for rel, data in {"environments/dev/env.yaml": ENV, **files}.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return repo


def _meshc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc", *args, "-C", str(repo)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_exits_2_without_traceback_and_keeps_the_old_bundle(tmp_path: Path, case: tuple) -> None:
    repo = _disk_repo(tmp_path, {"environments/base/a.yaml": GOOD})
    first = _meshc(repo, "build")
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (repo / "out").rglob("*") if p.is_file()}
    shutil.rmtree(repo / "environments")
    repo = _disk_repo(tmp_path, case[1])
    run = _meshc(repo, "build")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"./{case[3]}" in run.stderr and f"[{case[2]}]" in run.stderr
    after = {p: p.read_bytes() for p in (repo / "out").rglob("*") if p.is_file()}
    assert after == before
