"""Write deploy/kubernetes/configmap-rules.yaml: the rule packs of rules/ as a ConfigMap.

The ConfigMap holds every ``rules/*.yaml`` byte for byte (tests/test_deploy.py checks it),
so the packs the pods load are the packs tested in this repository. Run it after changing
a pack: ``make manifests`` (or ``python deploy/rules_configmap.py``); ``--check`` only
says whether the file is up to date (exit 1 when it is not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
TARGET = ROOT / "deploy" / "kubernetes" / "configmap-rules.yaml"

HEADER = """\
# GENERATED from rules/*.yaml by deploy/rules_configmap.py (make manifests): do not edit.
# The rule packs the pods load, mounted at /etc/responder/rules (RESPONDER_RULES).
# tests/test_deploy.py fails when a pack here differs from rules/ by a single byte.
apiVersion: v1
kind: ConfigMap
metadata:
  name: responder-rules
  namespace: monitoring
  labels:
    app.kubernetes.io/name: responder
    app.kubernetes.io/component: rules
data:
"""


def block(text: str) -> str:
    """``text`` as the body of a YAML literal block (``|``) indented by four spaces."""
    if not text.endswith("\n") or text.endswith("\n\n"):
        raise ValueError("a pack must end with exactly one newline to embed it byte for byte")
    return "".join(f"    {line}" if line.strip() else "\n" for line in text.splitlines(True))


def render() -> str:
    packs = sorted(RULES.glob("*.yaml"))
    if not packs:
        raise SystemExit(f"no rule packs in {RULES}")
    out = HEADER
    for pack in packs:
        text = pack.read_text(encoding="utf-8")
        if any(line != line.rstrip() for line in text.splitlines()):
            raise SystemExit(f"{pack}: trailing whitespace cannot be embedded byte for byte")
        out += f"  {pack.name}: |\n{block(text)}"
    # the embedding must give back every pack exactly
    data = yaml.safe_load(out)["data"]
    for pack in packs:
        if data[pack.name] != pack.read_text(encoding="utf-8"):
            raise SystemExit(f"{pack}: does not survive embedding in a ConfigMap unchanged")
    return out


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run make manifests")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
