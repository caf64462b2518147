"""One parser for Go durations and one helper module for addresses (`meshc.model.values`, `meshc.model.netaddr`).

Durations everywhere (declaration checks V019, the Istio rules I050, the Envoy conversions, CEL's
`duration()`) follow Go's `time.ParseDuration`: int64 nanoseconds, each part's fraction through
float64, no surrounding blanks; the error messages are Go's.
"""

from __future__ import annotations

import pytest

from meshc.check.istio.primitives import check_duration, parse_duration
from meshc.check.schema.cel_ext import go_parse_duration
from meshc.model.netaddr import cidr_parts, is_cidr, is_ip, normalise_address
from meshc.model.values import duration_nanos, parse_go_duration
from meshc.proxy.envoy.values import envoy_duration, whole_seconds

GO = [("0", 0), ("-0", 0), ("+0", 0), ("1ms", 10**6), ("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000),
      (".5s", 500_000_000), ("1.s", 10**9), ("5µs", 5000), ("5μs", 5000), ("1us", 1000), ("-1.5h", -5400 * 10**9),
      ("9223372036854775807ns", 2**63 - 1), ("-9223372036854775808ns", -(2**63)), ("1h1m1s1ms1us1ns", 3661001001001),
      ("0.5ns0.5ns", 0),  # each part's fraction is truncated on its own
      ("0.22468534397750h", 808867238318)]  # Go converts fractions through float64


@pytest.mark.parametrize("text,nanos", GO)
def test_go_durations(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos
    assert duration_nanos(text) == nanos == parse_duration(text) == go_parse_duration(text)


@pytest.mark.parametrize("text,message", [
    ("", 'time: invalid duration ""'), ("10", 'time: missing unit in duration "10"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'), (".s", 'time: invalid duration ".s"'),
    ("1s ", 'time: unknown unit "s " in duration "1s "'), (" 1s", 'time: invalid duration " 1s"'),
    ("1s\n", 'time: unknown unit "s\n" in duration "1s\n"'), ("--1s", 'time: invalid duration "--1s"'),
    ("\u0663s", 'time: invalid duration "\u0663s"'), ("2562048h", 'time: invalid duration "2562048h"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("99999999999999999999x", 'time: invalid duration "99999999999999999999x"'),  # integer overflow first
])
def test_what_go_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message
    assert duration_nanos(text) is None and parse_duration(text) is None


def test_every_reader_uses_it() -> None:
    assert envoy_duration(" 1s") == " 1s"  # not a Go duration: passed on for the Envoy check to report
    assert envoy_duration("2562048h") == "2562048h"
    assert whole_seconds("1500ms") == 1 and whole_seconds("1s\n") == "1s\n"
    assert [f.code for f in check_duration(" 250ms", ("x",))] == ["I050"]
    assert check_duration("250ms", ("x",)) == []



def test_ip_helpers() -> None:
    assert is_ip("10.0.0.1") and is_ip("::1") and not is_ip("10.0.0.0/8") and not is_ip("a.example.com")
    assert is_cidr("10.0.0.0/8") and not is_cidr("10.0.0.1") and not is_cidr("10.0.0.0/8/8")
    assert cidr_parts("10.0.0.1/8") == ("10.0.0.0", 8) and cidr_parts("10.0.0.1") is None
    assert normalise_address("10.0.0.1/32") == "10.0.0.1" and normalise_address("10.0.0.0/24") == "10.0.0.0/24"


