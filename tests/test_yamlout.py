"""The YAML emitter: whatever the data, every reader of a bundle reads back exactly the same data.

Readers: PyYAML over libyaml (CSafeLoader) and in pure Python (SafeLoader); and kubectl, whose Go
readers are stricter than libyaml in places: `kubectl label --local -o json -f FILE` reads a file
the way `kubectl apply` does (sigs.k8s.io/yaml, go-yaml v2) and prints what it read as JSON;
`kubectl kustomize DIR` (a directory holding a kustomization.yaml that lists the bundle file)
reads it the way kustomize, Argo CD and Flux do (kyaml, go-yaml v3, and a round trip through JSON),
and its output is read back with `kubectl label` too. Many strings are batched into one bundle, so
kubectl runs a few times, not thousands. The kubectl tests skip, saying so, when kubectl is not
installed (MESHC_KUBECTL=/path/to/kubectl picks another binary); .ci/run installs Debian's
kubernetes-client. They were run against kubectl 1.20 (Debian 12) and 1.27 to 1.33.

Character classes (CLASSES below): every one is written double-quoted and escaped where a reader
needs it, and read back the same by PyYAML. Kubernetes' tooling cannot carry DEL, the C1 controls
(NEL included), U+FFFE and U+FFFF even escaped, nor a key '<<' or longer than 1024 characters as
JSON: `kubernetes_problem` names them (meshc refuses such declarations) and
test_kustomize_cannot_carry_what_kubernetes_problem_names shows kustomize failing on each. Lone
surrogates cannot be written in UTF-8 at all (`UnencodableString`).

Determinism: in CI the property tests are derandomized (hypothesis derives its examples from the
test itself, the same on every run), every class has its own @example, and the kubectl batch is
drawn from random.Random(SEED). A long random run, by hand:

    MESHC_LONG_PROPERTY=1 .venv/bin/python -m pytest -q tests/test_yamlout.py

(20,000 random examples per property test, and 20 kubectl batches of 2,000 strings from random
seeds, each printed when it fails).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from meshc.files.yamlout import KEY_LIMIT, UnencodableString, dump, dump_all, kubernetes_problem

LONG = os.environ.get("MESHC_LONG_PROPERTY") == "1"
PROPERTY = settings(max_examples=20_000 if LONG else 500, derandomize=not LONG, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEED = 20240229

BIDI = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
        "\u2066", "\u2067", "\u2068", "\u2069"]
CLASSES: dict[str, list[str]] = {
    "C0 controls": [chr(c) for c in range(0x20)] + ["a\x00b", "\x1b[31mred\x1b[0m", "a\x0bb\x0cc"],
    "DEL and C1 controls": [chr(c) for c in range(0x7F, 0xA0)] + ["a\x85b", "x\x7f"],
    "noncharacters U+FFFE U+FFFF": ["\ufffe", "\uffff", "Stripe \ufffe API", "a\uffffb"],
    "line and paragraph separators": ["\u2028", "\u2029", "a\u2028b", "a\u2029b", "\u2028\u2028",
                                      "a\n\u2028b", "\u2029\na", "a\n\u2029", "a\nb\u2028"],
    "bidi controls": BIDI + ["admin\u202e\u2066txt.exe\u2069"],
    "byte order mark": ["\ufeff", "\ufeffa", "a\ufeff", "a\ufeffb", "\ufeff\ufeff"],
    "non-BMP": ["\U0001F600", "a\U0001F600b", "\U00010000", "\U0010FFFF", "\U0001FFFE",
                "\U0001D518\U0001D52B", "\u00a0", "\ud7ff\ue000\ufffd", "\ufdd0"],
    "whitespace": ["\t", "a\tb", "\ttab", " ", "  ", " lead", "trail ", " both ", "a  b", "a\nb",
                   "a\n", "\n", "\n\n", "a\r\nb", "\r", "a\n\nb", "line\n  indented", "a \n b"],
    "YAML words": ["yes", "no", "on", "off", "y", "n", "Y", "N", "Yes", "NO", "On", "OFF", "true",
                   "False", "TRUE", "null", "Null", "NULL", "~", "", "nan", "inf", "Infinity"],
    "numbers and dates": ["0o12", "0O12", "1_000", "1__0", "_1", "2024-02-30", "2024-01-01",
                          "2024-1-5", "2001-12-14t21:59:43.10-05:00", "2002-12-14 21:59:43", "1e3",
                          "1E3", "1e-3", "6.e4", "0e0", ".inf", "-.inf", "+.INF", ".NaN", ".nan",
                          "0x1F", "0X1f", "0x_1F", "0B1", "0b101", "012", "08", "096", "0o_7", "1:20",
                          "190:20:30.15", "+1", "-1", "0", "00", "0.5", ".5", "5.", "-0", "1.0.0",
                          "10.0.0.1", "10.0.0.0/24", "5s", "250ms", "0x1p-2", "0x1.8p1",
                          "9223372036854775808", "18446744073709551616", "1" * 400, "."],
    "indicators": ["#", "#a", "a #b", "a#b", ": ", "a: b", "a:", ":a", "a:b", "- ", "-", "- a",
                   "-a", "---", "--- a", "...", "... a", "%", "%YAML 1.1", "%TAG", "a%b", "@", "@a",
                   "`", "`a`", "!", "!!str", "!a", "&", "&a", "*", "*a", "|", "|-", "|+", ">",
                   ">-", "?", "? a", "?a", "{", "}", "[", "]", "{a: 1}", "[1, 2]", "{{ 7*7 }}", ",",
                   "a,b", "'", "''", "'a'", '"', '""', '"a"', "\\", "\\n", "\\x00", "\\u0041", "<<",
                   "=", "a=b", "/", "./a", "a/", "http://x/y?q=1#f", "key: value # comment",
                   "\"},{\"kind\":\"Secret", "a\\", "$patch", "$(VAR)", "${VAR}"],
    "long strings": ["x" * 5000, "word " * 2000, "a\n" * 500, "\u00e9" * 3000, "\U0001F600" * 300,
                     "\u2028" * 500, "<" * 500],
}
EVERY = [s for strings in CLASSES.values() for s in strings]
CARRIED = [s for s in EVERY if kubernetes_problem(s) is None]
REFUSED = [s for s in EVERY if kubernetes_problem(s) is not None]
LONG_KEYS = ["k" * 1100, "\u00e9" * 600, "\U0001F600" * 300, "x" * (KEY_LIMIT - 2), "\\" * 600]

# What the emitter must never write raw: anything outside libyaml's and go-yaml's printable set,
# what they treat as a line break (NEL, U+2028, U+2029) or a byte order mark, tabs, bidi controls.
_RAW_BAD = re.compile("[^\\n\\x20-\\x7e\\xa0-\\ud7ff\\ue000-\\ufffd\\U00010000-\\U0010ffff]"
                      "|[\\u2028\\u2029\\ufeff" + "".join(BIDI) + "]")


def text_strategy() -> st.SearchStrategy[str]:
    special = st.sampled_from(sorted({c for s in EVERY if len(s) == 1 for c in s}) + list(" \t\n:#-'\"\\"))
    words = st.sampled_from([s for s in EVERY if len(s) < 40])
    return st.one_of(
        st.text(),
        st.text(alphabet=st.one_of(special, st.characters(codec="utf-8")), max_size=12),
        words,
        st.builds(lambda a, b, c: a + b + c, words, special, words),
    )


TEXT = text_strategy()
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), TEXT,
                    st.floats(allow_nan=False, allow_infinity=False))
KEYS = st.one_of(st.text(max_size=10), TEXT)
DATA = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=20)


def with_examples(values: list[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """One @example per value."""
    def wrap(test: Callable[..., None]) -> Callable[..., None]:
        for value in reversed(values):
            test = example(value)(test)
        return test
    return wrap


def class_examples() -> list[dict[str, Any]]:
    """Each class as values, as keys, in lists and nested; plus long keys."""
    out: list[dict[str, Any]] = []
    for name, strings in CLASSES.items():
        out.append({"class": name, "values": list(strings), "nested": [[s] for s in strings[:5]]})
        out.append({s: {s: [s, {s: s}]} for s in strings})
    out.append({k: [k, {k: {"a": [1, {}]}}] for k in LONG_KEYS})
    out.append({"list": [{k: 1} for k in LONG_KEYS], "lists": [[{k: [k]}] for k in LONG_KEYS[:2]]})
    return out


def read_back(text: str) -> list[Any]:
    """The documents as libyaml reads them, checked equal to what pure-Python PyYAML reads."""
    fast = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    assert list(yaml.load_all(text, Loader=yaml.SafeLoader)) == fast
    return fast


def assert_written_safely(text: str) -> None:
    text.encode("utf-8")
    assert not _RAW_BAD.search(text), f"written raw: {_RAW_BAD.findall(text)[:5]!r}"


@PROPERTY
@given(st.dictionaries(KEYS, DATA, max_size=5))
@with_examples(class_examples())
def test_round_trip(value: dict) -> None:
    text = dump(value)
    assert_written_safely(text)
    assert read_back(text) == [value]


@PROPERTY
@given(TEXT)
@with_examples(EVERY + LONG_KEYS)
def test_any_string_as_key_value_and_item(text: str) -> None:
    value = {text: text, "v": [text, {text: [text]}], "k": {text: {}}}
    written = dump(value)
    assert_written_safely(written)
    assert read_back(written) == [value]
    assert read_back(dump([text, [text]])) == [[text, [text]]]


def test_multi_document() -> None:
    docs = [{"a": 1}, {"b": ["x", {"c": None}]}, {"...": "---", "d": "..."}]
    assert read_back(dump_all(docs)) == docs


@pytest.mark.parametrize("text", ["...", "--- a", "x", "\ufeff", "yes"])
def test_top_level_scalar(text: str) -> None:
    assert read_back(dump(text)) == [text]


def test_plain_when_safe_quoted_when_not() -> None:
    assert dump({"k": "api.example.com"}) == "k: api.example.com\n"
    assert dump({"k": "yes"}) == 'k: "yes"\n'
    assert dump({"k": "a\nb"}) == 'k: "a\\nb"\n'
    for plain in ("10.0.0.1", "10.0.0.0/24", "5s", "250ms", "1.0.0", "v1", "a:b", "app.kubernetes.io/name",
                  "example.com", "_x", "x_"):
        assert dump({"k": plain}) == f"k: {plain}\n", plain
    # read as numbers, booleans, null or dates by go-yaml (kubectl) or YAML 1.2, not by PyYAML
    for quoted in ("0o12", "1e3", "1E3", "6.e4", "0B1", "096", "08", "y", "n", "Y", "N", "0x_1",
                   "2024-02-30", "2024-1-5", "...", "nan", "Infinity"):
        assert dump({"k": quoted}) == f'k: "{quoted}"\n', quoted
        assert dump({quoted: 1}) == f'"{quoted}": 1\n', quoted


@pytest.mark.parametrize(("text", "written"), [
    ("\ufffe", '"\\ufffe"'), ("\uffff", '"\\uffff"'), ("\x7f", '"\\x7f"'), ("\x85", '"\\x85"'),
    ("\x9f", '"\\x9f"'), ("\ufeff", '"\\ufeff"'), ("\u2028", '"\\u2028"'), ("\u2029", '"\\u2029"'),
    ("\u202e", '"\\u202e"'), ("\u2066", '"\\u2066"'), ("\x00", '"\\0"'), ("\x1b", '"\\x1b"'),
    ("\t", '"\\t"'), ("\r\n", '"\\r\\n"'), ('"\\', '"\\"\\\\"'), ("\U0001F600", '"\U0001F600"'),
    ("Stripe \ufffe API", '"Stripe \\ufffe API"'), ("trail ", '"trail "'),
])
def test_escapes(text: str, written: str) -> None:
    assert dump({"k": text}) == f"k: {written}\n"
    assert read_back(dump({"k": text})) == [{"k": text}]


def test_number_like_strings_of_any_length_take_linear_time() -> None:
    import time

    start = time.monotonic()
    for text in ("1" * 200_000 + "x", "1_" * 100_000 + ".", "0x" + "1" * 200_000 + "g", "1" * 200_000 + ":",
                 "." + "1" * 200_000 + "e", "1" * 100_000 + "." + "1" * 100_000 + "x", "1:" * 100_000):
        assert read_back(dump({"k": text})) == [{"k": text}]
    assert time.monotonic() - start < 10


def test_long_keys_are_explicit() -> None:
    key = "k" * 1100
    text = dump({key: {"a": [1, 2]}, "b": [{key: 1, "c": 2}]})
    assert text == f"? {key}\n:\n  a:\n  - 1\n  - 2\nb:\n- ? {key}\n  : 1\n  c: 2\n"
    assert read_back(text) == [{key: {"a": [1, 2]}, "b": [{key: 1, "c": 2}]}]
    short = "k" * 200
    assert dump({short: 1}) == f"{short}: 1\n"


@pytest.mark.parametrize("value", [{"a": "x\ud800"}, {"a\udfff": 1}, ["\ud83d\ude00"]])
def test_lone_surrogates_cannot_be_written(value: Any) -> None:
    with pytest.raises(UnencodableString, match="surrogate U\\+D"):
        dump(value)


def test_kubernetes_problem() -> None:
    for code in [*range(0x7F, 0xA0), 0xFFFE, 0xFFFF, 0xD800, 0xDFFF]:
        assert kubernetes_problem(f"a{chr(code)}b") is not None, hex(code)
        assert kubernetes_problem(f"a{chr(code)}b", key=True) is not None, hex(code)
    for text in CARRIED:
        assert kubernetes_problem(text) is None, text
    assert "merge key" in (kubernetes_problem("<<", key=True) or "")
    assert kubernetes_problem("<<") is None
    assert kubernetes_problem("x" * (KEY_LIMIT - 2), key=True) is None
    assert "too long" in (kubernetes_problem("x" * (KEY_LIMIT - 1), key=True) or "")
    assert kubernetes_problem("x" * (KEY_LIMIT - 1)) is None
    assert kubernetes_problem("<" * 170, key=True) is None  # Go's JSON writes '<' as \u003c
    assert kubernetes_problem("<" * 171, key=True) is not None
    assert kubernetes_problem("\n" * 511, key=True) is None
    assert kubernetes_problem("\x01" * 171, key=True) is not None
    assert "separator" in (kubernetes_problem("a\nb\u2029") or "")
    assert kubernetes_problem("a\u2029") is None and kubernetes_problem("a\n\u2029b") is None


# --- kubectl ------------------------------------------------------------------------------------

KUBECTL = os.environ.get("MESHC_KUBECTL") or shutil.which("kubectl")


@pytest.fixture(scope="module")
def kubectl() -> str:
    if not KUBECTL:
        pytest.skip("kubectl is not installed, so bundles are only checked against PyYAML "
                    "(Debian: apt-get install kubernetes-client; .ci/run installs it)")
    return KUBECTL


def probe(i: int, text: str) -> dict[str, Any]:
    """An object holding `text` as a value, list item and (when Kubernetes can carry it) key."""
    spec: dict[str, Any] = {"value": text, "list": [text, [text]], "nested": [{"v": text}]}
    if kubernetes_problem(text, key=True) is None:
        spec["keys"] = {text: {text: [text]}}
        spec["items"] = [{text: i, "x": [{text: text}]}]
    return {"apiVersion": "meshc.test/v1", "kind": "Probe", "metadata": {"name": f"p{i}"}, "spec": spec}


TYPED = {"apiVersion": "meshc.test/v1", "kind": "Probe", "metadata": {"name": "typed"},
         "spec": {"int": 1, "neg": -5, "big": 2**53, "float": 1.5, "small": 1e-05, "large": 1e16,
                  "true": True, "false": False, "null": None, "emptyList": [], "emptyMap": {}}}


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    decoder, pos = json.JSONDecoder(), 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        obj, pos = decoder.raw_decode(text, pos)
        yield from (obj["items"] if obj.get("kind") == "List" else [obj])


def _specs(kubectl: str, source: Path | bytes, must: bool = True) -> dict[str, Any] | None:
    """name -> spec of every object, as `kubectl label --local` (kubectl apply's reader) reads them;
    None when it cannot read them and not `must`."""
    args = [kubectl, "label", "--local", "-o", "json", "meshc-probe=1", "-f"]
    run = subprocess.run(args + (["-"] if isinstance(source, bytes) else [str(source)]),
                         input=source if isinstance(source, bytes) else None, capture_output=True, timeout=300)
    if run.returncode != 0 and not must:
        return None
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")[-2000:]
    return {obj["metadata"]["name"]: obj["spec"] for obj in _json_objects(run.stdout.decode("utf-8"))}


def _kustomize(kubectl: str, directory: Path, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bundle.yaml").write_bytes(("---\n" + dump_all(objects)).encode("utf-8"))
    (directory / "kustomization.yaml").write_text(dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                                        "kind": "Kustomization", "resources": ["bundle.yaml"]}))
    return subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, timeout=300)


def _refused_by_kustomize(kubectl: str, directory: Path, objects: list[dict[str, Any]]) -> list[str]:
    """The names of the objects that make `kubectl kustomize` fail (found by halving the batch)."""
    if _kustomize(kubectl, directory, objects).returncode == 0:
        return []
    if len(objects) == 1:
        return [objects[0]["metadata"]["name"]]
    half = len(objects) // 2
    return (_refused_by_kustomize(kubectl, directory, objects[:half])
            + _refused_by_kustomize(kubectl, directory, objects[half:]))


def check_with_kubectl(kubectl: str, directory: Path, strings: list[str]) -> None:
    """Every string, in one bundle, reads back the same through kubectl and kustomize."""
    strings = list(dict.fromkeys(strings))
    objects = [probe(i, s) for i, s in enumerate(strings)] + [TYPED]
    expected = {obj["metadata"]["name"]: obj["spec"] for obj in objects}
    run = _kustomize(kubectl, directory, objects)
    if run.returncode != 0:
        names = _refused_by_kustomize(kubectl, directory / "bisect", objects)
        bad = [strings[int(n[1:])] if n != "typed" else n for n in names]
        pytest.fail(f"kubectl kustomize refuses {bad!r}: {run.stderr.decode('utf-8', 'replace')[-500:]}")
    for how, source in (("kubectl", directory / "bundle.yaml"), ("kustomize", run.stdout)):
        got = _specs(kubectl, source) or {}
        wrong = [(strings[int(name[1:])] if name != "typed" else name, got.get(name))
                 for name, spec in expected.items() if got.get(name) != spec]
        assert not wrong, f"{how} reads {len(wrong)} string(s) differently: {wrong[:10]!r}"


def random_strings(rng: random.Random, count: int) -> list[str]:
    """Strings mixing the characters of every class with any other character Kubernetes carries."""
    pool = sorted({c for s in CARRIED for c in s}) + list(" \t\n:#-'\"\\{}[],&*!|>%@`?~=<")
    words = [s for s in CARRIED if len(s) < 40]

    def anychar() -> str:
        while True:
            ch = chr(rng.choice((rng.randrange(0x20, 0x800), rng.randrange(0x800, 0x10000),
                                 rng.randrange(0x10000, 0x110000))))
            if kubernetes_problem(ch) is None:
                return ch

    out = []
    for _ in range(count):
        size = rng.choice((1, 2, 3, 5, 8, 20, 60))
        text = "".join(rng.choice(pool) if rng.random() < 0.6 else anychar() for _ in range(size))
        if rng.random() < 0.2:
            text = rng.choice(words) + text + rng.choice(words)
        if kubernetes_problem(text) is None:
            out.append(text)
    return out


def test_kubectl_reads_every_class_back(kubectl: str, tmp_path: Path) -> None:
    check_with_kubectl(kubectl, tmp_path / "classes", CARRIED + LONG_KEYS)


def test_kubectl_reads_random_strings_back(kubectl: str, tmp_path: Path) -> None:
    seeds, count = ([random.randrange(2**32) for _ in range(20)], 2000) if LONG else ([SEED], 1000)
    for seed in seeds:
        try:
            check_with_kubectl(kubectl, tmp_path / str(seed), random_strings(random.Random(seed), count))
        except BaseException:
            print(f"failing kubectl batch: random_strings(random.Random({seed}), {count})")
            raise


def test_kustomize_cannot_carry_what_kubernetes_problem_names(kubectl: str, tmp_path: Path) -> None:
    """Why meshc refuses them: kustomize fails on each, or reads it back changed, although kubectl
    itself reads the YAML meshc writes for it right. If this fails, a kubectl release has fixed it
    and kubernetes_problem can be relaxed."""
    chars = [chr(c) for c in range(0x7F, 0xA0)] + ["\ufffe", "\uffff"]
    if not LONG:
        chars = ["\x7f", "\x80", "\x85", "\x9f", "\ufffe", "\uffff"]
    cases = [probe(i, f"a{c}b") for i, c in enumerate(chars)]
    cases += [probe(len(cases), "a\nb\u2028"), probe(len(cases) + 1, "\n\u2029")]
    cases.append({**probe(len(cases), "ok"), "spec": {"keys": {"<<": {"a": 1}}}})
    cases.append({**probe(len(cases), "ok"), "spec": {"keys": {"x" * (KEY_LIMIT - 1): 1}}})
    for obj in cases:  # each followed by another object, which kustomize's output may lose
        name = obj["metadata"]["name"]
        directory = tmp_path / name
        run = _kustomize(kubectl, directory, [obj, TYPED])
        expected = {name: obj["spec"], "typed": TYPED["spec"]}
        assert _specs(kubectl, directory / "bundle.yaml") == expected
        if run.returncode == 0:
            assert _specs(kubectl, run.stdout, must=False) != expected, f"kustomize now carries {obj['spec']!r}"
    fits = {**probe(0, "ok"), "spec": {"keys": {"x" * (KEY_LIMIT - 2): 1}}}
    run = _kustomize(kubectl, tmp_path / "fits", [fits])
    assert run.returncode == 0 and _specs(kubectl, run.stdout) == {"p0": fits["spec"]}


BUNDLE_ENV = "name: dev\nnamespace: egress\n"
BUNDLE_SERVICES = """services:
  - name: api
    owner: team
    description: DESCRIPTION
    hosts: [api.example.com]
    resolution: dns
    ports:
      - {number: 443, protocol: HTTPS}
"""


def test_a_built_bundle_goes_through_kubectl(kubectl: str, tmp_path: Path) -> None:
    """What `meshc build` writes for a description holding every class Kubernetes can carry."""
    from meshc.model.bundle import content
    from meshc.pipeline import compile_estate
    from meshc.files.tree import MemoryTree
    from meshc.files.yamlout import scalar_str

    description = "".join(s for s in CARRIED if len(s) < 40)
    declared = BUNDLE_SERVICES.replace("DESCRIPTION", scalar_str(description))
    result = compile_estate(MemoryTree({"environments/dev/env.yaml": BUNDLE_ENV,
                                        "environments/base/a.yaml": declared}))
    assert result.ok, [str(d) for d in result.diagnostics]
    bundle = result.envs["dev"].bundle
    assert bundle is not None
    for name, data in bundle.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content(data))
    run = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")[-2000:]
    objects = list(_json_objects(subprocess.run(
        [kubectl, "label", "--local", "-o", "json", "meshc-probe=1", "-f", "-"], input=run.stdout,
        capture_output=True, timeout=300, check=True).stdout.decode("utf-8")))
    entries = [o for o in objects if o["kind"] == "ServiceEntry"]
    assert [o["metadata"]["annotations"]["meshc.dev/description"] for o in entries] == [description]
