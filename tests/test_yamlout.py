"""The YAML emitter: whatever the data, PyYAML reads back exactly the same data."""

from __future__ import annotations

import yaml
from hypothesis import given, settings, strategies as st

from meshc.yamlout import dump, dump_all

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                    st.floats(allow_nan=False, allow_infinity=False))
DATA = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=10), DATA, max_size=5))
def test_round_trip(value: dict) -> None:
    assert yaml.safe_load(dump(value)) == value


def test_multi_document() -> None:
    docs = [{"a": 1}, {"b": ["x", {"c": None}]}]
    assert list(yaml.safe_load_all(dump_all(docs))) == docs


def test_plain_when_safe_quoted_when_not() -> None:
    assert dump({"k": "api.example.com"}) == "k: api.example.com\n"
    assert dump({"k": "yes"}) == 'k: "yes"\n'
    assert dump({"k": "a\nb"}) == 'k: "a\\nb"\n'
