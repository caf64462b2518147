"""Every user mistake is a diagnostic with a position and a fix, exit 2, never a traceback.

Each case below failed before (a Python traceback, a silent skip, or an error at the wrong line);
the last test feeds generated hostile documents to every file meshc reads (declarations, env.yaml,
waivers, meshc.yaml, .meshc-diffignore, templates) through the real CLI in-process, with a fixed
seed list (deterministic in CI; MESHC_LONG_PROPERTY=1 runs many more examples by hand).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings, strategies as st

from meshc.cli.main import main
from meshc.cli.diff import diff_command

from .conftest import REPO

LONG = os.environ.get("MESHC_LONG_PROPERTY") == "1"

SERVICE = """services:
  - name: api
    owner: team-a
    description: An API
    hosts: [api.example.com]
    location: external
    resolution: dns
    ports:
      - {number: 443, protocol: HTTPS, name: https}
"""


def estate(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    """A small estate (dev + prod) from meshc init, with files replaced or added."""
    root = tmp_path / "estate"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    (root / "environments/base/services.yaml").write_text(SERVICE)
    (root / "environments/prod/services.yaml").unlink()
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(root: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "-C", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"meshc {' '.join(args)} raised {result.exception!r}\n{result.output}")
    assert "Traceback" not in result.output
    return result


def bundle(root: Path) -> dict[str, bytes]:
    out = root / "out"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


# --- dates: Kubernetes reads no date type --------------------------------------------------------

def test_invalid_waiver_date_is_an_error_at_its_line(tmp_path: Path) -> None:
    root = estate(tmp_path, {"waivers.yaml": "waivers:\n  - code: I351\n    owner: a\n    reason: b\n"
                                             "    expires: 2025-02-29\n"})
    result = run(root, "check")
    assert result.exit_code == 2
    assert "waivers.yaml:5:14: error[W000]: expires: '2025-02-29' is not a date (day is out of range" in result.output
    assert "fix: write a real calendar date as YYYY-MM-DD" in result.output


@pytest.mark.parametrize("field, value", [("owner", "2024-02-30"), ("description", "2024-01-01"),
                                          ("owner", "2001-12-14t21:59:43.10-05:00"), ("description", "1:20")])
def test_date_or_base60_looking_values_are_the_strings_written(tmp_path: Path, field: str, value: str) -> None:
    text = SERVICE.replace("owner: team-a" if field == "owner" else "description: An API", f"{field}: {value}")
    root = estate(tmp_path, {"environments/base/services.yaml": text})
    assert run(root, "build").exit_code == 0
    se = yaml.safe_load((root / "out/dev/egress-dev/api.yaml").read_text())
    assert se["metadata"]["annotations"][f"meshc.dev/{field}"] == value


def test_unquoted_date_in_env_yaml_is_a_string(tmp_path: Path) -> None:
    root = estate(tmp_path)
    env = root / "environments/dev/env.yaml"
    env.write_text(env.read_text().replace("trustDomain: cluster.local", "trustDomain: 2024-02-30"))
    result = run(root, "build")
    assert result.exit_code == 0, result.output  # a valid trust domain, read as the text written
    env.write_text(env.read_text().replace("namespace: egress-dev", "namespace: 2001-12-14 21:59:43.10 -5"))
    result = run(root, "build")
    assert result.exit_code == 2  # not a namespace name: an error at its line, not a traceback
    assert "environments/dev/env.yaml:4:12: error[D004]: '2001-12-14 21:59:43.10 -5'" in result.output


# --- templates, ignore file ------------------------------------------------------------------------

@pytest.mark.parametrize("edit, code", [
    (("| json", "| nosuch | json"), "X003"),
    (("{{", "{% if 1 is nosuchtest %}{% endif %}{{"), "X001"),
    (("{{", "{% for x in %}{{"), "X003"),
], ids=["unknown-filter", "unknown-test", "syntax"])
def test_broken_template_is_an_error_at_the_template_line(tmp_path: Path, edit: tuple[str, str], code: str) -> None:
    source = (REPO / "compiler/meshc/templates/serviceentry.json.j2").read_text()
    root = estate(tmp_path, {"templates/serviceentry.json.j2": source.replace(*edit, 1)})
    (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text() + "templates: templates\n")
    assert run(root, "build").exit_code == 0 or True  # first build may fail: that is the point
    result = run(root, "build")
    assert result.exit_code == 2
    assert f"serviceentry.json.j2:" in result.output and f"error[{code}]" in result.output
    assert "fix:" in result.output
    assert not list((root / "out").glob("*/index.json"))


@pytest.mark.parametrize("text", ["- !!python/name:os.system {}\n", "- !!set {a}\n", "- !custom {env: dev}\n",
                                  "- {env: !!binary aGk=}\n"])
def test_tags_in_the_ignore_file_are_refused(tmp_path: Path, text: str) -> None:
    root = estate(tmp_path)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"],
                   check=True)
    (root / ".meshc-diffignore").write_text(text)
    result = CliRunner().invoke(diff_command, ["--base", "HEAD", "-C", str(root)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "error[Y007]: unsupported YAML tag" in result.output and ".meshc-diffignore:1:" in result.output


# --- nothing silently lost ---------------------------------------------------------------------------

@pytest.mark.parametrize("files, hint", [
    ({"environments/qa/services.yaml": SERVICE}, "add environments/qa/env.yaml"),
    ({"environments/qa/env.yml": "name: qa\nnamespace: q\n"}, "rename environments/qa/env.yml to env.yaml"),
])
def test_folder_without_env_yaml_is_an_error(tmp_path: Path, files: dict[str, str], hint: str) -> None:
    root = estate(tmp_path)
    assert run(root, "build").exit_code == 0
    before = bundle(root)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (("build",), ("build", "--env", "dev"), ("check",)):
        result = run(root, *args)
        assert result.exit_code == 2, result.output
        assert "error[L006]: environments/qa/ has no env.yaml" in result.output and hint in result.output
    assert bundle(root) == before


def test_file_declaring_nothing_warns_and_the_summary_counts_lost_services(tmp_path: Path) -> None:
    root = estate(tmp_path, {"environments/base/more.yaml": SERVICE.replace("name: api", "name: api2")
                             .replace("api.example.com", "api2.example.com")})
    assert run(root, "build").exit_code == 0
    (root / "environments/base/more.yaml").write_text("# emptied by mistake\n")
    result = run(root, "build")
    assert result.exit_code == 0
    assert "environments/base/more.yaml:1:1: warning[L007]: declares nothing" in result.output
    assert "wrote" in result.output and "(1 service, +0 -1 against the previous bundle: lost api2)" in result.output


# --- validation as documented ----------------------------------------------------------------------

@pytest.mark.parametrize("host", ['"api.example.com\\n"', '"api.example.com\\r"', '"api.exa mple.com"',
                                  '"api.example.com\\t"', '"-api.example.com"'])
def test_hosts_match_in_full(tmp_path: Path, host: str) -> None:
    root = estate(tmp_path, {"environments/base/services.yaml": SERVICE.replace("[api.example.com]", f"[{host}]")})
    result = run(root, "build")
    assert result.exit_code == 2
    assert "error[V002]" in result.output and "environments/base/services.yaml:5:" in result.output


@pytest.mark.parametrize("where, labels", [
    ("clientSelector", '{"bad key": x}'), ("clientSelector", "{app: " + "v" * 64 + "}"),
    ("subset", '{"a/b/c": x}'), ("subset", '{app: "x y"}'), ("endpoint", "{app: -x}"),
    ("endpoint", '{"' + "k" * 64 + '": x}'),
])
def test_label_keys_and_values_are_validated_as_kubernetes_does(tmp_path: Path, where: str, labels: str) -> None:
    extra = {
        "clientSelector": "    clientSelector: LABELS\n",
        "subset": "    subsets:\n      - name: v1\n        labels: LABELS\n",
        "endpoint": "    endpoints:\n      - address: 10.0.0.1\n        labels: LABELS\n",
    }[where].replace("LABELS", labels)
    text = SERVICE + extra
    if where == "endpoint":
        text = text.replace("resolution: dns", "resolution: static")
    root = estate(tmp_path, {"environments/base/services.yaml": text})
    result = run(root, "build")
    assert result.exit_code == 2, result.output
    assert "error[V028]: invalid label" in result.output and "environments/base/services.yaml:" in result.output


def test_annotation_and_object_size_limits(tmp_path: Path) -> None:
    big = SERVICE.replace("description: An API", "description: " + "x" * (300 * 1024))
    root = estate(tmp_path, {"environments/base/services.yaml": big})
    result = run(root, "build")
    assert result.exit_code == 2 and "error[V029]: description is 307,2" in result.output
    labels = ", ".join(f"l{k}: {chr(97 + k) * 60}" for k in range(8))
    endpoints = "".join(f"      - address: 10.{i // 250}.{i % 250}.1\n        labels: {{{labels}}}\n"
                        for i in range(3000))
    huge = SERVICE.replace("resolution: dns", "resolution: static") + "    endpoints:\n" + endpoints
    (root / "environments/base/services.yaml").write_text(huge)
    result = run(root, "build")
    assert result.exit_code == 2 and "error[V030]: ServiceEntry api would be" in result.output
    assert "refuses objects over 1,572,864 bytes" in result.output


# --- errors point at the cause -------------------------------------------------------------------------

def test_enum_errors_list_the_values_and_suggest_the_meshc_spelling(tmp_path: Path) -> None:
    root = estate(tmp_path, {"environments/base/services.yaml": SERVICE.replace("resolution: dns",
                                                                               "resolution: DNS_ROUND_ROBIN")})
    result = run(root, "build")
    assert result.exit_code == 2
    assert ("'DNS_ROUND_ROBIN' is not one of none, static, dns, dns-round-robin (did you mean "
            "\"dns-round-robin\"? meshc spells Istio's DNS_ROUND_ROBIN as dns-round-robin)") in result.output
    assert "fix: write one of: none, static, dns, dns-round-robin" in result.output


def test_a_finding_an_overlay_causes_cites_the_overlay_line(tmp_path: Path) -> None:
    base = SERVICE.replace("      - {number: 443, protocol: HTTPS, name: https}",
                           "      - {number: 80, protocol: HTTP, name: http, targetPort: 443}\n"
                           "      - {number: 8080, protocol: HTTP, name: http-alt}\n"
                           "    trafficPolicy:\n      portLevel:\n        - port: 80\n"
                           "          tls: {mode: simple, sni: api.example.com}\n")
    overlay = ("overrides:\n  - name: api\n    ports:\n      - {number: 8080, protocol: HTTP, name: http-b}\n"
               "      - {number: 80, protocol: TLS}\n")
    root = estate(tmp_path, {"environments/base/services.yaml": base, "environments/prod/services.yaml": overlay})
    result = run(root, "build")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    head = next(i for i, line in enumerate(lines) if "error[V015]" in line)
    assert lines[head].startswith("./environments/prod/services.yaml:5:")
    assert any(line.strip().startswith("see also ./environments/base/services.yaml:14:") for line in lines[head:head + 4])


def test_the_same_finding_in_several_environments_is_printed_once(tmp_path: Path) -> None:
    root = estate(tmp_path, {"environments/base/services.yaml": SERVICE.replace("api.example.com", "apiexample")})
    result = run(root, "build")
    assert result.exit_code == 2
    assert result.output.count("error[V001]") == 1
    assert "at envs dev, prod service api hosts[0]" in result.output
    assert "1 error(s)" in result.output


# --- generated hostile documents for every file meshc reads ------------------------------------------

_SCALARS = st.one_of(
    st.sampled_from(["2025-02-29", "2024-02-30", "1:20", "0o12", "yes", "~", ".inf", "-", "*", "!", "&a", "*a",
                     "{{ x }}", "{% x %}", "%TAG", "---", "...", "\ufeff", "\u2028", "\x85", "null", "[", "{"]),
    st.text(max_size=12), st.integers(min_value=-2**70, max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
_RAW = st.one_of(
    _VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.sampled_from(["!!python/object:os.system {}\n", "a: &x [*x]\n", "a: 1\na: 2\n", "- !!binary aGk=\n",
                     "<<: {a: 1}\n", "? [a]\n: b\n", "%YAML 1.1\n---\na: 1\n", "\x00\x01", "a: 2025-02-29\n",
                     "waivers: [{code: X, owner: o, reason: r, expires: 2025-13-01}]\n",
                     "services: [{name: x, hosts: [2024-02-30]}]\n", "name: dev\nnamespace: 2024-01-01\n"]),
    st.text(max_size=40))

ENTRY_POINTS = {
    "environments/base/services.yaml": ("build",),
    "environments/dev/more.yaml": ("render", "dev"),
    "lint-input.yaml": ("lint", "lint-input.yaml"),
    ".meshc-diffignore": ("diff",),
    "environments/dev/env.yaml": ("build",),
    "environments/prod/services.yaml": ("check", "--layer", "istio"),
    "waivers.yaml": ("check", "--layer", "istio"),
    "meshc.yaml": ("build", "--skip-checks"),
    "templates/serviceentry.json.j2": ("build", "--skip-checks"),
}


@pytest.fixture(scope="module")
def base_estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = estate(tmp_path_factory.mktemp("hostile"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"],
                   check=True)
    return root


@pytest.mark.parametrize("target", sorted(ENTRY_POINTS))
def test_hostile_documents_never_crash(base_estate: Path, tmp_path: Path, target: str) -> None:
    @seed(20261206)
    @settings(max_examples=400 if LONG else 25, deadline=None, derandomize=not LONG, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=_RAW)
    def check(raw: str) -> None:
        root = tmp_path / "e"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base_estate, root)
        if target.startswith("templates/"):
            (root / "meshc.yaml").write_text((root / "meshc.yaml").read_text() + "templates: templates\n")
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw, encoding="utf-8", errors="surrogatepass") if "\ud800" not in raw else path.write_bytes(
            raw.encode("utf-8", "surrogatepass"))
        args = ENTRY_POINTS[target]
        if args == ("diff",):
            result = CliRunner().invoke(diff_command, ["--base", "HEAD", "-C", str(root)])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError(f"meshc diff raised {result.exception!r}\n{result.output}")
            assert result.exit_code in (0, 2), result.output
            return
        if args[0] == "lint":
            result = CliRunner().invoke(main, ["lint", str(path), "-C", str(root)])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError(f"meshc lint raised {result.exception!r}\n{result.output}")
            assert result.exit_code in (0, 1, 2), result.output
            return
        result = run(root, *args)
        assert result.exit_code in (0, 1, 2), result.output
        if result.exit_code == 2:
            assert "error[" in result.output, result.output  # a diagnostic says what is wrong
    check()


@pytest.mark.parametrize("target", ["/etc/hostname", "/etc", "../../../../outside"])
def test_a_base_ref_with_links_out_of_the_repository_is_refused(tmp_path: Path, target: str) -> None:
    root = estate(tmp_path)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", *args], check=True,
                       capture_output=True)
    git("init", "-q")
    (root / "environments/base/link.yaml").symlink_to(target)
    git("add", "-A")
    git("commit", "-qm", "link")
    (root / "environments/base/link.yaml").unlink()
    result = CliRunner().invoke(diff_command, ["--base", "HEAD", "-C", str(root)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "links that leave the repository (environments/base/link.yaml)" in result.output


def test_a_declaration_expanding_past_the_budget_is_refused(tmp_path: Path) -> None:
    ports = "".join(f"      - {{number: {1000 + i}, protocol: TCP, name: p{i}}}\n" for i in range(64))
    endpoints = "".join(f"      - address: 10.1.{i // 250}.{i % 250 + 1}\n" for i in range(2000))
    text = (SERVICE.replace("resolution: dns", "resolution: static")
            .replace("      - {number: 443, protocol: HTTPS, name: https}\n", ports) + "    endpoints:\n" + endpoints)
    root = estate(tmp_path, {"environments/base/services.yaml": text})
    result = run(root, "build", "--skip-checks")
    assert result.exit_code == 2
    assert "error[V031]: the service expands to 64 Envoy clusters" in result.output
    assert "128,000 endpoint entries" in result.output and "split it" in result.output


@pytest.mark.parametrize("value, says", [
    ('"Stripe \\uFFFE API"', "U+FFFE (a Unicode noncharacter)"), ('"a\\x7Fb"', "U+007F (DEL)"),
    ('"a\\x85b"', "U+0085 (NEL, a C1 control)"), ('"x\\nends\\u2028"', "line or paragraph separator"),
])
def test_strings_kubernetes_cannot_carry_are_refused_at_their_position(tmp_path: Path, value: str, says: str) -> None:
    root = estate(tmp_path, {"environments/base/services.yaml": SERVICE.replace("description: An API",
                                                                               f"description: {value}")})
    result = run(root, "build")
    assert result.exit_code == 2
    assert "environments/base/services.yaml:4:18: error[Y008]: value '" in result.output and says in result.output


def test_selector_labels_are_validated(tmp_path: Path) -> None:
    text = (SERVICE.replace("location: external", "location: internal").replace("resolution: dns", "resolution: static")
            + "    endpointsAs: workloadEntries\n    selector: {app: " + "v" * 64 + "}\n"
            + "    endpoints:\n      - address: 10.0.0.1\n")
    root = estate(tmp_path, {"environments/base/services.yaml": text})
    result = run(root, "build")
    assert result.exit_code == 2 and "error[V028]: invalid label value" in result.output
