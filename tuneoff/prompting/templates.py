"""Jinja2 templates for prompt arms: sandboxed, strict, and checked before any model call.

Templates come from user YAML, so they render in Jinja2's `SandboxedEnvironment` (no attribute
tricks reach Python internals) with `StrictUndefined` (a misspelt variable is an error, never an
empty string that silently changes the prompt). Every error names the arm field it came from.
"""

from __future__ import annotations

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError

from ..errors import TuneoffError
from .sandbox import BoundedEnvironment, bounded_render

# keep_trailing_newline: a template ending in "\n" must produce exactly that prompt
ENV = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class Template:
    """A compiled template that remembers which arm field it came from."""

    def __init__(self, source: str, field: str):
        self.source = source
        self.field = field
        try:
            self.compiled = ENV.from_string(source)
        except TemplateSyntaxError as exc:
            raise TuneoffError(f"template syntax error: {exc.message} (template line {exc.lineno})",
                               field=field, hint="Jinja2 syntax: {{ variable }}, {% if ... %}...{% endif %}") from None
        except (TemplateError, RecursionError, MemoryError) as exc:  # a budget hit while folding constants
            raise TuneoffError(f"template cannot compile: {exc}", field=field) from None

    def render(self, variables: dict) -> str:
        try:
            return bounded_render(self.compiled, variables)
        except UndefinedError as exc:
            known = ", ".join(sorted(variables))
            raise TuneoffError(f"template uses an unknown variable: {exc.message}", field=self.field,
                               hint=f"variables available here: {known}") from None
        except TemplateError as exc:  # sandbox violations, budgets (sandbox.py), filter errors
            raise TuneoffError(f"template failed to render: {exc}", field=self.field) from None
        except RecursionError:
            raise TuneoffError("template failed to render: a macro calls itself without end",
                               field=self.field) from None
        except MemoryError:  # the last line of defence behind the sandbox's size bounds
            raise TuneoffError("template failed to render: out of memory", field=self.field) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:  # `1/0`, `'a' + 1`, `[][3]`
            raise TuneoffError(f"template failed to render: {type(exc).__name__}: {exc}", field=self.field) from None

    def __repr__(self) -> str:
        return f"Template({self.field}={self.source!r})"


def literal(text: str) -> str:
    """Template source that renders to `text` verbatim (model-written instructions may contain braces)."""
    if "{" not in text and "%" not in text and "#" not in text:
        return text
    return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"
