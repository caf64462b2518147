"""`meshc diff`: the change model, risk flags, masking, the ignore file, formats and exit codes.

Most tests build a real git repository in tmp_path from a copy of the example estate
(environments/ and a meshc.yaml with a mask rule), commit, edit, and compare `HEAD` with the
working tree or two commits. Commits use fixed author, committer and dates, so commit ids (and
the goldens that print them) are stable.

Goldens: tests/goldens/diff/realistic.{txt,md,json} hold the three formats for one realistic
change of the example estate. Regenerate them with

    MESHC_UPDATE_GOLDENS=1 .venv/bin/python -m pytest -q tests/test_diff.py   (or `make goldens`)

and review the result like code. Envoy and iptables handling is tested on small hand-made bundle
directories; the markdown budget on two synthetic 5,000-object bundles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshc import api
from meshc.diff.run import DiffRequest, field_changes, run, same
from meshc.cli.diff import diff_command
from meshc.diff.render.markdown import MARKER, render_markdown
from meshc.diff.model import ChangeSet, FieldChange, ObjectId
from meshc.diff.objects import normalise

LONG = os.environ.get("MESHC_LONG_PROPERTY") == "1"
from meshc.diff.render.plain import render_json, render_text
from meshc.emit.bundle import finish, write_bundle
from meshc.files.yamlout import dump

from .conftest import REPO, check_golden

GOLDENS = REPO / "tests" / "goldens" / "diff"
ISTIO = {"ServiceEntry", "WorkloadEntry", "DestinationRule"}
MESHC_YAML = "diff:\n  mask:\n    - {kind: DestinationRule, path: spec.trafficPolicy.tls.credentialName}\n"
GIT_ENV = {"GIT_AUTHOR_NAME": "meshc", "GIT_AUTHOR_EMAIL": "meshc@example.com",
           "GIT_COMMITTER_NAME": "meshc", "GIT_COMMITTER_EMAIL": "meshc@example.com",
           "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
GEO_IP = """
  - name: geo-ip
    owner: team-logistics
    description: GeoIP lookups
    hosts: [geoip.example.org]
    location: external
    resolution: dns
    ports:
      - number: 80
        protocol: HTTP
        targetPort: 443
    tls:
      mode: simple
      privateKey: /etc/certs/geo-ip-private.pem
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=True)
    return done.stdout


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


def append(root: Path, rel: str, text: str) -> None:
    with (root / rel).open("a") as fh:
        fh.write(text)


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    shutil.copytree(REPO / "environments", root / "environments")
    (root / "meshc.yaml").write_text(MESHC_YAML)
    git(root, "init", "-q", "-b", "main")
    commit(root, "estate")
    return root


def diff(root: Path, base: str = "HEAD", head: str | None = None, **kw: Any) -> ChangeSet:
    return run(DiffRequest(base, head, root, **kw))


def cli(root: Path, *args: str) -> Result:
    return CliRunner(env={"MESHC_DIFF_SALT": None}).invoke(diff_command, ["-C", str(root), *args])


def ids(items: Any) -> set[str]:
    return {str(i.id) for i in items if i.id.kind in ISTIO}


# --- the change model ------------------------------------------------------------------------

def test_no_change_is_empty_and_exits_0(estate: Path) -> None:
    assert diff(estate).empty
    result = cli(estate, "--base", "HEAD", "--exit-code")
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stdout


def test_add_remove_modify_rename_across_two_commits(estate: Path) -> None:
    append(estate, "environments/base/saas.yaml", GEO_IP)
    edit(estate, "environments/base/legacy.yaml", "  - name: partner-sftp", "  - name: partner-sftp-gone")
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    edit(estate, "environments/base/legacy.yaml", "name: legacy-billing", "name: billing-gateway")
    edit(estate, "environments/base/legacy.yaml", "Partner SFTP drop box (raw TCP on a fixed IP)", "SFTP")
    edit(estate, "environments/base/legacy.yaml", "hosts: [sftp.partner.example.net]", "hosts: [sftp2.partner.example.net]")
    commit(estate, "change")
    dev = diff(estate, "HEAD~1", "HEAD").envs["dev"]
    assert ids(dev.added) == {"ServiceEntry/egress-dev/geo-ip", "DestinationRule/egress-dev/geo-ip",
                              "ServiceEntry/egress-dev/partner-sftp-gone"}
    assert ids(dev.removed) == {"ServiceEntry/egress-dev/partner-sftp"}
    assert {(str(r.old), str(r.id)) for r in dev.renamed if r.id.kind in ISTIO} == {
        ("ServiceEntry/egress-dev/legacy-billing", "ServiceEntry/egress-dev/billing-gateway"),
        ("DestinationRule/egress-dev/legacy-billing", "DestinationRule/egress-dev/billing-gateway")}
    (stripe,) = [m for m in dev.modified if m.id == ObjectId("DestinationRule", "egress-dev", "payments-stripe")]
    (change,) = stripe.changes
    assert (change.where, change.kind, change.before, change.after) == (
        "spec.trafficPolicy.connectionPool.tcp.maxConnections", "changed", 200, 300)
    assert stripe.source == "environments/base/saas.yaml:4:5"


