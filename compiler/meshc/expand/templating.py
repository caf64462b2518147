"""The one Jinja2 environment: sandboxed, StrictUndefined, values reach the output only as JSON.

Templates render JSON text. Every `{{ ... }}` must end in the `json` filter: `finalize` refuses any
other value, so a declaration value can never add, remove or reshape a field, whatever it contains
(newlines, quotes, `{{`, `#`, `---`). The rendered text is parsed back at once by the caller.
Template lookup: the user's templates/ directory first (override by file name), then meshc's own.
No clock, randomness or environment is reachable from a template.

Bounded work (a template is repository content, so it may be a stranger's): templates and their
includes are read through meshc.confine (inside the repository, regular files, size-limited);
`**`, `*` and `+` refuse results over `MAX_INT_BITS` bits or `MAX_SIZE` characters or items;
a method call with an integer argument over `MAX_SIZE` is refused; one render may produce at
most `MAX_SIZE` characters and take at most `RENDER_SECONDS` (an interval timer in the main
thread; meshc renders in the main thread of each process). Each limit raises `TemplateLimit`,
reported by expand at the template line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import orjson
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from meshc.files.confine import ConfinementError, list_files, read_file

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
MAX_SIZE = 4 * 1024 * 1024     # characters of one render, items or characters of one value
MAX_INT_BITS = 4096            # size of an integer a template may compute
RENDER_SECONDS = 5.0           # wall-clock budget of one render
TEMPLATE_LIMIT = 1024 * 1024   # bytes of one template file


class JsonText(str):
    """Text produced by the json filter; the only thing finalize lets through."""


class TemplateValueError(Exception):
    pass


class TemplateLimit(jinja2.TemplateError):
    """A template went over one of the work limits (module docstring)."""


def _json(value: Any) -> JsonText:
    return JsonText(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def _finalize(value: Any) -> Any:
    if isinstance(value, JsonText):
        return value
    raise TemplateValueError(
        f"template printed a raw value ({type(value).__name__}); pipe it through | json")


class _Bounded(ImmutableSandboxedEnvironment):
    """The sandbox with operator, call, output-size and time limits."""

    intercepted_binops = frozenset({"**", "*", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right):
            if right > 0 and abs(left) > 1 and right * max(abs(left).bit_length() - 1, 1) > MAX_INT_BITS:
                raise TemplateLimit(f"{left} ** {right} is too large (over {MAX_INT_BITS} bits)")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and _is_int(times) and len(seq) * times > MAX_SIZE:
                    raise TemplateLimit(f"repetition to {len(seq) * times:,} items is over the limit of {MAX_SIZE:,}")
            if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimit(f"a product over {MAX_INT_BITS} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_SIZE:
                raise TemplateLimit(f"concatenation to {len(left) + len(right):,} items is over the limit")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for arg in (*args, *kwargs.values()):
            if _is_int(arg) and abs(arg) > MAX_SIZE:
                raise TemplateLimit(f"a call with the argument {arg} (over {MAX_SIZE:,})")
        return super().call(__context, __obj, *args, **kwargs)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def render_bounded(template: jinja2.Template, context: dict[str, Any]) -> str:
    """`template.render(context)` within the output-size and time limits. A template that ran out
    of time once fails at once for every later service (one slow template must not cost its
    budget once per service)."""

    slow: dict[str, str] = template.environment.__dict__.setdefault("meshc_slow", {})
    if template.name in slow:
        raise TemplateLimit(slow[template.name])

    def expired(_signum: int, _frame: Any) -> None:
        slow[str(template.name)] = f"rendering took longer than {RENDER_SECONDS:.0f} s"
        raise TemplateLimit(slow[str(template.name)])

    timed = threading.current_thread() is threading.main_thread()
    if timed:
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_SIZE:
                raise TemplateLimit(f"the output is over {MAX_SIZE:,} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class ConfinedLoader(jinja2.BaseLoader):
    """The repository's template folders first, read through meshc.confine; meshc's own last."""

    def __init__(self, root: Path | None, search: Sequence[Path]) -> None:
        self.root = root
        self.search = list(search)

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        pieces = split_template_path(template)  # refuses `..`
        for directory in self.search:
            path = directory.joinpath(*pieces)
            if not (path.exists() or path.is_symlink()):
                continue
            try:
                data = read_file(self.root or directory, path, TEMPLATE_LIMIT) if self.root is not None \
                    else read_file(directory, path, TEMPLATE_LIMIT)
            except ConfinementError as exc:
                raise jinja2.TemplateError(f"template {template}: {exc}") from None
            return _decode(template, data), str(path), lambda: False
        builtin = BUILTIN_TEMPLATES.joinpath(*pieces)
        if builtin.is_file():
            return _decode(template, builtin.read_bytes()), str(builtin), lambda: False
        raise jinja2.TemplateNotFound(template)


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise jinja2.TemplateError(f"template {name} is not UTF-8 text (byte {exc.start})") from None


def make_environment(search: Sequence[Path], root: Path | None = None) -> ImmutableSandboxedEnvironment:
    """The sandbox; `search` folders must lie inside `root` (the repository), checked on read."""
    env = _Bounded(
        loader=ConfinedLoader(root, [p for p in search if p.is_dir()]), undefined=jinja2.StrictUndefined,
        autoescape=False, finalize=_finalize, keep_trailing_newline=True, auto_reload=False,
        cache_size=-1)
    env.filters = {"json": _json}
    env.globals = {}
    env.tests = {k: v for k, v in env.tests.items() if k in ("defined", "none", "mapping", "sequence")}
    return env


def template_fingerprint(search: Sequence[Path], root: Path | None = None) -> bytes:
    """Bytes identifying the templates in effect (for caches): every file of the repository's
    template folders (includes too), then meshc's own. A folder meshc refuses to read adds its
    error, so the cache never stands in for the error the build will report."""
    parts: list[bytes] = []
    for directory in search:
        if directory.is_dir():
            try:
                for path in list_files(root or directory, directory):
                    parts.append(path.name.encode() + b"\0" + read_file(root or directory, path, TEMPLATE_LIMIT))
            except ConfinementError as exc:
                parts.append(str(exc).encode())
    for path in sorted(BUILTIN_TEMPLATES.glob("*.j2")):
        parts.append(path.name.encode() + b"\0" + path.read_bytes())
    return b"\1".join(parts)
