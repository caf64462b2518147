"""meshc reads YAML scalars as Kubernetes' tooling does, not as PyYAML's YAML 1.1 (meshc.files.source).

Plain scalars resolve by the YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution),
and a `:` inside a plain scalar of a flow collection ends it only before a blank, as go-yaml's
scanner (vendor/gopkg.in/yaml.v2/scannerc.go in kubernetes/kubernetes, which kubectl and the API
server read YAML with) does: `addresses: [1.2.3.4, 001:db8::]` (the IPv6 address 1:db8::) is two
strings, where PyYAML reads `{'001:db8:': None}` (pure Python) or fails (libyaml). Declarations and
`meshc lint` share the reader; docs/checks.md ("YAML scalars") lists what changed for declarations.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from meshc.check.lint import lint_docs
from meshc.files.source import parse

# (plain scalar, PyYAML's YAML 1.1 value, meshc's YAML 1.2 core value)
SCALARS: list[tuple[str, Any, Any]] = [
    ("yes", True, "yes"), ("no", False, "no"), ("on", True, "on"), ("off", False, "off"),
    ("Yes", True, "Yes"), ("y", "y", "y"), ("true", True, True), ("False", False, False), ("TRUE", True, True),
    ("0o17", "0o17", 15), ("017", 15, 17), ("0x1F", 31, 31), ("0b11", 3, "0b11"), ("1_000", 1000, "1_000"),
    ("+12", 12, 12), ("-7", -7, -7), ("1:20", 80, "1:20"), ("190:20:30", 685230, "190:20:30"),
    ("1e3", "1e3", 1000.0), ("1.5e-3", 0.0015, 0.0015), ("-.5", "-.5", -0.5), ("1.", 1.0, 1.0),
    (".inf", math.inf, math.inf), ("-.Inf", -math.inf, -math.inf), ("~", None, None), ("Null", None, None),
    ("2024-02-30", "ValueError", "2024-02-30"), ("2001-01-01", "date", "2001-01-01"), ("=", "value tag", "="),
    ("12:30:00", 45000, "12:30:00"), ("2001:db8::1", "2001:db8::1", "2001:db8::1"),
]


def _read(text: str) -> Any:
    docs, diags = parse("t.yaml", text.encode())
    assert not diags, [(d.code, d.message) for d in diags]
    return docs[0].value


@pytest.mark.parametrize("plain,yaml11,yaml12", SCALARS, ids=[s[0] for s in SCALARS])
def test_plain_scalars_resolve_as_yaml_1_2(plain: str, yaml11: Any, yaml12: Any) -> None:
    value = _read(f"v: {plain}\nq: '{plain}'\nf: [{plain}]\n")
    assert value["q"] == plain  # quoted: always the string
    for got in (value["v"], value["f"][0]):
        assert type(got) is type(yaml12) and (got == yaml12 or (got != got and yaml12 != yaml12))
    if isinstance(yaml11, (bool, int, float)) or yaml11 is None:  # the table's 1.1 column is PyYAML's
        assert yaml.safe_load(f"v: {plain}")["v"] == yaml11


def test_nan() -> None:
    assert math.isnan(_read("v: .NaN")["v"])


def test_colons_in_flow_scalars_as_go_yaml() -> None:
    assert _read("addresses: [1.2.3.4, 001:db8::]") == {"addresses": ["1.2.3.4", "001:db8::"]}
    assert _read("a: [001:db8::, {b: 1:2}, 'x']\nc: 001:db8::1") == {"a": ["001:db8::", {"b": "1:2"}, "x"],
                                                                     "c": "001:db8::1"}
    assert _read("a: {k: v, l: [1, 2]}") == {"a": {"k": "v", "l": [1, 2]}}  # `: ` still separates
    docs, diags = parse("t.yaml", b"a: [b: ]\n")
    assert not diags and docs[0].value == {"a": [{"b": None}]}


def test_explicit_tags_must_spell_a_yaml_1_2_value() -> None:
    assert _read("a: !!float 1\nb: !!int 0x1F\nc: !!str yes") == {"a": 1.0, "b": 31, "c": "yes"}
    docs, diags = parse("t.yaml", b"a: !!bool yes\n")
    assert [d.code for d in diags] == ["Y007"] and not docs


def test_merge_keys_are_still_refused() -> None:
    _, diags = parse("t.yaml", b"a: &x {b: 1}\nc:\n  <<: *x\n")
    assert [d.code for d in diags] == ["Y007"]


def test_lint_reads_istios_ipv6_address_example() -> None:
    """A ServiceEntry with `addresses: [1.2.3.4, 001:db8::]` (as in Istio's valid examples) lints clean:
    both addresses are strings, so neither the CRD schema nor I106 (ValidateIPSubnet) objects."""
    text = (b"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: v6, namespace: default}\n"
            b"spec:\n  hosts: [v6.example.com]\n  addresses: [1.2.3.4, 001:db8::]\n"
            b"  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n"
            b"  endpoints: [{address: 1.2.3.5}]\n")
    docs, diags = parse("se.yaml", text, carried=False)
    assert not diags and docs[0].value["spec"]["addresses"] == ["1.2.3.4", "001:db8::"]
    assert [d.code for d in lint_docs(docs, None)] == []
