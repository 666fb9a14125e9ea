"""The Jinja2 sandbox prompt templates render in, with bounds on what one render may cost.

Jinja2's `SandboxedEnvironment` keeps templates away from Python internals, but not from the
machine's memory and time: `range(10**9)`, `'a' * 10**8`, `10**(10**8)` (folded at compile time),
nested loops and recursive macros all hang or exhaust memory. A template comes from a user's YAML,
so every render here has a budget:
  - every loop iteration, call, filter and operator is a step, and a render takes at most
    `MAX_STEPS` (so nested loops and branching macros end; the sandbox's own `range` stops at 100,000);
  - `*`, `**`, `+`, `~` and every filter refuse to build a value longer than `MAX_SIZE`;
  - the rendered text is cut off at `MAX_SIZE` characters with an error, not a 5 GB prompt;
  - `include`, `import` and `extends` are refused at compile time: a prompt has no template files.
A bound that is hit raises `TemplateLimit` (a `SecurityError`, so a `TemplateError`).
"""

from __future__ import annotations

import functools
import math
import re
from contextvars import ContextVar
from typing import Any, Iterable, Iterator

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

MAX_STEPS = 200_000
"""Loop iterations + calls + filters + operators of one render."""
MAX_SIZE = 1_000_000
"""Characters (or items) of any value a template builds, and of the rendered text: far past any
model's context."""

_steps: ContextVar[list[int] | None] = ContextVar("tuneoff_template_steps", default=None)


class TemplateLimit(SecurityError):
    """A template tried to spend more than its budget."""


def _step(n: int = 1) -> None:
    counter = _steps.get()
    if counter is None:  # rendered outside `bounded()` (e.g. constant folding at compile time)
        return
    counter[0] += n
    if counter[0] > MAX_STEPS:
        raise TemplateLimit(f"the template takes more than {MAX_STEPS:,} steps (loops, calls) to render")


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_SIZE:
        raise TemplateLimit(f"the template builds a value of {len(value):,} items (limit {MAX_SIZE:,})")
    return value


def _counted(items: Iterable) -> Iterator:
    for item in items:
        _step()
        yield item


def _concat(*parts: Any) -> str:
    if sum(len(p) for p in parts if isinstance(p, str)) > MAX_SIZE:
        raise TemplateLimit(f"the template joins text longer than {MAX_SIZE:,} characters")
    return "".join(map(str, parts))


