"""Classify benchmark: µs of CPU to classify one alert with the shipped rule packs.

Run from the project root:

    .venv/bin/python bench/classify.py            # 20,000 alerts of each kind, 5 rounds
    .venv/bin/python bench/classify.py --alerts 50000 --json

Classification runs in the worker for every new signal (and at intake, to name a group,
when packs group differently). This measures the rule walk alone (``RuleSet.evaluate``
without the trace, as ``RuleSet.classify`` runs it for an alert it has not seen), on four
kinds of alert, each a fresh label set every time (no cache helps):

* ``matching``: one of the runbook's alerts, named as the pack names it
  (``PostHogRateLimited``, ``service="posthog-integration"``);
* ``inferred``: an alert of the integration no rule names (``app="posthog-integration"``,
  the error only in its summary): its error type read from the alert;
* ``not matching``: another service's alert (most of an estate's alerts);
* ``not matching, long text``: the same with a 300-character summary and description.

Printed: the median over ``--rounds`` rounds of CPU µs per alert (``time.process_time``)
for each kind. The numbers are informative: the exit status is 0 unless it fails to run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from responder.rules.engine import AlertInput, RuleSet  # noqa: E402
from responder.rules.loader import load_rules  # noqa: E402

LONG = "Checkout latency is above its objective for the last ten minutes. " * 5


def kinds() -> dict[str, Callable[[int], AlertInput]]:
    return {
        "matching": lambda i: AlertInput(
            labels={
                "alertname": "PostHogRateLimited",
                "service": "posthog-integration",
                "namespace": "production",
                "status_code": "429",
                "instance": f"pod-{i}",
            },
            annotations={"summary": "PostHog answers 429"},
        ),
        "inferred": lambda i: AlertInput(
            labels={
                "alertname": "AnalyticsProblem",
                "app": "posthog-integration",
                "namespace": "production",
                "instance": f"pod-{i}",
            },
            annotations={"summary": "PostHog answers Too Many Requests"},
        ),
        "not matching": lambda i: AlertInput(
            labels={
                "alertname": "CheckoutSlow",
                "service": "checkout",
                "namespace": "production",
                "instance": f"pod-{i}",
            },
            annotations={"summary": "checkout is slow"},
        ),
        "not matching, long text": lambda i: AlertInput(
            labels={
                "alertname": "CheckoutSlow",
                "service": "checkout",
                "namespace": "production",
                "instance": f"pod-{i}",
            },
            annotations={"summary": LONG, "description": LONG},
        ),
    }


def measure(rules: RuleSet, make: Callable[[int], AlertInput], n: int) -> float:
    alerts = [make(i) for i in range(n)]
    start = time.process_time()
    for alert in alerts:
        rules.evaluate(alert, explain=False)
    return (time.process_time() - start) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=20_000, help="alerts of each kind")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    rules = load_rules([args.rules])
    out: dict[str, Any] = {}
    for name, make in kinds().items():
        measure(rules, make, min(args.alerts, 2_000))  # warm-up
        rounds = [measure(rules, make, args.alerts) for _ in range(args.rounds)]
        out[name] = {"median_us": round(statistics.median(rounds), 2), "rounds": rounds}
        decision = rules.evaluate(make(0), explain=False).decision
        out[name]["decision"] = f"{decision.severity.value} {decision.error_type.value}"
    if args.json:
        print(json.dumps(out))
    else:
        for name, result in out.items():
            print(
                f"{name:<26} {result['median_us']:8.2f} µs per alert"
                f"   ({result['decision']}; rounds: "
                + ", ".join(f"{r:.2f}" for r in result["rounds"])
                + ")"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
