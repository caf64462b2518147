"""Pass `load` (first half): read YAML files into plain values, keeping the node tree for positions.

Input: a path and its bytes. Output: `Document`s (the plain value plus its composed node), or
diagnostics. Invariants: values are plain dict/list/str/int/float/bool/None with string keys; nothing
from the file can run code (safe tags only); positions are looked up lazily from the kept node
tree (`locate`), so the happy path pays nothing for provenance.

Scalars are read as Kubernetes reads YAML, not as PyYAML's YAML 1.1 does (docs/checks.md,
"YAML scalars"): the YAML 1.2 core schema resolves plain scalars (`true/false` are the only booleans,
`yes/no/on/off/y/n` are strings; `0o17` and `0x1F` are integers, `017` is 17, `1_000`, `0b11` and
`1:20` are strings; `1e3` is a float; no timestamps: `2024-02-30` is a string), and a `:` inside a
plain scalar of a flow collection ends it only before a blank, as go-yaml's scanner (the one kubectl
and the API server use) does: `addresses: [1.2.3.4, 001:db8::]` is two strings, where PyYAML reads a
mapping (pure Python) or fails (libyaml).

Codes: Y001 unreadable file, Y002 not UTF-8 text / binary, Y003 YAML syntax error,
Y004 duplicate key, Y005 alias expansion too large, Y006 non-string mapping key,
Y007 unsupported YAML feature (merge keys, custom tags), Y008 a string Kubernetes' tooling cannot
carry (meshc.yamlout.kubernetes_problem: DEL, C1 controls, U+FFFE/U+FFFF, lone surrogates...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meshc.files.yamlout import kubernetes_problem
from meshc.model.diagnostics import DataPath, Diagnostic, Position, Severity, printable

_STR = "tag:yaml.org,2002:str"
_BOOL, _INT, _FLOAT, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "null"))
_MERGE = "tag:yaml.org,2002:merge"
#: The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), in resolution order.
CORE_SCHEMA: tuple[tuple[str, re.Pattern[str]], ...] = (
    (_NULL, re.compile(r"(?:~|null|Null|NULL|)\Z")),
    (_BOOL, re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")),
    (_INT, re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")),
    (_FLOAT, re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")),
)


def _core_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit-resolver table for CORE_SCHEMA (keyed by first character), plus `<<`
    (kept only so that merge keys are refused with Y007 rather than read as a key named "<<")."""
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    firsts = {_NULL: "~nN", _BOOL: "tTfF", _INT: "-+0123456789", _FLOAT: "-+.0123456789"}
    for tag, pattern in CORE_SCHEMA:
        for first in firsts[tag]:
            table.setdefault(first, []).append((tag, pattern))
    table.setdefault("", []).append((_NULL, CORE_SCHEMA[0][1]))  # the empty scalar
    table.setdefault("<", []).append((_MERGE, re.compile(r"<<\Z")))
    return table


class _GoScanner:
    """go-yaml's plain-scalar rule for flow collections: `:` ends a plain scalar only before a blank
    (PyYAML also ends it before `,[]{}`, libyaml refuses it). Mixed into the pure-Python loader."""

    def scan_plain(self: Any) -> Any:
        chunks: list[str] = []
        start = end = self.get_mark()
        indent = self.indent + 1
        spaces: list[str] = []
        while self.peek() != "#":
            length = 0
            while True:
                ch = self.peek(length)
                if ch in _BLANKZ or (ch == ":" and self.peek(length + 1) in _BLANKZ) or (
                        self.flow_level and ch in ",?[]{}"):
                    break
                length += 1
            if length == 0:
                break
            self.allow_simple_key = False
            chunks.extend(spaces)
            chunks.append(self.prefix(length))
            self.forward(length)
            end = self.get_mark()
            spaces = self.scan_plain_spaces(indent, start)
            if not spaces or self.peek() == "#" or (not self.flow_level and self.column < indent):
                break
        return yaml.tokens.ScalarToken("".join(chunks), True, start, end)


_BLANKZ = "\0 \t\r\n\x85\u2028\u2029"


class _PyLoader(_GoScanner, yaml.SafeLoader):
    yaml_implicit_resolvers = _core_resolvers()


class _CLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    yaml_implicit_resolvers = _core_resolvers()