def test_rename_with_a_small_change_is_still_a_rename(estate: Path) -> None:
    edit(estate, "environments/base/vms.yaml", "name: inventory-api", "name: inventory")
    edit(estate, "environments/prod/services.yaml", "- name: inventory-api", "- name: inventory")
    edit(estate, "environments/edge/services.yaml", "- name: inventory-api", "- name: inventory")
    edit(estate, "environments/base/vms.yaml", "loadBalancer: {simple: ROUND_ROBIN}", "loadBalancer: {simple: LEAST_CONN}")
    staging = diff(estate).envs["staging"]
    renamed = {(str(r.old), str(r.id)): r for r in staging.renamed}
    dr = renamed[("DestinationRule/egress-staging/inventory-api", "DestinationRule/egress-staging/inventory")]
    assert 0.9 <= dr.similarity < 1
    assert "spec.trafficPolicy.loadBalancer.simple" in {c.where for c in dr.changes}
    assert ("WorkloadEntry/egress-staging/inventory-api-inv-a", "WorkloadEntry/egress-staging/inventory-inv-a") in renamed
    assert not ids(staging.added) and not ids(staging.removed)


def test_reordering_keys_and_set_like_items_gives_no_diff(estate: Path) -> None:
    legacy = "environments/base/legacy.yaml"
    edit(estate, "environments/base/saas.yaml", "hosts: [api.stripe.com]",
         "hosts: [api.stripe.com, api2.stripe.com]")
    edit(estate, legacy, "addresses: [203.0.113.10]", "addresses: [203.0.113.10, 203.0.113.12]")
    edit(estate, legacy, "      - address: 203.0.113.10\n", "      - address: 203.0.113.10\n      - address: 203.0.113.11\n")
    commit(estate, "two hosts, two addresses, two endpoints")
    edit(estate, "environments/base/saas.yaml", "hosts: [api.stripe.com, api2.stripe.com]",
         "hosts: [api2.stripe.com, api.stripe.com]")
    edit(estate, legacy, "addresses: [203.0.113.10, 203.0.113.12]", "addresses: [203.0.113.12, 203.0.113.10]")
    edit(estate, legacy, "      - address: 203.0.113.10\n      - address: 203.0.113.11\n",
         "      - address: 203.0.113.11\n      - address: 203.0.113.10\n")
    edit(estate, legacy, "    owner: team-partners\n    description: Partner SFTP drop box (raw TCP on a fixed IP)\n",
         "    description: Partner SFTP drop box (raw TCP on a fixed IP)\n    owner: team-partners\n")
    edit(estate, "environments/base/vms.yaml", "      - number: 8080\n        protocol: HTTP\n        name: http\n"
         "      - number: 9090\n        protocol: HTTP\n        name: http-debug\n",
         "      - name: http-debug\n        number: 9090\n        protocol: HTTP\n"
         "      - protocol: HTTP\n        name: http\n        number: 8080\n")
    edit(estate, "environments/base/vms.yaml", "      - name: v1\n        labels: {version: v1}\n"
         "      - name: v2\n        labels: {version: v2}\n",
         "      - labels: {version: v2}\n        name: v2\n      - name: v1\n        labels: {version: v1}\n")
    changes = diff(estate)
    assert changes.empty, render_text(changes)
    edit(estate, legacy, "      - address: 203.0.113.11\n", "      - address: 203.0.113.13\n")
    assert not diff(estate).empty