def _check_args(args: tuple, kwargs: dict) -> None:
    """A width or count past `MAX_SIZE` (`center(10**9)`, `lipsum(10**7)`) would build a huge value
    before its size could be checked: refuse it up front."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SIZE:
            raise TemplateLimit(f"an argument of {value:,} (limit {MAX_SIZE:,})")


def _check_replace(s: Any, old: Any, new: Any) -> None:
    """`replace` grows text by len(new)/len(old) per match: chained, a few of them reach terabytes."""
    s, old, new = str(s), str(old), str(new)
    if len(new) > len(old) and (len(s) // max(len(old), 1) + 1) * len(new) > MAX_SIZE:
        if len(s) + s.count(old) * (len(new) - len(old)) > MAX_SIZE:
            raise TemplateLimit(f"replace() would build text longer than {MAX_SIZE:,} characters")


def _check_growth(name: str, args: tuple, kwargs: dict) -> None:
    """Filters whose result can dwarf their input are sized before they run: `replace`, `join` with a
    long separator, `indent` by a long string (each line gets it), `wordwrap` with a long wrapstring,
    `format` with a huge width."""
    if name == "do_replace" and len(args) >= 4:  # (eval_ctx, s, old, new)
        _check_replace(*args[1:4])
    elif name == "do_join" and len(args) >= 2 and isinstance(args[1], (list, tuple, str)):
        sep = str(args[2] if len(args) > 2 else kwargs.get("d", ""))
        if len(args[1]) * len(sep) > MAX_SIZE:
            raise TemplateLimit(f"join() would build text longer than {MAX_SIZE:,} characters")
    elif name == "do_format" and args and _WIDE_FORMAT.search(str(args[0])):
        raise TemplateLimit("a format width or precision past 999,999")
    elif name == "do_wordwrap" and len(args) >= 2:  # (environment, s, width, break_long_words, wrapstring)
        width = args[2] if len(args) > 2 else kwargs.get("width", 79)
        wrap = str(args[4] if len(args) > 4 else kwargs.get("wrapstring") or "\n")
        if isinstance(width, int) and len(str(args[1])) // max(width, 1) * len(wrap) > MAX_SIZE:
            raise TemplateLimit(f"wordwrap() would build text longer than {MAX_SIZE:,} characters")
    elif name == "do_indent" and args:
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        if isinstance(width, str) and (str(args[0]).count("\n") + 1) * len(width) > MAX_SIZE:
            raise TemplateLimit(f"indent() would build text longer than {MAX_SIZE:,} characters")


_WIDE_FORMAT = re.compile(r"\d{7,}")  # a `{:>1000000000}` or `%1000000000s` width or precision


def _guard_filter(fn):
    @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args, **kwargs):
        _step()
        _check_args(args, kwargs)
        _check_growth(fn.__name__, args, kwargs)
        return _sized(fn(*args, **kwargs))

    return guarded


def _check_size_op(operator: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**` and `+` whose result would be huge, before computing it."""
    sized = (str, list, tuple)
    if operator == "*":
        seq, n = (left, right) if isinstance(left, sized) else (right, left)
        if isinstance(seq, sized) and isinstance(n, int) and len(seq) * n > MAX_SIZE:
            raise TemplateLimit(f"repeating {len(seq):,} items {n:,} times exceeds {MAX_SIZE:,}")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
        if right * math.log2(abs(left)) > 4096:
            raise TemplateLimit("a power with more than 4096 bits")
    elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
        raise TemplateLimit("a %-format width or precision past 999,999")
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        if len(left) + len(right) > MAX_SIZE:
            raise TemplateLimit(f"concatenating past {MAX_SIZE:,} items")


class BoundedEnvironment(SandboxedEnvironment):
    """`SandboxedEnvironment` with budgets (see the module docstring)."""

    # intercepted operators are also never constant-folded at compile time (where 10**(10**8) hangs)
    intercepted_binops = frozenset({"*", "**", "+", "//", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.globals["__tuneoff_concat"] = _concat
        self.globals["__tuneoff_iter"] = _counted
        self.filters = {name: _guard_filter(fn) for name, fn in self.filters.items()}

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _step()
        _check_size_op(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        _step()
        _check_args(args, kwargs)
        fmt = getattr(__obj, "__self__", None)
        if isinstance(fmt, str) and getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
            _check_replace(fmt, args[0], args[1])
        return _sized(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any):
        """`'{:>1000000000}'.format(x)` allocates its width before any size check could see it."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_FORMAT.search(value.__self__):
            raise TemplateLimit("a format width or precision past 999,999")
        return wrapped

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            raise TemplateSyntaxError(f"'{type(node).__name__.lower()}' is not allowed in a prompt template",
                                      node.lineno, name, filename)
        for loop in tree.find_all(nodes.For):  # every iteration of every loop is a step
            loop.iter = nodes.Call(nodes.Name("__tuneoff_iter", "load"), [loop.iter], [], None, None)
        for concat in list(tree.find_all(nodes.Concat)):
            _replace(tree, concat, nodes.Call(nodes.Name("__tuneoff_concat", "load"), concat.nodes, [], None, None))
        tree.set_environment(self)
        return tree.set_lineno(1)  # (only sets nodes still without one: the calls added here)


def _replace(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    """Put `new` where `old` is in the tree (jinja nodes have no parent links)."""
    for parent in tree.find_all(nodes.Node):
        for field in parent.fields:
            value = getattr(parent, field, None)
            if value is old:
                setattr(parent, field, new)
            elif isinstance(value, list) and any(v is old for v in value):
                setattr(parent, field, [new if v is old else v for v in value])


def bounded_render(template, variables: dict) -> str:
    """Render with a fresh step budget, streaming so the output bound holds while it is written."""
    token = _steps.set([0])
    try:
        out, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_SIZE:
                raise TemplateLimit(f"the prompt is longer than {MAX_SIZE:,} characters")
            out.append(chunk)
        return "".join(out)
    finally:
        _steps.reset(token)
