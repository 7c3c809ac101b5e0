"""Values and counts as people read them (pure): a fact printed as its value, never as a
Python ``repr`` of a dict, and a count with its noun in the right number. Used by the
probes' summaries and the messages' context, so a triage line reads the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 pod``, ``2 pods``, ``0 pods``; ``many`` for an irregular plural."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def value_text(value: Any) -> str:
    """One fact's value: numbers to three significant digits, ``yes``/``no``, ``no data``
    for none, a mapping (a query's series by label, ``errors_by_status_code``) as each key
    with its value in parentheses, a list as its items."""
    if value is None:
        return "no data"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value) or "none"
    return str(value)


def facts_text(facts: Mapping[str, Any]) -> str:
    """One namespace's facts as ``name=value`` pairs (``status=down, status_code=503``)."""
    return ", ".join(f"{name}={value_text(value)}" for name, value in facts.items())
