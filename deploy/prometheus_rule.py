"""Write deploy/kubernetes/monitoring/prometheusrule.yaml: responder's own alert rules
(deploy/prometheus/responder-alerts.yml) as a Prometheus Operator ``PrometheusRule``.

The rules are written once, in the file promtool checks and unit-tests; the Kubernetes
object is rendered from it, so the two cannot drift (tests/test_self_monitoring.py checks
the committed file is this rendering). Run it after changing the rules: ``make manifests``
(or ``python deploy/prometheus_rule.py``); ``--check`` only says whether the file is up to
date (exit 1 when it is not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "deploy" / "prometheus" / "responder-alerts.yml"
TARGET = ROOT / "deploy" / "kubernetes" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/responder-alerts.yml by deploy/prometheus_rule.py
# (make manifests): do not edit. Read the rules, and why each exists, there.
"""


def render() -> str:
    rules = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "responder",
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/name": "responder"},
        },
        "spec": {"groups": rules["groups"]},
    }
    # wide lines: each expression and annotation stays one YAML scalar as in the source
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=1000, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run `make manifests`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
