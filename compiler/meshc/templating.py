"""The one Jinja2 environment: sandboxed, StrictUndefined, values reach the output only as JSON.

Templates render JSON text. Every `{{ ... }}` must end in the `json` filter: `finalize` refuses any
other value, so a declaration value can never add, remove or reshape a field, whatever it contains
(newlines, quotes, `{{`, `#`, `---`). The rendered text is parsed back at once by the caller.
Template lookup: the user's templates/ directory first (override by file name), then meshc's own.
No clock, randomness or environment is reachable from a template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jinja2
import orjson
from jinja2.sandbox import ImmutableSandboxedEnvironment

BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "templates"


class JsonText(str):
    """Text produced by the json filter; the only thing finalize lets through."""


class TemplateValueError(Exception):
    pass


def _json(value: Any) -> JsonText:
    return JsonText(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def _finalize(value: Any) -> Any:
    if isinstance(value, JsonText):
        return value
    raise TemplateValueError(
        f"template printed a raw value ({type(value).__name__}); pipe it through | json")


def make_environment(search: Sequence[Path]) -> ImmutableSandboxedEnvironment:
    dirs = [str(p) for p in search if p.is_dir()] + [str(BUILTIN_TEMPLATES)]
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(dirs), undefined=jinja2.StrictUndefined,
        autoescape=False, finalize=_finalize, keep_trailing_newline=True, auto_reload=False,
        cache_size=-1)
    env.filters = {"json": _json}
    env.globals = {}
    env.tests = {k: v for k, v in env.tests.items() if k in ("defined", "none", "mapping", "sequence")}
    return env


def template_fingerprint(search: Sequence[Path]) -> bytes:
    """Bytes identifying the templates in effect (for caches)."""
    parts: list[bytes] = []
    for directory in [*search, BUILTIN_TEMPLATES]:
        if directory.is_dir():
            for path in sorted(directory.glob("*.j2")):
                parts.append(path.name.encode() + b"\0" + path.read_bytes())
    return b"\1".join(parts)
