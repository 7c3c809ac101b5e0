"""Rule unit tests, in the spirit of ``promtool test rules``.

A test file names the packs it tests and lists cases: an alert (labels and annotations,
or a saved Alertmanager payload), optionally the triage facts, and what the rules must
decide. Only the keys given under ``expect`` are checked::

    rule_files: [../posthog.yaml]
    tests:
      - name: 429 without a PostHog incident queues requests
        alert: {labels: {alertname: PostHogRateLimited, service: posthog-integration,
                         status_code: "429", namespace: production}}
        facts: {prometheus: {error_ratio: 0.2}, vendor: {incident: false}}
        expect:
          severity: P2
          error_type: rate_limit
          rule: rate-limited
          branch: our-integration-rate-limit
          actions: [{type: set_env, env: {RATE_LIMIT_MODE: queue}}]
          notify: ["slack:#posthog-incidents"]

``facts`` may be written nested, as above, or dotted (``prometheus.error_ratio: 0.2``).
``actions`` and ``probes`` are lists of mappings, each a subset of what is planned (its
``type``, parameters, ``dry_run``, ``rule``), in order.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from responder.domain.decision import Decision
from responder.rules.engine import AlertInput, RuleSet
from responder.rules.facts import FactsError, expand
from responder.rules.loader import Problem, RuleLoadError, load_rules, load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertSpec(_Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    source: str = "alertmanager"


class Expect(_Strict):
    severity: str | None = None
    error_type: str | None = None
    rule: str | None = None
    branch: str | None = None
    matched: list[str] | None = None
    title: str | None = None
    actions: list[dict[str, Any]] | None = None
    probes: list[dict[str, Any]] | None = None
    notify: list[str] | None = None
    pack: str | None = None
    # how the error type was decided: the start of `rules explain`'s reason ("rule",
    # "label", "alert name", "annotation summary", "annotation description", "none")
    error_type_from: str | None = None

    model_config = ConfigDict(extra="forbid")


class Case(_Strict):
    name: str = Field(min_length=1)
    alert: AlertSpec | None = None
    payload: str | None = None  # a saved Alertmanager payload; its first alert
    facts: dict[str, Any] | None = None
    expect: Expect

    @model_validator(mode="after")
    def _one_input(self) -> Case:
        if (self.alert is None) == (self.payload is None):
            raise ValueError("give exactly one of `alert` and `payload`")
        return self


class RuleTestFile(_Strict):
    rule_files: list[str] = Field(min_length=1)
    tests: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _actual(decision: Decision) -> dict[str, Any]:
    return {
        "severity": decision.severity.value,
        "error_type": decision.error_type.value,
        "rule": decision.rule,
        "branch": decision.branch,
        "matched": list(decision.matched),
        "title": decision.title,
        "actions": [
            {**a.spec.model_dump(mode="json"), "dry_run": a.dry_run, "rule": a.rule}
            for a in decision.actions
        ],
        "probes": [{**p.spec.model_dump(mode="json"), "rule": p.rule} for p in decision.probes],
        "notify": list(decision.notify),
        "pack": decision.pack,
        "error_type_from": decision.reasons.get("error_type", "none"),
    }


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _diff(key: str, expected: Any, actual: Any) -> str:
    def dump(value: Any) -> list[str]:
        return yaml.safe_dump(value, sort_keys=True, allow_unicode=True).splitlines()

    lines = difflib.unified_diff(dump(expected), dump(actual), "expected", "got", lineterm="")
    return f"{key}:\n" + "\n".join(f"    {line}" for line in lines)


def check(decision: Decision, expect: Expect) -> list[str]:
    """Every way ``decision`` differs from ``expect`` (a diff per key)."""
    actual = _actual(decision)
    failures = []
    for key, wanted in expect.model_dump(exclude_unset=True).items():
        if key in ("actions", "probes"):
            if not _subset(wanted, actual[key]):
                failures.append(_diff(key, wanted, actual[key]))
        elif key == "error_type_from":
            if not actual[key].startswith(wanted):
                failures.append(_diff(key, wanted, actual[key]))
        elif wanted != actual[key]:
            failures.append(_diff(key, wanted, actual[key]))
    return failures


def _alert(case: Case, base: Path) -> AlertInput:
    if case.alert is not None:
        return AlertInput(
            labels=case.alert.labels, annotations=case.alert.annotations, source=case.alert.source
        )
    assert case.payload is not None
    doc = json.loads((base / case.payload).read_text(encoding="utf-8"))
    first = doc["alerts"][0]
    return AlertInput(labels=first["labels"], annotations=first.get("annotations", {}))


def run_file(path: Path, *, display: str | None = None) -> list[CaseResult]:
    """Run one test file; a file that cannot be read is one failing result."""
    name = display or str(path)
    try:
        data, _ = load_yaml(path.read_text(encoding="utf-8"))
        spec = RuleTestFile.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        return [CaseResult(name, "(test file)", [f"cannot use this test file: {exc}"])]
    base = path.parent
    try:
        rules: RuleSet = load_rules([base / f for f in spec.rule_files])
    except RuleLoadError as exc:
        return [CaseResult(name, "(rule files)", [str(p) for p in exc.problems])]
    results = []
    for case in spec.tests:
        try:
            alert = _alert(case, base)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            results.append(CaseResult(name, case.name, [f"cannot read the payload: {exc}"]))
            continue
        try:
            facts = expand(case.facts) if case.facts is not None else None
        except FactsError as exc:
            results.append(CaseResult(name, case.name, [f"cannot read the facts: {exc}"]))
            continue
        evaluation = rules.evaluate(alert, facts)
        failures = check(evaluation.decision, case.expect)
        failures += [f"problem: {p}" for p in evaluation.problems]
        results.append(CaseResult(name, case.name, failures))
    return results


def find_test_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.y*ml") if p.is_file())
        else:
            files.append(path)
    return files


__all__ = ["CaseResult", "Problem", "check", "find_test_files", "run_file"]