def test_normalise_keeps_lists_whose_items_lack_or_repeat_the_key() -> None:
    body = {"spec": {"ports": [{"number": 80}, {"name": "x"}], "hosts": ["a", "b"]}}
    norm = normalise("ServiceEntry", body)
    assert norm["spec"]["ports"] == [{"number": 80}, {"name": "x"}]
    assert list(norm["spec"]["hosts"].values()) == ["a", "b"]
    dup = normalise("ServiceEntry", {"spec": {"ports": [{"number": 80, "a": 1}, {"number": 80, "a": 2}]}})
    assert isinstance(dup["spec"]["ports"], list)
    assert body == {"spec": {"ports": [{"number": 80}, {"name": "x"}], "hosts": ["a", "b"]}}


def test_git_side_leaves_working_tree_and_index_alone(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    git(estate, "add", "environments/base/saas.yaml")
    index_before = (estate / ".git" / "index").read_bytes()
    status_before = git(estate, "status", "--porcelain")
    assert not diff(estate).empty
    assert (estate / ".git" / "index").read_bytes() == index_before
    assert git(estate, "status", "--porcelain") == status_before
    assert git(estate, "worktree", "list").count("\n") == 1


def test_bundle_directories_as_sides(estate: Path, tmp_path: Path) -> None:
    assert api.build(estate, out=tmp_path / "old", checks=False).ok
    edit(estate, "environments/prod/services.yaml", "consecutive5xxErrors: 3", "consecutive5xxErrors: 4")
    assert api.build(estate, out=tmp_path / "new", checks=False).ok
    whole = diff(estate, str(tmp_path / "old"), str(tmp_path / "new"))
    assert [e for e, c in whole.envs.items() if not c.empty] == ["prod"]
    single = diff(estate, str(tmp_path / "old" / "prod"), str(tmp_path / "new" / "prod"))
    assert ids(single.envs["prod"].modified) == {"DestinationRule/egress/fraud-scoring"}
    assert any(r.code == "production-touched" for r in single.risks)


# --- risk flags ------------------------------------------------------------------------------

RISKS = [
    ("new-external-host", "prod", "ServiceEntry/egress/geo-ip", "environments/base/saas.yaml:",
     [], [("append", "environments/base/saas.yaml", GEO_IP)]),
    ("new-external-host", "dev", "ServiceEntry/egress-dev/legacy-billing", "environments/base/legacy.yaml:4:5",
     [], [("edit", "environments/base/legacy.yaml", "hosts: [billing.legacy.corp.example.com]",
           "hosts: [billing.legacy.corp.example.com, billing2.legacy.corp.example.com]")]),
    ("host-removed", "dev", "ServiceEntry/egress-dev/partner-sftp", "environments/base/legacy.yaml:21:5",
     [], [("cut", "environments/base/legacy.yaml", "\n  - name: partner-sftp\n")]),
    ("host-removed", "staging", "ServiceEntry/egress-staging/maps-google", "environments/base/saas.yaml:",
     [], [("edit", "environments/base/saas.yaml", "hosts: [maps.googleapis.com]", "hosts: [maps2.googleapis.com]")]),
    ("endpoint-removed", "dev", "ServiceEntry/egress-dev/legacy-billing", "environments/base/legacy.yaml:4:5",
     [], [("edit", "environments/base/legacy.yaml", "address: billing-vip.corp", "address: billing-vip2.corp")]),
    ("endpoint-removed", "staging", "WorkloadEntry/egress-staging/orders-db-pg-1", "environments/base/vms.yaml:4:5",
     [], [("edit", "environments/base/vms.yaml", "address: 10.20.1.10", "address: 10.20.1.11")]),
    ("resolution-changed", "dev", "ServiceEntry/egress-dev/legacy-billing", "environments/base/legacy.yaml:4:5",
     [], [("edit", "environments/base/legacy.yaml", "resolution: dns-round-robin", "resolution: dns")]),
    # in dev only: MESH_INTERNAL means a VM with a sidecar, which the ambient edge cannot have (V036)
    ("location-changed", "dev", "ServiceEntry/egress-dev/partner-sftp", "environments/base/legacy.yaml:21:5",
     [], [("append", "environments/dev/services.yaml", "  - name: partner-sftp\n    location: internal\n")]),
    ("tls-weakened", "prod", "DestinationRule/egress/fraud-scoring", "environments/prod/services.yaml:4:5",
     [], [("edit", "environments/prod/services.yaml", "mode: mutual", "mode: simple")]),
    ("tls-weakened", "dev", "DestinationRule/egress-dev/inventory-api", "environments/base/vms.yaml:",
     [], [("edit", "environments/base/vms.yaml", "mode: istio-mutual", "mode: disable")]),
    ("insecure-skip-verify", "dev", "DestinationRule/egress-dev/payments-stripe", "environments/base/saas.yaml:4:5",
     [], [("edit", "environments/base/saas.yaml", "subjectAltNames: [api.stripe.com]", "insecureSkipVerify: true")]),
    ("export-widened", "dev", "ServiceEntry/egress-dev/partner-sftp", "environments/base/legacy.yaml:",
     [("edit", "environments/base/legacy.yaml", "hosts: [sftp.partner.example.net]",
       "hosts: [sftp.partner.example.net]\n    exportTo: [\".\"]")],
     [("edit", "environments/base/legacy.yaml", "exportTo: [\".\"]", "exportTo: [\".\", payments]")]),
    # a new consumer of the gateway path: payments goes from blocked (REGISTRY_ONLY, not exported
    # to it) to allowed; a consumer's service account narrowed to the namespace: checkout's web
    # account goes from denied to allowed
    ("reach-opened", "prod", "AuthorizationPolicy/istio-system/maps-google-egress", "environments/base/saas.yaml:",
     [], [("edit", "environments/prod/services.yaml", "      - namespace: logistics\n",
           "      - namespace: logistics\n      - namespace: payments\n")]),
    ("reach-opened", "prod", "AuthorizationPolicy/istio-system/maps-google-egress", "environments/base/saas.yaml:",
     [], [("edit", "environments/prod/services.yaml", "{namespace: checkout, serviceAccount: cart}",
           "{namespace: checkout}")]),
    ("production-touched", "prod", "environment prod", "environments/prod/env.yaml:1:1",
     [], [("edit", "environments/prod/services.yaml", "consecutive5xxErrors: 3", "consecutive5xxErrors: 4")]),
]


def _apply(root: Path, edits: list[tuple[str, ...]]) -> None:
    for op, rel, *args in edits:
        if op == "append":
            append(root, rel, args[0])
        elif op == "cut":   # drop everything from the marker on
            text = (root / rel).read_text()
            (root / rel).write_text(text[:text.index(args[0]) + 1])
        else:
            edit(root, rel, args[0], args[1])


@pytest.mark.parametrize("code,env,obj,source,setup,change", RISKS, ids=[f"{r[0]}-{r[1]}" for r in RISKS])
def test_risk_flag(estate: Path, code: str, env: str, obj: str, source: str,
                   setup: list[tuple[str, ...]], change: list[tuple[str, ...]]) -> None:
    if setup:
        _apply(estate, setup)
        commit(estate, "setup")
    _apply(estate, change)
    flags = [r for r in diff(estate).risks if r.code == code and r.env == env and r.object == obj]
    assert flags, [str(r) for r in diff(estate).risks]
    assert flags[0].source.startswith(source)
    assert re.fullmatch(r"environments/[\w/.-]+\.yaml:\d+:\d+", flags[0].source)
    text = render_text(diff(estate))
    assert text.index("Risk flags") < text.index("Changes (")


def test_a_harmless_change_raises_no_risk_flag(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    changes = diff(estate, envs=("dev", "staging"))
    assert not changes.empty and changes.risks == ()


# --- masking ---------------------------------------------------------------------------------

def test_masked_values_never_appear_in_any_format(estate: Path) -> None:
    edit(estate, "environments/prod/services.yaml", "credentialName: fraud-scoring-client",
         "credentialName: fraud-scoring-client-v2")
    append(estate, "environments/base/saas.yaml", GEO_IP)
    for fmt in ("text", "markdown", "json"):
        result = cli(estate, "--base", "HEAD", "--format", fmt)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "fraud-scoring-client" not in out and "geo-ip-private" not in out
        assert "credentialName" in out and "privateKey" in out
    text = cli(estate, "--base", "HEAD").stdout
    assert "<masked: len 20, hmac-sha256:" in text and "<masked: len 23, hmac-sha256:" in text
    data = json.loads(cli(estate, "--base", "HEAD", "--format", "json").stdout)
    (prod,) = [e for e in data["environments"] if e["name"] == "prod"]
    (fraud,) = [m for m in prod["modified"] if m["name"] == "fraud-scoring" and m["kind"] == "DestinationRule"]
    (cred,) = [c for c in fraud["changes"] if c["path"].endswith("credentialName")]
    assert cred["before"]["$masked"]["length"] == 20 and cred["after"]["$masked"]["length"] == 23
    assert cred["before"]["$masked"]["hmacSha256"] != cred["after"]["$masked"]["hmacSha256"]


def test_mask_hash_depends_on_the_salt(estate: Path) -> None:
    edit(estate, "environments/prod/services.yaml", "credentialName: fraud-scoring-client", "credentialName: other")
    plain = render_text(diff(estate))
    salted = render_text(diff(estate, salt="s3cret"))
    assert plain != salted and "<masked: len 5, hmac-sha256:" in salted


# --- the ignore file -------------------------------------------------------------------------

IGNORE = """\
- env: dev
  kind: DestinationRule
  path: "spec.trafficPolicy.connectionPool.*"
  reason: tuned by a bot
- kind: ServiceEntry
  name: "geo-*"
"""


def test_ignore_file_suppresses_counts_and_lists(estate: Path) -> None:
    (estate / ".meshc-diffignore").write_text(IGNORE)
    commit(estate, "ignore file")
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    append(estate, "environments/base/saas.yaml", GEO_IP)
    changes = diff(estate)
    dev = changes.envs["dev"]
    assert "DestinationRule/egress-dev/payments-stripe" not in ids(dev.modified)
    assert "ServiceEntry/egress-dev/geo-ip" not in ids(dev.added)
    assert "DestinationRule/egress-dev/geo-ip" in ids(dev.added)
    assert "DestinationRule/egress-staging/payments-stripe" in ids(changes.envs["staging"].modified)
    got = {(i.env, str(i.object), i.what, i.path, i.rule.split(" ")[0]) for i in changes.ignored}
    assert ("dev", "DestinationRule/egress-dev/payments-stripe", "changed",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections", ".meshc-diffignore:1") in got
    assert {("dev", "ServiceEntry/egress-dev/geo-ip"), ("prod", "ServiceEntry/egress/geo-ip"),
            ("staging", "ServiceEntry/egress-staging/geo-ip")} <= {(g[0], g[1]) for g in got if g[2] == "added"}
    assert len(changes.ignored) == 5  # the dev pool change, geo-ip's ServiceEntry in four environments
    data = json.loads(render_json(changes))
    assert data["summary"]["ignored"] == 5 and len(data["ignored"]) == 5
    assert "Ignored (5 change(s)" in render_text(changes)
    assert "Ignored: 5 change(s) suppressed" in render_markdown(changes)
    assert not any("geo-ip" in r.object and r.object.startswith("ServiceEntry") for r in changes.risks)


def test_all_changes_ignored_exits_0_with_exit_code(estate: Path) -> None:
    (estate / ".meshc-diffignore").write_text("- path: spec.trafficPolicy.connectionPool.*\n"
                                              "- {kind: EnvoyCluster, path: circuit_breakers.*}\n")
    commit(estate, "ignore file")
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    result = cli(estate, "--base", "HEAD", "--exit-code", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert "Ignored (2 change(s)" in result.stdout and "no changes" in result.stdout


# --- exit codes and errors -------------------------------------------------------------------

def test_exit_code_1_when_changes_and_asked(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 300")
    assert cli(estate, "--base", "HEAD", "--exit-code").exit_code == 1
    assert cli(estate, "--base", "HEAD").exit_code == 0


@pytest.mark.parametrize("args,message", [
    (["--base", "no-such-ref"], "neither a directory nor a git revision"),
    (["--base", "HEAD", "--env", "qa"], "unknown environment 'qa'"),
    (["--base", "HEAD", "--format", "yaml"], "Invalid value"),
    (["--base", "HEAD", "--max-bytes", "100"], "Invalid value"),
])
def test_usage_and_input_errors_exit_2(estate: Path, args: list[str], message: str) -> None:
    result = cli(estate, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_side_that_fails_to_compile_exits_2_with_diagnostics(estate: Path) -> None:
    edit(estate, "environments/base/saas.yaml", "resolution: dns\n", "resolution: sometimes\n")
    result = cli(estate, "--base", "HEAD")
    assert result.exit_code == 2
    assert "environments/base/saas.yaml:" in result.stderr and "error[" in result.stderr
    assert "the head side (working tree) does not compile" in result.stderr
    commit(estate, "broken")
    result = cli(estate, "--base", "HEAD", "--head", "HEAD~0")
    assert "the base side (HEAD (" in result.stderr and result.exit_code == 2


def test_bad_ignore_file_and_bad_directory_exit_2(estate: Path, tmp_path: Path) -> None:
    (estate / ".meshc-diffignore").write_text("- colour: red\n")
    result = cli(estate, "--base", "HEAD")
    assert result.exit_code == 2 and ".meshc-diffignore:1: unknown key 'colour'" in result.stderr
    (estate / ".meshc-diffignore").unlink()
    (tmp_path / "empty").mkdir()
    result = cli(estate, "--base", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "neither environments/ nor a bundle" in result.stderr


# --- formats ---------------------------------------------------------------------------------

def realistic_change(root: Path) -> None:
    """One PR's worth of change to the example estate, committed on top of it."""
    (root / ".meshc-diffignore").write_text(
        "- env: dev\n  path: spec.trafficPolicy.connectionPool.*\n  reason: dev pools are tuned by a bot\n")
    commit(root, "ignore file")
    append(root, "environments/base/saas.yaml", GEO_IP)
    edit(root, "environments/base/legacy.yaml", "name: legacy-billing", "name: billing-gateway")
    edit(root, "environments/base/saas.yaml", "maxConnections: 200", "maxConnections: 250")
    edit(root, "environments/prod/services.yaml", "mode: mutual", "mode: simple")
    edit(root, "environments/prod/services.yaml", "credentialName: fraud-scoring-client",
         "credentialName: fraud-scoring-client-2025")
    edit(root, "environments/prod/services.yaml", "address: 10.21.1.10", "address: 10.21.1.11")
    commit(root, "realistic change")


@pytest.mark.parametrize("fmt,suffix", [("text", "txt"), ("markdown", "md"), ("json", "json")])
def test_golden(estate: Path, fmt: str, suffix: str) -> None:
    realistic_change(estate)
    result = cli(estate, "--base", "HEAD~1", "--head", "HEAD", "--format", fmt, "--env", "prod", "--env", "dev")
    assert result.exit_code == 0, result.output
    check_golden(GOLDENS / f"realistic.{suffix}", result.stdout.encode())


def test_json_matches_the_documented_schema(estate: Path) -> None:
    realistic_change(estate)
    doc = (REPO / "docs" / "diff.md").read_text()
    schema = json.loads(re.search(r"```json\n(\{\n  \"\$schema\".*?)\n```", doc, re.DOTALL).group(1))
    data = json.loads(render_json(diff(estate, "HEAD~1", "HEAD")))
    jsonschema_rs.validate(schema, data)
    assert data["schema"] == "meshc.diff/v1"


def test_markdown_layout(estate: Path) -> None:
    realistic_change(estate)
    md = render_markdown(diff(estate, "HEAD~1", "HEAD"))
    assert md.startswith(MARKER + "\n")
    assert md.index("Risk flags") < md.index("### Changes") < md.index("<details><summary><code>")
    blocks = re.findall(r"```diff\n(.*?)\n```", md, re.DOTALL)
    assert blocks and all(line[:1] in "+-@" for block in blocks for line in block.splitlines())


@pytest.mark.parametrize("budget", [4096, 12_000])
def test_markdown_respects_a_small_budget(estate: Path, budget: int) -> None:
    realistic_change(estate)
    changes = diff(estate, "HEAD~1", "HEAD")
    md = render_markdown(changes, budget)
    assert len(md.encode()) <= budget and md.startswith(MARKER)
    assert "**Left out:**" in md and md.count("```diff") == md.count("><summary><code>")
    assert "tls-weakened" in md.split("### Changes")[0]


@example([True], [1])
@example([1], [1.0])
@example([False, 5], [0, 6])
@example({"x": [True]}, {"x": [1]})
@example([[True]], [[1]])
@example(None, [])
@example("1", 1)
@example([1, True], [True, 1])
@settings(max_examples=400 if LONG else 80, deadline=None, derandomize=not LONG, database=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("xyz", max_size=1), inner, max_size=3),
                    max_leaves=12),
       st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("xyz", max_size=1), inner, max_size=3),
                    max_leaves=12))
def test_field_changes_are_empty_exactly_when_bodies_are_the_same(a: Any, b: Any) -> None:
    """Values of different types (true/1, 1/1.0, "1"/1, null/missing) always differ. Fixed examples
    and a derandomized run in CI; MESHC_LONG_PROPERTY=1 runs a long random search by hand."""
    assert (field_changes({"r": a}, {"r": b}) == ()) == same(a, b)
    assert field_changes({"r": a}, {"r": a}) == ()


def test_types_always_differ() -> None:
    assert field_changes({"r": [True]}, {"r": [1]}) == (FieldChange(("r", 0), "changed", True, 1),)
    assert field_changes({"r": [1, 2]}, {"r": [1.0, 2]}) == (FieldChange(("r", 0), "changed", 1, 1.0),)
    assert field_changes({"r": "1"}, {"r": 1}) != ()
    assert field_changes({"r": None}, {}) == (FieldChange(("r",), "removed", None, None),)


# --- Envoy and iptables ----------------------------------------------------------------------

def _bundle(root: Path, env: str, envoy: dict[str, Any] | None, rules: str | None) -> Path:
    files: dict[str, bytes] = {}
    if envoy is not None:
        files["envoy/bootstrap.json"] = json.dumps(envoy).encode()
    if rules is not None:
        files["iptables/vm.rules"] = rules.encode()
    return write_bundle(root, finish(env, files, [], {"production": False}))


RULES = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MESHC_OUTPUT - [0:0]
-A OUTPUT -p tcp -j MESHC_OUTPUT
-A MESHC_OUTPUT -d 127.0.0.1/32 -j RETURN
-A MESHC_OUTPUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""


def test_envoy_clusters_listeners_and_iptables_chains(tmp_path: Path) -> None:
    cluster = {"name": "b", "connect_timeout": "1s", "type": "STRICT_DNS"}
    listener = {"name": "l80", "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {"route_config": {
        "virtual_hosts": [{"name": "x", "domains": ["x"]}, {"name": "y", "domains": ["y"]}]}}}]}]}
    old = {"static_resources": {"clusters": [{"name": "a", "type": "STATIC"}, cluster], "listeners": [listener]}}
    swapped = json.loads(json.dumps(listener))
    hosts = swapped["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    hosts.reverse()
    new = {"static_resources": {"clusters": [{**cluster, "connect_timeout": "2s"}, {"name": "c", "type": "EDS"}],
                                "listeners": [swapped]}}
    _bundle(tmp_path / "old", "dev", old, RULES)
    _bundle(tmp_path / "new", "dev", new, RULES.replace("-A MESHC_OUTPUT -p tcp", "-A MESHC_OUTPUT -d 10.0.0.0/8 -j RETURN\n"
                                                          "-A MESHC_OUTPUT -p tcp"))
    dev = diff(tmp_path, str(tmp_path / "old"), str(tmp_path / "new")).envs["dev"]
    assert {str(s.id) for s in dev.added} == {"EnvoyCluster/envoy/bootstrap.json/c"}
    assert {str(s.id) for s in dev.removed} == {"EnvoyCluster/envoy/bootstrap.json/a"}
    mods = {str(m.id): m for m in dev.modified}
    assert set(mods) == {"EnvoyCluster/envoy/bootstrap.json/b", "IptablesChain/iptables/vm.rules/nat/MESHC_OUTPUT"}
    assert [(c.where, c.before, c.after) for c in mods["EnvoyCluster/envoy/bootstrap.json/b"].changes] == [
        ("connect_timeout", "1s", "2s")]
    chain = mods["IptablesChain/iptables/vm.rules/nat/MESHC_OUTPUT"]
    assert [(c.where, c.kind, c.after) for c in chain.changes] == [
        ("rules[1]", "added", "-A MESHC_OUTPUT -d 10.0.0.0/8 -j RETURN")]
    (flag,) = diff(tmp_path, str(tmp_path / "old"), str(tmp_path / "new")).risks
    assert (flag.code, flag.source) == ("iptables-changed", "iptables/vm.rules:4")
    assert "exclusions" in flag.message


def test_no_envoy_or_iptables_dirs_means_nothing_happens(tmp_path: Path) -> None:
    _bundle(tmp_path / "old", "dev", None, None)
    _bundle(tmp_path / "new", "dev", None, None)
    assert diff(tmp_path, str(tmp_path / "old"), str(tmp_path / "new")).empty


# --- size budget -----------------------------------------------------------------------------

def _synthetic(root: Path, modified: int, added: int, variant: int) -> None:
    """One environment: `modified` ServiceEntries whose port depends on `variant`, then `added`
    more (MESH_EXTERNAL, so each raises a risk flag); 100 objects per file."""
    files: dict[str, list[str]] = {}
    entries = []
    for i in range(modified + added):
        body = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                "metadata": {"name": f"svc-{i}", "namespace": "egress"},
                "spec": {"hosts": [f"svc-{i}.example.com"], "ports": [{"number": 8080 + (variant if i < modified else 0)}],
                         "location": "MESH_EXTERNAL" if i >= modified else "MESH_INTERNAL"}}
        text = dump(body)
        file = f"egress/group-{i // 100}.yaml"
        files.setdefault(file, []).append(text)
        entries.append({"kind": "ServiceEntry", "namespace": "egress", "name": f"svc-{i}", "file": file,
                        "sha256": hashlib.sha256(text.encode()).hexdigest(), "service": f"svc-{i}",
                        "source": f"environments/base/big.yaml:{i + 3}:5"})
    data = {rel: ("---\n" + "---\n".join(docs)).encode() for rel, docs in files.items()}
    write_bundle(root, finish("prod", data, entries, {"production": True}))


