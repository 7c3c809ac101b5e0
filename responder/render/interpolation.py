"""Templates whose output lands in a structured field (a URL, a Kubernetes name, a label
selector, a query): rendered into pieces, the template's own text apart from each value a
``{{ … }}`` printed, so that the caller checks or escapes every value by where it lands.

The same sandbox as ``render.templates`` (``StrictUndefined``, output capped); only the
``finalize`` hook differs: it wraps every printed value in markers, which the renderer
then splits on. A value that itself holds a marker (a control character) is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from responder.render.templates import MAX_OUTPUT_CHARS, TemplateProblem

_OPEN, _CLOSE = "\x02", "\x03"


class _MarkerInValue(ValueError):
    pass


def _mark(value: object) -> str:
    text = "" if value is None else str(value)
    if _OPEN in text or _CLOSE in text:
        raise _MarkerInValue
    return f"{_OPEN}{text}{_CLOSE}"


_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False, finalize=_mark
)


@dataclass(frozen=True)
class Piece:
    text: str
    interpolated: bool  # printed by ``{{ … }}``, not written by the template


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return _ENV.from_string(source)


def render_pieces(source: str, context: Mapping[str, Any]) -> list[Piece]:
    """``source`` rendered, as its fixed text and its printed values in order."""
    try:
        out = str(_compiled(source).render(**context))
    except _MarkerInValue:
        raise TemplateProblem(f"template {source!r}: a value holds a control character") from None
    except TemplateError as exc:
        raise TemplateProblem(f"template {source!r}: {exc}") from None
    if len(out) > MAX_OUTPUT_CHARS * 2:
        raise TemplateProblem(f"template {source!r}: the output is longer than allowed")
    pieces: list[Piece] = []
    rest = out
    while rest:
        before, opened, after = rest.partition(_OPEN)
        if before:
            if _CLOSE in before:  # only a printed value holds markers; never the template
                raise TemplateProblem(f"template {source!r}: a value holds a control character")
            pieces.append(Piece(before, interpolated=False))
        if not opened:
            break
        value, closed, rest = after.partition(_CLOSE)
        if not closed or _OPEN in value:
            raise TemplateProblem(f"template {source!r}: a value holds a control character")
        pieces.append(Piece(value, interpolated=True))
    return pieces
