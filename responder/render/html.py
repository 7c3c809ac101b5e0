"""The incident pages' HTML (``web/pages.py``): an environment of their own, sandboxed
like the message templates' and with autoescape on, over the templates shipped in
``render/pages/``, compiled when loaded.

Everything an incident holds may come from an alert, so every value a page prints is
escaped where it is printed: a label can show as ``<b>`` but never become an element.
The one value printed as it is (``| safe`` in ``incident.html.j2``) is the error-rate
graph, an ``<svg>`` of our own rendering whose labels its renderer escaped
(``ports.IncidentGraphs``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from responder.render.templates import TemplateProblem
from responder.render.words import value_text

PAGES_DIR = Path(__file__).with_name("pages")
PAGE_TEMPLATES = (
    "base.html.j2",
    "list.html.j2",
    "incident.html.j2",
    "login.html.j2",
    "error.html.j2",
)


def _when(value: datetime | None) -> str:
    """A time as people compare them on one page: UTC to the second."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _json(value: object) -> str:
    """A JSON value (a patch, a state) indented for a ``<pre>``; escaped when printed."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class HtmlPages:
    """The page templates, compiled once; ``render`` fills one in."""

    def __init__(self, directory: Path = PAGES_DIR) -> None:
        env = SandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=True,
            loader=FileSystemLoader(str(directory)),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = _when
        env.filters["json"] = _json
        env.filters["value"] = value_text
        try:
            self._templates = {name: env.get_template(name) for name in PAGE_TEMPLATES}
        except TemplateError as exc:
            raise TemplateProblem(f"page template: {exc}") from None

    def render(self, name: str, **context: Any) -> str:
        return str(self._templates[name].render(**context))
