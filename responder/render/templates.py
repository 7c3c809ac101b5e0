"""The sandboxed jinja2 environment and compiled templates.

Alert labels and annotations come from outside; templates over them run in jinja2's
``SandboxedEnvironment`` with ``StrictUndefined`` (a typo in a variable name is an error,
not an empty string), and their output is capped. Templates are compiled when they are
loaded, so a broken one is reported at start-up.

What a named template (a message, the postmortem) prints of its data is inert
(``_finalize``): one line (a value cannot start a line of its own), without control
characters, and in Slack mrkdwn with ``&``, ``<`` and ``>`` escaped. A multi-line value
goes through ``quote_lines``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    meta,
    nodes,
    pass_context,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from responder.render.inert import one_line, quote_lines

# Output cap: a template over alert data must not produce an unbounded string.
MAX_OUTPUT_CHARS = 10_000


class TemplateProblem(ValueError):
    """A template that does not compile or does not render; the message says why."""


# An inline template that only prints context values among its own text, ``{{ name }}``
# and ``{{ name.key }}``, is most of a pack's (a URL, a namespace, a selector, a query, a
# title), and rendering one is looking its values up. That is done without jinja2 (whose
# context set-up is most of a render's cost) where the result is what jinja2 prints: each
# value a ``str`` found in the context (for ``name.key``, in a ``dict``, ``key`` no
# attribute of dicts, so that the sandbox too would read the item). Anything else, an
# error included, is rendered by jinja2, which prints it or says what is wrong.
Slot = tuple[str, str | None]  # a context name, and the key read off it
DirectParts = tuple[str | Slot, ...]  # the template's own text (non-empty) and its slots


def direct_parts(env: Environment, source: str) -> DirectParts | None:
    """``source`` as its text and slots, or ``None`` when it is more than that."""
    try:
        body = env.parse(source).body
    except TemplateError:
        return None
    if not body:
        return ()
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[str | Slot] = []
    for node in body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            if parts and isinstance(parts[-1], str):
                parts[-1] += node.data
            elif node.data:
                parts.append(node.data)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            parts.append((node.name, None))
        elif (
            isinstance(node, nodes.Getattr)
            and isinstance(node.node, nodes.Name)
            and node.node.ctx == "load"
            and not hasattr(dict, node.attr)
        ):
            parts.append((node.node.name, node.attr))
        else:
            return None
    return tuple(parts)


_MISSING = object()


def direct_values(parts: DirectParts, context: Mapping[str, Any]) -> list[str] | None:
    """The values ``parts``' slots print, in order; ``None`` when one is not a ``str``
    found where the slot says (jinja2 then renders the template)."""
    values: list[str] = []
    for part in parts:
        if isinstance(part, str):
            continue
        name, key = part
        value = context.get(name, _MISSING)
        if key is not None:
            if type(value) is not dict:
                return None
            value = value.get(key, _MISSING)
        if type(value) is not str:
            return None
        values.append(value)
    return values


class Template:
    def __init__(self, source: str, compiled: Any, direct: DirectParts | None = None) -> None:
        self.source = source
        self._compiled = compiled
        self._direct = direct

    def render(self, context: Mapping[str, Any], *, limit: int = MAX_OUTPUT_CHARS) -> str:
        """``limit``: the output cap (a whole document, such as a postmortem, gets more
        than a message)."""
        if self._direct is not None:
            values = direct_values(self._direct, context)
            if values is not None:
                printed = iter(values)
                out = "".join(p if isinstance(p, str) else next(printed) for p in self._direct)
                return out[:limit]
        try:
            out = str(self._compiled.render(**context))
        except TemplateError as exc:
            raise TemplateProblem(f"template {self.source!r}: {exc}") from None
        return out[:limit]


# Templates whose output is Slack mrkdwn: every ``{{ value }}`` they print is escaped.
MRKDWN_SUFFIX = ".mrkdwn.j2"


def mrkdwn_escape(value: object) -> str:
    """Slack decodes only these three: escaped, a value cannot become a mention
    (``<!channel>``), a link (``<https://…|click>``) or break the markup around it.

    ``*``, ``_``, ``~`` and backticks are left alone: mrkdwn has no escape for them, and a
    lookalike or a zero-width space would change what a responder copies (a label such as
    ``payment_api``, a query's ``*``). Inside a line of ours (values are printed as one
    line) they can make some text bold, never a line of their own."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Lines(str):
    """A value already made into lines of its own (``quote_lines``): printed as it is."""

    __slots__ = ()


@pass_context
def _quote_lines(context: Context, value: object) -> _Lines:
    """``{{ text | quote_lines }}``, at the start of a line: a multi-line value (an alert's
    description) on lines of its own, each behind ``> `` (a quote in Slack), so none can
    pass for a line of the template's."""
    text = "" if value is None else str(value)
    if context.name is not None and context.name.endswith(MRKDWN_SUFFIX):
        text = mrkdwn_escape(text)
    return _Lines(quote_lines(text))


@pass_context
def _finalize(context: Context, value: object) -> object:
    # runs on every {{ … }} result, never on the template's own text: a named template
    # (a message, the postmortem) writes its links, formatting and lines itself, and
    # whatever it prints of the data is inert: no line of its own (a newline in a summary
    # would put a forged "*Status:* RESOLVED" line under ours), no control character, and
    # for Slack no mention and no link
    name = context.name
    if name is None:
        return value  # an inline template (a rule's title, a probe's URL)
    if isinstance(value, _Lines):
        return str(value)
    if name.endswith(MRKDWN_SUFFIX):
        return mrkdwn_escape(one_line("" if value is None else str(value)))
    return one_line(str(value))


@dataclass(frozen=True)
class TemplateNames:
    """What a template reads of its context, from its syntax tree (for the rule lint)."""

    free: frozenset[str]  # names it looks up (not set by the template), globals excepted
    attributes: tuple[tuple[str, str], ...]  # ``name.attr`` read straight off a free name


class Templates:
    """Compiles templates in the one sandboxed environment.

    ``search_path``: directories of named templates (``get``), the first that has a name
    wins, so a configured directory overrides the defaults shipped in the package.
    """

    def __init__(self, search_path: Sequence[Path] = ()) -> None:
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=_finalize,
            loader=FileSystemLoader([str(p) for p in search_path]) if search_path else None,
        )
        self._env.filters["quote_lines"] = _quote_lines

    def get(self, name: str) -> Template:
        """The named template, compiled; ``TemplateProblem`` saying why when it cannot be."""
        try:
            compiled = self._env.get_template(name)
        except TemplateNotFound:
            raise TemplateProblem(f"template {name}: not found") from None
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            raise TemplateProblem(f"template {name}{where}: {exc}") from None
        return Template(compiled.filename or name, compiled)

    def compile(self, source: str) -> Template:
        try:
            compiled = self._env.from_string(source)
        except TemplateError as exc:
            raise TemplateProblem(f"template {source!r} does not compile: {exc}") from None
        # an inline template: its values printed as they are (``_finalize``), as
        # ``direct_values`` prints them
        return Template(source, compiled, direct_parts(self._env, source))

    def names(self, source: str) -> TemplateNames | None:
        """The context names and attributes ``source`` reads; ``None`` when it does not
        compile (``compile`` says why)."""
        try:
            tree = self._env.parse(source)
        except TemplateError:
            return None
        free = meta.find_undeclared_variables(tree) - set(self._env.globals)
        local = {n.name for n in tree.find_all(nodes.Name) if n.ctx != "load"}
        attributes = tuple(
            (node.node.name, node.attr)
            for node in tree.find_all(nodes.Getattr)
            if isinstance(node.node, nodes.Name) and node.node.name not in local
        )
        return TemplateNames(frozenset(free), attributes)

    @staticmethod
    def is_template(text: str) -> bool:
        return "{{" in text or "{%" in text
