"""Alertmanager-style matchers: ``name="value"``, ``name!="value"``, ``name=~"re"``, ``name!~"re"``.

The name is a label, ``annotations.<name>`` for an annotation, or ``__source__`` for where
the signal came from (alertmanager, pagerduty). As in Alertmanager, a missing label reads as
the empty string and regular expressions are anchored at both ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

_MATCHER = re.compile(
    r"""^\s*(?P<name>__source__|annotations\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^"\s][^\s]*)?\s*$""",
    re.VERBOSE,
)


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    text: str
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None

    @property
    def on_label(self) -> bool:
        """True when it reads a label (not an annotation, not the source)."""
        return self.name != "__source__" and not self.name.startswith("annotations.")

    def value_of(
        self, labels: Mapping[str, str], annotations: Mapping[str, str], source: str
    ) -> str:
        if self.name == "__source__":
            return source
        if self.name.startswith("annotations."):
            return annotations.get(self.name.removeprefix("annotations."), "")
        return labels.get(self.name, "")

    def matches(
        self, labels: Mapping[str, str], annotations: Mapping[str, str], source: str
    ) -> bool:
        actual = self.value_of(labels, annotations, source)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(text)
    if m is None:
        raise MatcherError(
            f'matcher {text!r} is not of the form name="value" (operators =, !=, =~, !~)'
        )
    raw = m.group("value") or '""'
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            raise MatcherError(f"matcher {text!r}: bad escape in the quoted value") from None
    else:
        value = raw
    regex = None
    if m.group("op") in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise MatcherError(f"matcher {text!r}: invalid regular expression: {exc}") from None
    return Matcher(
        text=text.strip(), name=m.group("name"), op=m.group("op"), value=value, regex=regex
    )
