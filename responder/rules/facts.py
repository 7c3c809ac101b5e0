"""The facts `when` conditions can read, and facts written by hand.

A fact is a dotted name: ``vendor.incident``, ``prometheus.error_ratio``. Probes yield
theirs (each probe type declares them next to its parameters, ``responder.domain.plans``);
``incident.*`` are the incident's own: the classification of the walk (``severity``,
``error_type``, set by the engine) and, after triage, its ``status`` and ``acked``
(``responder.triage.stage``).

People write facts by hand for ``responder rules explain --facts`` and rule tests, nested
(``prometheus: {error_ratio: 0.2}``) or dotted (``prometheus.error_ratio: 0.2``), or both:
``expand`` makes one nested mapping of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, get_args

from responder.domain.facts import FACT_NAMESPACES
from responder.domain.plans import ERROR_FACT, ProbeSpec, PrometheusProbe

# The incident's own facts, with what they hold.
INCIDENT_FACTS: Mapping[str, str] = {
    "incident.severity": "the severity set so far in this walk (P1..P4)",
    "incident.error_type": "the error type set so far in this walk",
    "incident.status": "the incident's status (after triage)",
    "incident.acked": "true when a human acknowledged the incident (after triage)",
}


def probe_facts(probes: Iterable[ProbeSpec]) -> dict[str, bool]:
    """Every fact the probes yield, each with whether its value may be a mapping."""
    facts: dict[str, bool] = {}
    for probe in probes:
        for name, nested in probe.facts().items():
            facts[name] = facts.get(name, False) or nested
    return facts


def known(path: str, facts: Mapping[str, bool]) -> bool:
    """Whether a condition's ``path`` reads a fact of ``facts``, or reads into one whose
    value may be a mapping (``prometheus.errors_by_status_code.429``)."""
    if path in facts:
        return True
    parts = path.split(".")
    return any(facts.get(".".join(parts[:n]), False) for n in range(1, len(parts)))


def probe_types() -> dict[str, Any]:
    """Each probe type's name and its parameter model (``VendorStatusProbe``...)."""
    union = get_args(ProbeSpec)[0]
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(union)}


def would_yield(path: str) -> str | None:
    """The probe type that yields the fact ``path`` when a pack has one, if any does."""
    space, _, rest = path.partition(".")
    name = rest.split(".")[0]
    for kind, model in probe_types().items():
        if FACT_NAMESPACES.get(kind, kind) != space or not name:
            continue
        if model is PrometheusProbe or name in model.YIELDS or name == ERROR_FACT:
            return kind
    return None


class FactsError(ValueError):
    pass


def expand(facts: Mapping[str, Any]) -> dict[str, Any]:
    """One nested mapping of facts written nested, dotted, or both::

        {"prometheus.error_ratio": 0.2, "vendor": {"incident": False}}
        → {"prometheus": {"error_ratio": 0.2}, "vendor": {"incident": False}}

    A dotted key inside a nested mapping is expanded too. A fact given twice (a value
    where another key needs a mapping, or two values) is a ``FactsError``.
    """
    out: dict[str, Any] = {}
    _merge(out, facts, "")
    return out


def _merge(into: dict[str, Any], facts: Mapping[str, Any], prefix: str) -> None:
    for raw_key, value in facts.items():
        # YAML reads `429:` as a number; facts, like the JSON probes yield, have text keys
        key = (
            str(raw_key) if isinstance(raw_key, int) and not isinstance(raw_key, bool) else raw_key
        )
        if not isinstance(key, str) or not key or any(part == "" for part in key.split(".")):
            raise FactsError(f"{prefix}{key!r} is not a fact name")
        *parents, leaf = key.split(".")
        place, at = into, prefix
        for part in parents:
            at += part
            child = place.setdefault(part, {})
            if not isinstance(child, dict):
                raise FactsError(f"{at} is given a value and also facts under it")
            place, at = child, at + "."
        if isinstance(value, Mapping):
            child = place.setdefault(leaf, {})
            if not isinstance(child, dict):
                raise FactsError(f"{at}{leaf} is given a value and also facts under it")
            _merge(child, value, f"{at}{leaf}.")
        elif isinstance(place.get(leaf), dict):
            raise FactsError(f"{at}{leaf} is given a value and also facts under it")
        elif leaf in place:
            raise FactsError(f"{at}{leaf} is given twice")
        else:
            place[leaf] = value
