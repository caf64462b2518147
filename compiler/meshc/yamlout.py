"""A small, fast YAML emitter for emitted manifests (plain data only).

Block style in the layout kubectl prints (2-space indent, list items at their key's indent).
Strings are written plain only when YAML reads them back as the same string; otherwise they are
double-quoted with every character that YAML treats as special or non-printable escaped, so no
string can change the structure. Property-tested against PyYAML's loader (tests/test_yamlout.py).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./@%+=:-]*")
_RESOLVER = yaml.resolver.Resolver()
_ESCAPE = re.compile('[\\x00-\\x1f"\\\\\\x7f-\\x9f\\u2028\\u2029\\ufeff\\ud800-\\udfff]')
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\", "\0": "\\0"}
_cache: dict[str, str] = {}


def _esc(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


def _reads_as_str(text: str) -> bool:
    """Whether YAML's implicit resolution keeps this plain scalar a string."""
    if text[0].isalpha() and text.lower() not in _WORDS:
        return True  # numbers, timestamps, .inf/.nan, ~ and << never start with a letter
    return bool(_RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str")


def scalar_str(text: str) -> str:
    out = _cache.get(text)
    if out is None:
        plain = (_PLAIN.fullmatch(text) is not None and not text.endswith(":")
                 and _reads_as_str(text))
        out = text if plain else '"' + _ESCAPE.sub(_esc, text) + '"'
        if len(_cache) < 200_000:
            _cache[text] = out
    return out


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


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Append lines for a mapping or list at `indent`."""
    if isinstance(value, dict):
        for key, item in value.items():
            k = scalar_str(key)
            if isinstance(item, dict) and item:
                out.append(f"{indent}{k}:")
                _emit(item, indent + "  ", out)
            elif isinstance(item, list) and item:
                out.append(f"{indent}{k}:")
                _emit(item, indent, out)
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