def compose_all(text: str) -> list[Node | None]:
    """The node trees of a YAML stream, tags resolved by the YAML 1.2 core schema. libyaml is used
    when it reads the text as go-yaml does; the pure-Python scanner when libyaml refuses a `:`
    in a flow scalar (`[001:db8::]`)."""
    try:
        return list(yaml.compose_all(text, Loader=_CLoader))
    except yaml.scanner.ScannerError as exc:
        if exc.problem != "found unexpected ':'":
            raise
    return list(yaml.compose_all(text, Loader=_PyLoader))
_SAFE_SCALAR_TAGS = {
    _STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_MAX_EXPANSION = 20  # constructed nodes per distinct node before aliases count as a bomb
_NOT_CORE = object()


def core_value(tag: str, text: str) -> Any:
    """A scalar's value under the YAML 1.2 core schema (`_NOT_CORE` when `text` does not spell
    a value of `tag`: an explicit `!!int 1_000`); a float tag also takes an integer's spelling."""
    patterns = dict(CORE_SCHEMA)
    if tag == _FLOAT and patterns[_INT].match(text) and not text.startswith(("0o", "0x")):
        return float(text)
    if tag not in patterns or not patterns[tag].match(text):
        return _NOT_CORE
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        return int(text[2:], 8) if text.startswith("0o") else int(text[2:], 16) if text.startswith("0x") else int(text)
    lowered = text.lower()
    if lowered.endswith(".nan"):
        return math.nan
    if lowered.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return float(text)


class LoadError(Exception):
    """Internal signal carrying a diagnostic out of the recursive walk."""

    def __init__(self, diag: Diagnostic) -> None:
        super().__init__(diag.message)
        self.diag = diag


@dataclass(frozen=True, slots=True)
class Document:
    file: str
    value: Any
    node: Node | None


def node_position(file: str, node: Node) -> Position:
    mark = node.start_mark
    return Position(file, mark.line + 1, mark.column + 1)


def _error(code: str, file: str, message: str, hint: str, node: Node | None = None,
           line: int = 0, col: int = 0, related: tuple[Position, ...] = ()) -> Diagnostic:
    pos = node_position(file, node) if node is not None else Position(file, line, col)
    return Diagnostic(code, Severity.ERROR, message, pos, hint=hint, related=related)


def decode(file: str, data: bytes) -> tuple[str | None, list[Diagnostic]]:
    """Bytes -> text, refusing binary and non-UTF-8 input with a position."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        return None, [_error("Y002", file, "file contains a NUL byte: it is binary, not YAML text",
                             "keep only YAML text files under environments/", line=line, col=1)]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [_error("Y002", file, f"file is not valid UTF-8 ({exc.reason})",
                             "save the file as UTF-8", line=line, col=col)]


def parse(file: str, data: bytes, carried: bool = True,
          scalar_keys: bool = False) -> tuple[list[Document], list[Diagnostic]]:
    """YAML documents of a file. `carried`: refuse strings Kubernetes' tooling cannot carry
    through a bundle (Y008, meshc.yamlout.kubernetes_problem); off for lint, which reads YAML
    that exists already. `scalar_keys`: a plain number or boolean as a mapping key is the string
    it is written as (`8090:` is "8090"), as kubectl reads manifests (sigs.k8s.io/yaml turns YAML
    into JSON, whose keys are strings); for YAML written elsewhere, not for declarations."""
    text, diags = decode(file, data)
    if text is None:
        return [], diags
    try:
        nodes = compose_all(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return [], [_error("Y003", file, f"YAML syntax error: {what}",
                           "fix the YAML syntax at this position", line=line, col=col)]
    except yaml.YAMLError as exc:
        return [], [_error("Y003", file, f"YAML error: {exc}", "fix the YAML syntax")]
    docs: list[Document] = []
    for node in nodes:
        if node is None:
            continue
        try:
            docs.append(Document(file, _Builder(file, carried, scalar_keys).build(node), node))
        except LoadError as exc:
            diags.append(exc.diag)
    return docs, diags


class _Builder:
    """Node tree -> plain values, with duplicate-key and alias-bomb detection."""

    def __init__(self, file: str, carried: bool = True, scalar_keys: bool = False) -> None:
        self.file = file
        self.carried = carried
        self.scalar_keys = scalar_keys
        self.seen: set[int] = set()
        self.built = 0

    def _carried(self, text: str, node: Node, key: bool = False) -> str:
        if self.carried and (not text.isascii() or "\x7f" in text or (key and (text == "<<" or len(text) > 1000))):
            problem = kubernetes_problem(text, key=key)
            if problem:
                raise LoadError(_error("Y008", self.file, f"{'key' if key else 'value'} '{printable(text[:80])}' "
                                       f"{problem}", "remove the character (or write the text without it)",
                                       node))
        return text

    def build(self, node: Node) -> Any:
        self.built += 1
        key = id(node)
        if key not in self.seen:
            self.seen.add(key)
        elif self.built > _MAX_EXPANSION * len(self.seen) + 10_000:
            raise LoadError(_error("Y005", self.file, "YAML aliases expand to too many values "
                                   "(an alias bomb?)", "remove the anchors/aliases", node))
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if isinstance(node, (SequenceNode, MappingNode)) and node.tag not in _COLLECTION_TAGS:
            raise LoadError(_error("Y007", self.file, f"unsupported YAML tag {node.tag!r}",
                                   "remove the tag: meshc reads plain YAML only", node))
        if isinstance(node, SequenceNode):
            return [self.build(item) for item in node.value]
        if isinstance(node, MappingNode):
            return self.mapping(node)
        raise LoadError(_error("Y007", self.file, "unsupported YAML node", "use plain YAML", node))

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == _STR:
            return self._carried(node.value, node)
        if node.tag not in _SAFE_SCALAR_TAGS:
            raise LoadError(_error("Y007", self.file, f"unsupported YAML tag {node.tag!r}",
                                   "quote the value to make it a string", node))
        if node.tag == _TIMESTAMP:
            return node.value  # Kubernetes reads YAML into JSON: no date type
        value = core_value(node.tag, node.value)
        if value is _NOT_CORE:
            raise LoadError(_error("Y007", self.file, f"{node.value!r} is not a YAML 1.2 {node.tag.rsplit(':', 1)[-1]}",
                                   "drop the tag, or write the value as YAML 1.2 spells it", node))
        return value

    def mapping(self, node: MappingNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, Node] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise LoadError(_error("Y007", self.file, "YAML merge keys (<<) are not supported",
                                       "write the keys out, or use an environment overlay", knode))
            if not isinstance(knode, ScalarNode) or (knode.tag != _STR and not (
                    self.scalar_keys and knode.tag in (_INT, _FLOAT, _BOOL))):
                raise LoadError(_error("Y006", self.file, "mapping keys must be strings",
                                       "quote the key", knode))
            k = self._carried(knode.value, knode, key=True)
            if k in first:
                raise LoadError(_error(
                    "Y004", self.file, f"duplicate key {k!r} in this mapping",
                    "remove one of the two entries", knode,
                    related=(node_position(self.file, first[k]),)))
            first[k] = knode
            out[k] = self.build(vnode)
        return out


def child(node: Node, elem: str | int) -> tuple[Node | None, Node | None]:
    """(key node, value node) of `elem` below `node`, or (None, None)."""
    if isinstance(node, MappingNode) and isinstance(elem, str):
        for knode, vnode in node.value:
            if isinstance(knode, ScalarNode) and knode.value == elem:
                return knode, vnode
    if isinstance(node, SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
        return None, node.value[elem]
    return None, None


def walk(node: Node, path: Sequence[str | int]) -> Iterator[tuple[Node | None, Node]]:
    """Yield (key node, value node) for each prefix of `path` that exists."""
    cur = node
    for elem in path:
        knode, vnode = child(cur, elem)
        if vnode is None:
            return
        yield knode, vnode
        cur = vnode


def locate(file: str, node: Node, path: DataPath, on_key: bool = False) -> tuple[Position, int]:
    """Position of the deepest existing prefix of `path`, and how many elements matched."""
    best: Position = node_position(file, node)
    depth = 0
    for depth_now, (knode, vnode) in enumerate(walk(node, path), start=1):
        target = knode if (on_key and knode is not None) else vnode
        best, depth = node_position(file, target), depth_now
    return best, depth
