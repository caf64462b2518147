"""A small, fast YAML emitter for emitted manifests (plain data only).

Block style in the layout kubectl prints (2-space indent, list items at their key's indent).
A string is written plain only when every YAML reader of a bundle reads it back as the same
string: libyaml/PyYAML (YAML 1.1), go-yaml v2 (kubectl apply, via sigs.k8s.io/yaml) and go-yaml v3
(kustomize's kyaml, YAML 1.2), each of which reads some plain scalars as numbers, booleans, null or
timestamps that the others read as strings ("0o12", "1e3", "0B1", "y", "2024-01-01"). Any other
string is double-quoted, with every character escaped that a YAML reader refuses raw or treats as
a line break (C0 controls but LF, DEL, C1 controls incl. NEL, U+2028/U+2029, BOM, U+FFFE, U+FFFF),
every bidirectional-text control (so a reviewer sees them, CVE-2021-42574), '"' and '\\'; so no
string can change the structure or read back differently. A key too long to be a YAML simple key
(1024 characters) is written as an explicit `? key` entry. Lone surrogates (U+D800-U+DFFF) cannot
be written in UTF-8 at all: `dump` raises `UnencodableString` (meshc rejects them earlier).

Kubernetes' tooling cannot carry some characters even when escaped: kustomize converts every
object through JSON, whose encoder writes them raw, and then refuses its own output (DEL, C1
controls, U+FFFE, U+FFFF) or folds NEL into a space, it takes no key longer than 1024 characters,
and it writes a multi-line string ending in U+2028/U+2029 as a block it cannot read back.
`kubernetes_problem` says when a string cannot reach a cluster that way; the compiler
refuses such declarations. Tests: tests/test_yamlout.py (PyYAML, and kubectl when installed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./@%+=:-]*")
# types-PyYAML leaves Resolver.resolve unannotated; this is its signature in PyYAML
_RESOLVE: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve
_BIDI = "\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
_ESCAPE = re.compile('[\\x00-\\x1f"\\\\\\x7f-\\x9f\\u2028\\u2029\\ufeff\\ufffe\\uffff' + _BIDI + "]")
_SURROGATE = re.compile("[\\ud800-\\udfff]")
_KUBERNETES_UNSAFE = re.compile("[\\x7f-\\x9f\\ufffe\\uffff]")
# Characters Go's JSON encoder writes as a 6-character \uXXXX escape, and as a 2-character one.
_GO_JSON_LONG = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f<>&\\u2028\\u2029]")
_GO_JSON_SHORT = re.compile('["\\\\\\n\\r\\t]')
KEY_LIMIT = 1024  # characters of a key in JSON that kustomize's YAML reader still takes as a key
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\", "\0": "\\0"}
# Scalars some YAML reader of a bundle resolves to a number: YAML 1.1 and 1.2 ints and floats,
# and what go-yaml hands to Go's strconv (0b/0o/0x prefixes in any case, '_' anywhere, hex floats).
_NUMBER = re.compile(r"""[-+]?(?:
      (?=[^0-9]*[0-9])(?:                                    # a digit somewhere: "." and "_" are strings
          0[bBoOxX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][-+]?[0-9_]+)?
        | (?:[0-9_]+(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9_]+)?  # linear: no two stars in a row
        | [0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)
    | \.?(?:inf|infinity|nan)
    )""", re.VERBOSE | re.IGNORECASE)
_DATE = re.compile(r"[0-9]{4}-[0-9]")  # go-yaml tries a timestamp on anything starting YYYY-
_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf", "infinity"}
_SIMPLE_KEY = 1000  # bytes; YAML readers look at most 1024 characters ahead for a key's ':'


class UnencodableString(ValueError):
    """A string holding a lone surrogate: no UTF-8 YAML file can hold it, escaped or not."""


def kubernetes_problem(text: str, key: bool = False) -> str | None:
    """Why Kubernetes' tooling cannot carry `text` (a mapping key when `key`) through a bundle, or
    None. The YAML meshc writes is right for any string without a lone surrogate, but kustomize
    (`kubectl kustomize`, Argo CD, Flux) converts every object to JSON and reads that back as YAML,
    and Go's JSON encoder writes some characters raw: go-yaml then refuses DEL, the C1 controls,
    U+FFFE and U+FFFF ("control characters are not allowed"), folds NEL into a space, merges or
    drops a key `<<` and takes no key longer than 1024 characters (as JSON); and kustomize's own
    output of a multi-line string ending in U+2028/U+2029 is a literal block that swallows what
    follows. Checked against kubectl 1.20 to 1.33 by tests/test_yamlout.py; meshc refuses such
    declarations."""
    bad = _SURROGATE.search(text)
    if bad:
        return f"holds the lone surrogate U+{ord(bad.group(0)):04X}, which UTF-8 cannot encode"
    bad = _KUBERNETES_UNSAFE.search(text)
    if bad:
        code = ord(bad.group(0))
        what = ("DEL" if code == 0x7F else "NEL, a C1 control" if code == 0x85 else
                "a C1 control" if code < 0xA0 else "a Unicode noncharacter")
        return (f"holds U+{code:04X} ({what}): kubectl kustomize refuses or changes DEL, the C1 controls "
                "and U+FFFE/U+FFFF, even escaped")
    if "\n" in text and text[-1:] in ("\u2028", "\u2029"):
        return ("is several lines ending in a line or paragraph separator (U+2028/U+2029): kustomize "
                "writes it as a block it cannot read back, and loses the object after it")
    if key:
        if text == "<<":
            return "is '<<', which kustomize takes for a YAML merge key even quoted"
        size = len(text) + 2 + len(_GO_JSON_SHORT.findall(text)) + 5 * len(_GO_JSON_LONG.findall(text))
        if size > KEY_LIMIT:
            return (f"is too long for a mapping key: kustomize reads keys of at most {KEY_LIMIT} characters "
                    f"once written as JSON ({size} here)")
    return None


def _esc(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _reads_as_str(text: str) -> bool:
    """Whether every YAML reader's implicit resolution keeps this plain scalar a string."""
    if text[0].isalpha():  # numbers, timestamps, .inf/.nan, ~ and << never start with a letter
        return text.lower() not in _WORDS
    if _NUMBER.fullmatch(text) or _DATE.match(text) or text.startswith("..."):
        return False
    return bool(_RESOLVE(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str")


@functools.lru_cache(maxsize=1 << 17)  # a pure function of the text: the same strings recur in every object
def scalar_str(text: str) -> str:
    if _PLAIN.fullmatch(text) is not None and not text.endswith(":") and _reads_as_str(text):
        return text
    bad = _SURROGATE.search(text)
    if bad:
        raise UnencodableString(f"cannot write a string holding the lone surrogate "
                                f"U+{ord(bad.group(0)):04X} as YAML: {text[:80]!r}")
    return '"' + _ESCAPE.sub(_esc, text) + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return scalar_str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if text in ("inf", "-inf", "nan"):
            return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
        mantissa, _, exp = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + ("e" + exp if exp else "")
    raise TypeError(f"cannot emit {type(value).__name__}")


def _key(key: Any) -> tuple[str, bool]:
    """The key as written, and whether it must be an explicit `? key` (too long for a simple key)."""
    k = scalar_str(key)
    return k, len(k) > _SIMPLE_KEY // 4 and len(k.encode()) > _SIMPLE_KEY


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Append lines for a mapping or list at `indent`."""
    if isinstance(value, dict):
        for key, item in value.items():
            k, explicit = _key(key)
            if explicit:
                out.append(f"{indent}? {k}")
                k = ""
            if isinstance(item, dict) and item:
                out.append(f"{indent}{k}:")
                _emit(item, indent + "  ", out)
            elif isinstance(item, list) and item:
                out.append(f"{indent}{k}:")
                _emit(item, indent + "  " if explicit else indent, out)
            else:
                out.append(f"{indent}{k}: {_inline(item)}")
        return
    for item in value:
        if isinstance(item, dict) and item:
            sub: list[str] = []
            _emit(item, indent + "  ", sub)
            sub[0] = f"{indent}- {sub[0][len(indent) + 2:]}"
            out.extend(sub)
        elif isinstance(item, list) and item:
            sub = []
            _emit(item, indent + "  ", sub)
            sub[0] = f"{indent}- {sub[0][len(indent) + 2:]}"
            out.extend(sub)
        else:
            out.append(f"{indent}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump(value: Any) -> str:
    """One YAML document for a mapping or list (no leading '---')."""
    if not isinstance(value, (dict, list)) or not value:
        return _inline(value) + "\n"
    lines: list[str] = []
    _emit(value, "", lines)
    return "\n".join(lines) + "\n"


def dump_all(values: list[Any]) -> str:
    return "---\n".join(dump(v) for v in values)
