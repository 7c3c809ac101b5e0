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

from responder.render.templates import (
    MAX_OUTPUT_CHARS,
    DirectParts,
    TemplateProblem,
    direct_parts,
    direct_values,
)

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


@functools.lru_cache(maxsize=1024)
def _direct(source: str) -> DirectParts | None:
    parts = direct_parts(_ENV, source)
    if parts is None or any(_OPEN in p or _CLOSE in p for p in parts if isinstance(p, str)):
        return None  # (a marker in the template's own text: jinja2's rendering refuses it)
    return parts


def render_pieces(source: str, context: Mapping[str, Any]) -> list[Piece]:
    """``source`` rendered, as its fixed text and its printed values in order."""
    parts = _direct(source)
    if parts is not None:
        values = direct_values(parts, context)
        if values is not None:
            return _direct_pieces(source, parts, values)
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


def _direct_pieces(source: str, parts: DirectParts, values: list[str]) -> list[Piece]:
    """The pieces of a template of text and slots (``direct_parts``): what ``render_pieces``
    makes of jinja2's marked output, refused alike."""
    pieces: list[Piece] = []
    length = 0  # of jinja2's output: each value between two markers
    printed = iter(values)
    for part in parts:
        if isinstance(part, str):
            pieces.append(Piece(part, interpolated=False))
            length += len(part)
            continue
        value = next(printed)
        if _OPEN in value or _CLOSE in value:
            raise TemplateProblem(f"template {source!r}: a value holds a control character")
        pieces.append(Piece(value, interpolated=True))
        length += len(value) + 2
    if length > MAX_OUTPUT_CHARS * 2:
        raise TemplateProblem(f"template {source!r}: the output is longer than allowed")
    return pieces