def test_5000_changed_objects_fit_the_comment_and_say_what_was_left_out(tmp_path: Path) -> None:
    _synthetic(tmp_path / "old", 1000, 0, 0)
    _synthetic(tmp_path / "new", 1000, 4000, 1)
    changes = diff(tmp_path, str(tmp_path / "old"), str(tmp_path / "new"))
    assert (changes.counts()["modified"], changes.counts()["added"]) == (1000, 4000)
    assert len(changes.risks) == 4001
    md = render_markdown(changes)
    assert len(md) <= 65_536 and len(md.encode()) <= 65_536
    assert md.startswith(MARKER + "\n")
    assert re.search(r"\| … \| \| \| \d+ more risk flag\(s\) not listed here; run `meshc diff", md)
    shown = md.count("><summary><code>")
    left = re.search(r"\*\*Left out:\*\* (\d+) of (\d+) changed object\(s\) \((\d+) diff line\(s\)\)", md)
    assert left is not None and "meshc diff --format text" in md and "meshc-report" in md
    assert int(left.group(2)) == 5000 and int(left.group(1)) == 5000 - shown and shown > 0
    text = render_text(changes)
    total_lines = sum(1 for line in text.splitlines() if line.startswith("    "))
    shown_lines = sum(len(b.splitlines()) for b in re.findall(r"```diff\n(.*?)\n```", md, re.DOTALL))
    assert int(left.group(3)) == total_lines - shown_lines


def test_a_destination_rule_moved_to_the_gateway_is_not_a_weakening(estate: Path) -> None:
    """payments-stripe put through the egress gateway in staging, for one consumer: its
    DestinationRule (TLS origination on port 80) moves into istio-system, where the gateway
    applies it; the rule removed from egress-staging is compared with the one added for the same
    host, not with nothing."""
    append(estate, "environments/staging/env.yaml",
           "namespaces: {checkout: {}}\negress:\n  gateway: {name: istio-egressgateway, namespace: istio-system, "
           "selector: {istio: egressgateway}}\n")
    append(estate, "environments/staging/services.yaml",
           "  - name: payments-stripe\n    egress: gateway\n    consumers: [{namespace: checkout}]\n")
    changes = diff(estate, envs=("staging",))
    staging = changes.envs["staging"]
    moved = "DestinationRule/istio-system/payments-stripe"
    assert moved in ids(staging.added) | {str(r.id) for r in staging.renamed}
    weakened = [r for r in changes.risks if r.code == "tls-weakened" and "payments-stripe" in r.object]
    assert not weakened, [str(r) for r in weakened]
