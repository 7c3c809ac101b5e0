"""Message templates: each renders on the sample incidents, as at start-up
(``app.build_renderer``: ``notify/checks.py`` and the postmortem's check)."""

from __future__ import annotations

from responder.app import message_templates
from responder.check.result import Result, fail, ok
from responder.notify.checks import check_templates
from responder.notify.planners import Renderer
from responder.render.templates import TemplateProblem
from responder.report.postmortem import check_postmortem
from responder.rules.engine import RuleSet
from responder.settings import Settings

NAME = "templates"


def check(settings: Settings, rules: RuleSet | None) -> list[Result]:
    where = str(settings.templates_dir) if settings.templates_dir else "the shipped ones"
    fix = (
        "fix the template in RESPONDER_TEMPLATES_DIR (responder render previews it); "
        "serve refuses to start"
    )
    try:
        renderer = Renderer(
            templates=message_templates(settings),
            rules=lambda: rules or RuleSet(),
            commander=settings.incident_commander,
            update_intervals_s=settings.update_intervals_s(),
        )
    except TemplateProblem as exc:  # a template that does not even compile
        return [fail(NAME, str(exc), fix)]
    problems = check_templates(renderer) + check_postmortem(renderer.templates)
    if problems:
        return [fail(NAME, problem, fix) for problem in problems]
    return [ok(NAME, f"every message template renders ({where})")]
