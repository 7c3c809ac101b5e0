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


# `(?s).*X.*`, anchored at both ends, finds X anywhere: searched for X, it needs no
# backtracking over a long annotation (3x faster on 300 characters). Only with the `s` flag
# (else `.` stops at a newline) and an X without alternation or groups (so that the
# `.*`s cannot bind differently).
_ANYWHERE = re.compile(r"\(\?([a-zA-Z]*s[a-zA-Z]*)\)\.\*([^|()]*)\.\*", re.DOTALL)
# ... and when X is plain text, a substring test (of the lower-cased value, with `i`):
# 15x faster than a case-insensitive regex search over a 300-character summary.
_PLAIN = re.compile(r"[A-Za-z0-9_ -]+")


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    text: str
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None
    search: bool = False  # the regex is `.*X.*` (with `s`): searched for X instead
    # ... X is plain text: looked for as a substring (lower-cased with `i`: fold)
    text_in: str | None = None
    fold: bool = False

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
        if self.text_in is not None:
            found = self.text_in in (actual.lower() if self.fold else actual)
            return found if self.op == "=~" else not found
        assert self.regex is not None
        found = (
            self.regex.search(actual) if self.search else self.regex.fullmatch(actual)
        ) is not None
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
    search, text_in, fold = False, None, False
    if m.group("op") in ("=~", "!~"):
        try:
            regex = re.compile(value)
            anywhere = _ANYWHERE.fullmatch(value)
            if anywhere is not None and not anywhere[2].endswith("\\"):
                regex, search = re.compile(f"(?{anywhere[1]}){anywhere[2]}"), True
                if _PLAIN.fullmatch(anywhere[2]) and set(anywhere[1]) <= {"i", "s"}:
                    fold = "i" in anywhere[1]
                    text_in = anywhere[2].lower() if fold else anywhere[2]
        except re.error as exc:
            raise MatcherError(f"matcher {text!r}: invalid regular expression: {exc}") from None
    return Matcher(
        text=text.strip(),
        name=m.group("name"),
        op=m.group("op"),
        value=value,
        regex=regex,
        search=search,
        text_in=text_in,
        fold=fold,
    )
