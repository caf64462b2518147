"""Globs of waivers, the diff ignore file and mask rules, matched in linear time.

`*` matches any run of characters (`/` and newlines included), `?` one character, everything else
itself (brackets included: `spec.ports[0].name` is literal). Patterns are translated to RE2
(google-re2), which never backtracks: a pattern such as `*a*a*a...X` costs time linear in the
text, whatever a repository's files hold.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN = 4096


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Any:
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"glob of {len(pattern):,} characters (at most {MAX_PATTERN:,})")
    parts = [".*" if ch == "*" else "." if ch == "?" else re2.escape(ch) for ch in pattern]
    options = re2.Options()
    options.dot_nl = True
    return re2.compile("".join(parts), options)


def glob_match(pattern: str, text: str) -> bool:
    return compile_glob(pattern).fullmatch(text) is not None
