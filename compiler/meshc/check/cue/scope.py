"""What a set of CUE policy files can see of the documents: does it look at one service at a
time (`per_service`: decides how the cue layer splits an environment's document), does it read
the emitted objects (`reads_objects`), and which fields of a service could it ever reach
(`visibility`, `prune`: the fast path's lean documents; see `visibility`).

Input: the text of policy files. Output: `per_service(texts)` is True when no file can see across
services: the top-level fields `services` and `objects` are only ever *declared* (a line that
starts, at the top level of the file, with `services:` or `objects:`), never *referred to*
(`len(services)`, `for k, v in services`, `services["x"]`, `"\\(objects)"`, an alias, a label
inside another struct, ...). Everything else, `env` included, may be referred to freely.

When that holds, unifying the policies with the whole environment document gives exactly the
errors of unifying them with one document per service (`{env, services: {one}, objects: {its}}`)
plus one document with no service (for the constraints on `env`): a pattern constraint
`services: [_]: {...}` applies to each service on its own, and nothing else can read a service.
The cue layer then caches and re-vets per service, so a one-service change re-runs CUE on that
service only. When it does not hold (or the scan meets syntax it does not model, such as raw
strings `#"..."#`), the environment stays one document: slower on a change, never wrong.

The scan is lexical: comments (`//` to the end of the line) are skipped, string literals ("..."
'...', and the triple-quoted forms) are read as text *including* any `\\(...)` interpolation (so an
interpolated reference counts), and depth is the nesting of (), [] and {} outside strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SCOPED = ("services", "objects")
_WORD = re.compile(r"[A-Za-z_$#][A-Za-z0-9_$#]*")


class _Unsupported(Exception):
    pass


def per_service(texts: Iterable[str]) -> bool:
    try:
        return all(_declares_only(text) for text in texts)
    except _Unsupported:
        return False


def _declares_only(text: str) -> bool:
    text = _strip_comments(text)
    depth = 0
    i, n = 0, len(text)
    line_start = True  # only whitespace since the last newline
    while i < n:
        c = text[i]
        if c == "\n":
            line_start = True
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if c in "\"'":
            i = _skip_string(text, i)
            line_start = False
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        m = _WORD.match(text, i)
        if m is not None:
            word = m.group(0)
            if word in SCOPED and not _is_declaration(text, m.end(), depth, line_start):
                return False
            line_start = False
            i = m.end()
            continue
        line_start = False
        i += 1
    return True


def _is_declaration(text: str, end: int, depth: int, line_start: bool) -> bool:
    """`services:` (or `services?:` / `services!:`) opening a line at the top level."""
    if depth != 0 or not line_start:
        return False
    rest = text[end:end + 3].lstrip(" \t")
    return rest.startswith(":") or rest.startswith("?:") or rest.startswith("!:")


def _skip_string(text: str, i: int) -> int:
    """Index after the string literal starting at i. An interpolation's text is scanned for the
    scoped words by the caller's rule: any occurrence inside a string is a reference."""
    quote = text[i]
    triple = text.startswith(quote * 3, i)
    close = quote * 3 if triple else quote
    j = i + len(close)
    while j < len(text):
        if text[j] == "\\":
            if text.startswith("\\(", j):
                k = _interpolation_end(text, j + 2)
                if any(re.search(rf"\b{w}\b", text[j + 2:k]) for w in SCOPED):
                    raise _Reference()
                j = k + 1
                continue
            j += 2
            continue
        if text.startswith(close, j):
            return j + len(close)
        if text[j] == "\n" and not triple:
            raise _Unsupported("unterminated string")
        j += 1
    raise _Unsupported("unterminated string")


def _interpolation_end(text: str, j: int) -> int:
    depth = 1
    while j < len(text):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise _Unsupported("unterminated interpolation")


class _Reference(_Unsupported):
    """A scoped word inside an interpolation: the file refers to it."""




_SHAPE = re.compile(r"^objects\??:(\[(string|_)\]:)?\{\.\.\.\}$")


def reads_objects(texts: Iterable[str]) -> bool:
    """False when no file constrains `objects` beyond its shape: every mention is a top-level
    declaration `objects: [string]: {...}` (or `[_]`, or `objects: {...}`), which any object
    satisfies. Then the cue layer leaves the emitted objects out of the documents: CUE would only
    read them to find nothing (about a fifth of its time on the generated estates)."""
    try:
        return not all(_objects_shape_only(text) for text in texts)
    except _Unsupported:
        return True


