"""Which incident group an alert belongs to, decided once at intake.

The group is the unit of order: the signals of one group take effect in the order intake
queued them (see ``pipeline`` and the ``order`` key of the store), so intake must know it
before it queues a signal. The rules decide it (the classifying pack's ``group_by``, else
``RESPONDER_GROUP_BY``). When every pack groups as the default does (the shipped pack),
the labels alone decide; otherwise the answer is remembered per alert fingerprint, so
that an alert's firing and its resolve fall in the same group even when their
annotations differ, and so that a repeat (90 % of an alert storm's webhooks) costs one
dictionary lookup, not a classification (13-85 µs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from responder.domain.signal import group_key_for
from responder.rules.engine import AlertInput, RuleSet

# Enough for every alert of a large estate; past it the oldest answers are forgotten.
_CACHE_SIZE = 16_384


class AlertGroups:
    def __init__(self, *, rules: Callable[[], RuleSet], default_group_by: Sequence[str]) -> None:
        self._rules = rules
        self._default = tuple(default_group_by)
        self._seen_rules: RuleSet | None = None
        self._by_fingerprint: dict[str, str] = {}
        self._only: tuple[str, ...] | None = None

    def _only_group_by(self, rules: RuleSet) -> tuple[str, ...] | None:
        """The group_by every alert gets, when the packs and the default agree (the
        shipped pack does): then a group needs no classification, only its labels."""
        ways = {tuple(p.spec.defaults.group_by) or self._default for p in rules.packs}
        ways.add(self._default)
        return ways.pop() if len(ways) == 1 else None

    def __call__(
        self, fingerprint: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> str:
        """The incident group of an Alertmanager alert (intake's hot path: positional)."""
        rules = self._rules()
        if rules is not self._seen_rules:  # a reload may group differently: start afresh
            self._seen_rules = rules
            self._by_fingerprint.clear()
            self._only = self._only_group_by(rules)
        key = self._by_fingerprint.get(fingerprint)
        if key is None:
            if self._only is not None:  # every pack groups alike: no need to ask which
                key = group_key_for(labels, self._only)
            else:
                decision = rules.classify(
                    AlertInput(labels=labels, annotations=annotations, source="alertmanager")
                )
                key = group_key_for(labels, decision.group_by or self._default)
            if len(self._by_fingerprint) >= _CACHE_SIZE:
                del self._by_fingerprint[next(iter(self._by_fingerprint))]
            self._by_fingerprint[fingerprint] = key
        return key
