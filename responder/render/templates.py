"""The sandboxed jinja2 environment and compiled templates.

Alert labels and annotations come from outside; templates over them run in jinja2's
``SandboxedEnvironment`` with ``StrictUndefined`` (a typo in a variable name is an error,
not an empty string), and their output is capped. Templates are compiled when they are
loaded, so a broken one is reported at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# Output cap: a template over alert data must not produce an unbounded string.
MAX_OUTPUT_CHARS = 10_000


class TemplateProblem(ValueError):
    """A template that does not compile or does not render; the message says why."""


class Template:
    def __init__(self, source: str, compiled: Any) -> None:
        self.source = source
        self._compiled = compiled

    def render(self, context: Mapping[str, Any]) -> str:
        try:
            out = str(self._compiled.render(**context))
        except TemplateError as exc:
            raise TemplateProblem(f"template {self.source!r}: {exc}") from None
        return out[:MAX_OUTPUT_CHARS]


class Templates:
    """Compiles templates in the one sandboxed environment."""

    def __init__(self) -> None:
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
        )

    def compile(self, source: str) -> Template:
        try:
            return Template(source, self._env.from_string(source))
        except TemplateError as exc:
            raise TemplateProblem(f"template {source!r} does not compile: {exc}") from None

    @staticmethod
    def is_template(text: str) -> bool:
        return "{{" in text or "{%" in text
