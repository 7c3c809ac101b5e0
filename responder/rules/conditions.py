"""Conditions on triage facts: ``vendor.incident == true``, ``prometheus.error_rate > 0.05``.

A condition is ``<fact path> <operator> <value>``. Operators: ``==``, ``!=``, ``>``, ``>=``,
``<``, ``<=``, ``in`` and ``not in`` (with a list: ``health.status in [down, degraded]``).
Values are written as in YAML: ``true``, ``0.05``, ``down``, ``"a string"``. A fact that is
missing (its probe failed or did not run) makes the condition false, never an error: the
decision tree then falls through to the rules that do not need it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

_CONDITION = re.compile(
    r"^\s*(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s+"
    r"(?P<op>==|!=|>=|<=|>|<|not\s+in|in)\s+(?P<value>.+?)\s*$"
)
_MISSING = object()


class ConditionError(ValueError):
    pass


@dataclass(frozen=True)
class Outcome:
    holds: bool
    why: str
    value: Any = None  # the fact's value, when there was one


@dataclass(frozen=True)
class Condition:
    text: str
    path: str
    op: str
    value: Any

    def evaluate(self, facts: Mapping[str, Any]) -> Outcome:
        actual = lookup(facts, self.path)
        if actual is _MISSING:
            return Outcome(False, f"{self.path} is not known")
        holds = _compare(actual, self.op, self.value)
        verdict = "holds" if holds else "does not hold"
        return Outcome(holds, f"{self.path} is {actual!r}: {self.text} {verdict}", actual)


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    current: Any = facts
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op in ("in", "not in"):
        found = actual in expected
        return found if op == "in" else not found
    if op in ("==", "!="):
        a, e = _number(actual), _number(expected)
        same = (a == e) if a is not None and e is not None else actual == expected
        return same if op == "==" else not same
    a, e = _number(actual), _number(expected)
    if a is None or e is None or math.isnan(a):
        return False  # ordering needs numbers; a string or NaN never compares
    return {">": a > e, ">=": a >= e, "<": a < e, "<=": a <= e}[op]


def parse_condition(text: str) -> Condition:
    m = _CONDITION.match(text)
    if m is None:
        raise ConditionError(
            f"condition {text!r} is not of the form <fact> <op> <value> "
            "(ops: == != > >= < <= in, not in)"
        )
    op = " ".join(m.group("op").split())
    try:
        value = yaml.safe_load(m.group("value"))
    except yaml.YAMLError:
        raise ConditionError(f"condition {text!r}: cannot read the value") from None
    if op in ("in", "not in") and not isinstance(value, list):
        raise ConditionError(f"condition {text!r}: `{op}` needs a list, like [a, b]")
    if op in (">", ">=", "<", "<=") and _number(value) is None:
        raise ConditionError(f"condition {text!r}: `{op}` needs a number")
    return Condition(text=text.strip(), path=m.group("path"), op=op, value=value)