def _objects_shape_only(text: str) -> bool:
    code = _strip_comments(text)
    for m in re.finditer(r"\bobjects\b", code):
        line_start = code.rfind("\n", 0, m.start()) + 1
        line_end = code.find("\n", m.start())
        line = code[line_start:len(code) if line_end < 0 else line_end]
        if code[line_start:m.start()].strip() or not _SHAPE.match("".join(line.split())):
            return False
        if _depth(code, m.start()) != 0:
            return False
    return True


def _strip_comments(text: str) -> str:
    """The text with `//` comments blanked (string literals kept; raw strings unsupported)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "#" and i + 1 < n and text[i + 1] in "\"'#":
            raise _Unsupported("raw string")
        if c in "\"'":
            j = _skip_string(text, i)
            out.append(text[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _depth(code: str, end: int) -> int:
    """Bracket depth at `end` of comment-free code (strings skipped)."""
    depth, i = 0, 0
    while i < end:
        c = code[i]
        if c in "\"'":
            i = _skip_string(code, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return depth


# ------------------------------------------------------------------ what the policies can see

@dataclass(frozen=True)
class Visibility:
    """What a set of policy files can see of a service or object (`visibility`).

    `labels`: every name the files spell (identifiers, and the text of every string literal); a
    data field whose label is not among them is never constrained, selected or iterated by the
    policies. `whole`: the labels whose values the policies use as values (compare, embed, unify
    elsewhere, iterate, measure with len, index with a computed key): those are kept whole."""

    labels: frozenset[str]
    whole: frozenset[str]


_TOKEN = re.compile(r"""(?P<bottom>_\|_)|(?P<id>[A-Za-z_$#][A-Za-z0-9_$#]*)|(?P<num>[0-9][0-9A-Za-z_.]*)
    |(?P<op>\.\.\.|==|!=|<=|>=|=~|!~|&&|\|\||::|[{}\[\]()<>:,.?!=&|*+\-/@^%~])""", re.X)
_KEYWORDS = {"if", "for", "in", "let", "import", "package", "true", "false", "null", "_"}
_TYPES = {"string", "int", "bool", "float", "number", "bytes", "uint", "rune", "int8", "int16", "int32", "int64",
          "int128", "uint8", "uint16", "uint32", "uint64", "uint128", "float32", "float64"}
_BUILTINS = {"len", "and", "or", "div", "mod", "quo", "rem"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # id, num, str, op
    text: str
    line: int


def visibility(texts: Iterable[str]) -> Visibility | None:
    """What the policy files can see (`Visibility`), or None when they use a construct this scan
    does not follow: then nothing may be left out of the documents.

    Only per-service policies are scanned (`per_service`: `services` and `objects` are never
    referred to). Refused, besides what `per_service` refuses: raw strings and interpolations,
    imports, `let`, aliases other than a pattern's label (`[Name=string]`), `close()`, dynamic
    labels `(x):`, attributes, `::`, slices, pattern constraints other than right under the
    top-level `services:` or `objects:`, a struct ellipsis with a type, and definitions (which close
    the structs they make) with a struct lacking `...` or referring to anything but definitions
    and basic types. Then a field with a label no file spells can be left out: no constraint,
    selector, pattern, closed definition or iteration reaches it. A reference used other than
    to select further or to test existence (`x != _|_`) makes its last label `whole`; a
    comprehension variable stands for the elements of what it iterates."""
    try:
        streams = [_tokenize(text) for text in texts]
        if not all(_declares_only(text) for text in texts):
            return None
        labels: set[str] = set()
        uses: list[tuple[str, ...]] = []
        sources: dict[str, set[str]] = {}
        fields: set[str] = set()
        for toks in streams:
            _scan(toks, labels, uses, sources, fields)
        if set(sources) & fields:  # a comprehension variable named like a field: not followed
            return None
        whole: set[str] = set()
        todo: list[str] = []
        for chain in uses:
            if len(chain) == 1 and chain[0] in sources:
                todo.append(chain[0])  # a variable used whole: so is what it iterates
            else:
                whole.add(chain[-1])
        done: set[str] = set()
        while todo:
            var = todo.pop()
            if var in done:
                continue
            done.add(var)
            for src in sources[var]:
                if src in sources:
                    todo.append(src)
                else:
                    whole.add(src)
        return Visibility(frozenset(labels), frozenset(whole))
    except _Unsupported:
        return None


def _tokenize(text: str) -> list[_Tok]:
    code = _strip_comments(text)
    out: list[_Tok] = []
    i, line, n = 0, 1, len(code)
    while i < n:
        c = code[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c in "\"'":
            j = _skip_string(code, i)
            literal = code[i:j]
            if "\\(" in literal:
                raise _Unsupported("interpolation")
            out.append(_Tok("str", literal, line))
            line += literal.count("\n")
            i = j
        else:
            m = _TOKEN.match(code, i)
            if m is None:
                raise _Unsupported(f"character {c!r}")
            kind = m.lastgroup or "op"
            out.append(_Tok(kind, m.group(0), line))
            i = m.end()
    return out


def _string_texts(literal: str) -> set[str]:
    """The text of a string literal, raw and decoded (a label may be written either way)."""
    quote = literal[:3] if literal[:3] in ('"""', "\'\'\'") else literal[0]
    raw = literal[len(quote):-len(quote)]
    out = {raw}
    try:
        out.add(str(json.loads('"' + raw.replace('"', '\\"').replace('\\\\"', '\\"') + '"')))
    except ValueError:
        pass
    return out


def _is_label(toks: list[_Tok], i: int) -> bool:
    nxt = toks[i + 1].text if i + 1 < len(toks) else ""
    if nxt == ":":
        return True
    return nxt in ("?", "!") and i + 2 < len(toks) and toks[i + 2].text == ":"


def _scan(toks: list[_Tok], labels: set[str], uses: list[tuple[str, ...]], sources: dict[str, set[str]],
          fields: set[str]) -> None:
    """Read one file: every name into `labels`, field labels also into `fields`, each reference
    chain used as a value into `uses`, each comprehension variable's sources into `sources`."""
    stack: list[tuple[str, int]] = []  # open brackets: (bracket, token index)
    ellipsis: list[bool] = []  # per open `{`: has a `...` of its own
    definition_until = -1  # index of the last token of the definition body being read
    pattern_aliases: set[str] = set()
    i, n = 0, len(toks)
    while i < n:
        tok = toks[i]
        text = tok.text
        in_def = i <= definition_until
        if tok.kind == "str":
            labels.update(_string_texts(text))
            if _is_label(toks, i):
                fields.update(_string_texts(text))
            i += 1
            continue
        if tok.kind == "op":
            if text in ("::", "@", "^", "%") or (text == "=" and not _pattern_alias(toks, i)):
                raise _Unsupported(f"`{text}`")
            if text == ":" and stack and stack[-1][0] == "[":
                raise _Unsupported("a slice or a label inside brackets")
            if text == ":" and i > 0 and toks[i - 1].text == ")":
                raise _Unsupported("a dynamic label")
            if text == ":" and i > 0 and toks[i - 1].text == "]" and not _top_pattern(toks, i - 1):
                raise _Unsupported("a pattern constraint below services/objects")
            if text == "...":
                after = toks[i + 1].text if i + 1 < n else "}"
                if stack and stack[-1][0] == "{":
                    if after not in ("}", ",") and toks[i + 1].line == tok.line:
                        raise _Unsupported("a typed struct ellipsis")
                    ellipsis[-1] = True
            if text in "([{":
                stack.append((text, i))
                if text == "{":
                    ellipsis.append(False)
            elif text in ")]}":
                if not stack:
                    raise _Unsupported("unbalanced")
                opened = stack.pop()
                if text == "}":
                    closed_ok = ellipsis.pop()
                    if opened[1] <= definition_until and not closed_ok:
                        raise _Unsupported("a definition's struct without `...`")
            i += 1
            continue
        if tok.kind in ("num", "bottom"):
            i += 1
            continue
        # an identifier
        labels.add(text)
        if _is_label(toks, i):
            fields.add(text)
            if text.startswith(("#", "_#")) and definition_until < i:
                definition_until = _field_end(toks, i)
            i += 1
            continue
        if i > 0 and toks[i - 1].text == ".":
            i += 1  # a selector: read with its chain
            continue
        if text in ("import", "let"):
            raise _Unsupported(text)
        if text == "close" and i + 1 < n and toks[i + 1].text == "(":
            raise _Unsupported("close()")
        if in_def and not (text in _TYPES or text in ("_", "true", "false", "null") or text.startswith(("#", "_#"))):
            raise _Unsupported("a definition with a comprehension or a reference to a field")
        if text == "for":
            i = _binding(toks, i, labels, uses, sources)
            continue
        if text in _KEYWORDS or text in _TYPES or text.startswith(("#", "_#")):
            i += 1
            continue
        if text in _BUILTINS and i + 1 < n and toks[i + 1].text == "(":
            i += 1
            continue
        if text in pattern_aliases or (i > 0 and toks[i - 1].text == "[" and i + 1 < n and toks[i + 1].text == "="):
            pattern_aliases.add(text)
            sources.setdefault(text, set())  # a label's name: a string, nothing of the data
            i += 1
            continue
        i = _reference(toks, i, uses)
    if stack:
        raise _Unsupported("unbalanced")


def _pattern_alias(toks: list[_Tok], i: int) -> bool:
    """`=` of `[Name=...]`."""
    return i >= 2 and toks[i - 1].kind == "id" and toks[i - 2].text == "["


def _top_pattern(toks: list[_Tok], close: int) -> bool:
    """Is the `]` at `close` the end of a pattern label right after a top-level `services:` or
    `objects:` (the only patterns the scan allows)?"""
    depth, j = 0, close
    while j >= 0:
        mark = toks[j].text
        if mark in ")]}":
            depth += 1
        elif mark in "([{":
            depth -= 1
            if depth == 0:
                break
        j -= 1
    if j < 2 or toks[j - 1].text != ":":
        return False
    k = j - 2
    if toks[k].text in ("?", "!"):
        k -= 1
    if k < 0 or toks[k].text not in SCOPED:
        return False
    before = 0  # the label must be at depth 0 of its file
    for tok in toks[:k]:
        before += tok.kind == "op" and tok.text in "([{"
        before -= tok.kind == "op" and tok.text in ")]}"
    return before == 0


def _field_end(toks: list[_Tok], label: int) -> int:
    """The last token of the field whose label is at `label`: up to the next field at the same
    depth (a label first on its line or after a comma), or the bracket that closes the enclosing
    struct. (Reading too far only makes the scan stricter.)"""
    d = 0
    j = label + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "op" and t.text in "([{":
            d += 1
        elif t.kind == "op" and t.text in ")]}":
            d -= 1
            if d < 0:
                return j - 1
        elif (d == 0 and t.kind in ("id", "str") and _is_label(toks, j)
              and (toks[j - 1].text == "," or toks[j - 1].line < t.line)):
            return j - 1
        j += 1
    return len(toks) - 1


def _chain(toks: list[_Tok], i: int) -> tuple[int, tuple[str, ...]]:
    """The reference chain starting at i (`a.b["c"][0]`): (index after it, its names)."""
    names = [toks[i].text]
    j = i + 1
    while j < len(toks):
        if toks[j].text == "." and j + 1 < len(toks) and toks[j + 1].kind == "id":
            names.append(toks[j + 1].text)
            j += 2
        elif (toks[j].text == "[" and j + 2 < len(toks) and toks[j + 1].kind in ("num", "str")
              and toks[j + 2].text == "]"):
            if toks[j + 1].kind == "str":
                names.append(next(iter(_string_texts(toks[j + 1].text))))
            j += 3
        else:
            break
    return j, tuple(names)


def _reference(toks: list[_Tok], i: int, uses: list[tuple[str, ...]]) -> int:
    end, chain = _chain(toks, i)
    after = toks[end].text if end < len(toks) else ""
    exists = after in ("==", "!=") and end + 1 < len(toks) and toks[end + 1].text == "_|_"
    if not exists:
        uses.append(chain)  # used as a value (or measured, or indexed by a computed key)
    return end


def _binding(toks: list[_Tok], i: int, labels: set[str], uses: list[tuple[str, ...]],
             sources: dict[str, set[str]]) -> int:
    """`for [k,] v in <source>`: v stands for the elements of the source's last label."""
    names: list[str] = []
    j = i + 1
    while j < len(toks) and toks[j].text != "in":
        if toks[j].kind == "id":
            names.append(toks[j].text)
        elif toks[j].text != ",":
            raise _Unsupported("a comprehension's variables")
        j += 1
    if not names or len(names) > 2 or j + 1 >= len(toks):
        raise _Unsupported("a comprehension's variables")
    labels.update(names)
    value = names[-1]
    j += 1
    if toks[j].kind == "id" and toks[j].text not in _KEYWORDS and not toks[j].text.startswith(("#", "_#")):
        end, chain = _chain(toks, j)
        labels.update(chain)
        uses.append(chain)  # iterated: its elements (or fields) are counted and read
        sources.setdefault(value, set()).add(chain[-1])
        if len(names) == 2:
            sources.setdefault(names[0], set())
        return end
    sources.setdefault(value, set())
    if len(names) == 2:
        sources.setdefault(names[0], set())
    return j


def prune(value: Any, vis: Visibility) -> Any:
    """`value` (a service's or an object's body) without the fields `vis` says no policy can see."""
    if isinstance(value, dict):
        return {k: (v if k in vis.whole else prune(v, vis)) for k, v in value.items() if k in vis.labels}
    if isinstance(value, list):
        return [prune(x, vis) for x in value]
    return value


__all__ = ["SCOPED", "Visibility", "per_service", "prune", "reads_objects", "visibility"]
