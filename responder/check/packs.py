"""Rule packs: each loads and passes the lint (``rules/loader.py`` runs it), as
``responder rules lint`` says."""

from __future__ import annotations

from responder.check.result import Result, fail, ok
from responder.rules.engine import RuleSet
from responder.rules.loader import RuleLoadError, load_rules
from responder.settings import Settings

NAME = "packs"


def check(settings: Settings) -> tuple[list[Result], RuleSet | None]:
    """The results, and the packs when they load (the other checks read them)."""
    try:
        rules = load_rules(settings.rules)
    except RuleLoadError as exc:
        fix = "fix the pack (responder rules lint shows each problem); serve refuses to start"
        return [fail(NAME, str(problem), fix) for problem in exc.problems], None
    results = [
        ok(NAME, f"{pack.source}: pack {pack.name} {pack.spec.version}, {len(pack.rules)} rules")
        for pack in rules.packs
    ]
    return results, rules
