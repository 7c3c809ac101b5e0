"""``responder rules lint | test | explain``: tooling for rule authors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from responder.rules.engine import Evaluation, RuleSet

# `responder` builds this group at every start: the rule engine (pydantic, jinja2) is
# imported by the commands that use it, so the other commands start fast (cli.py).

rules_cli = typer.Typer(help="Check, test and explain rule packs.", no_args_is_help=True)

PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Pack files or directories (default: the shipped rules/)."),
]


def _paths(paths: list[Path] | None) -> list[Path]:
    from responder.settings import default_rules_paths

    for path in paths or []:
        if not path.exists():  # one line, not the loader's "no such file" and "cannot read"
            typer.echo(f"error: {path}: no such file or directory", err=True)
            raise typer.Exit(1)
    return list(paths) if paths else default_rules_paths()


def _load(paths: list[Path] | None) -> RuleSet:
    from responder.rules.loader import RuleLoadError, load_rules

    try:
        return load_rules(_paths(paths))
    except RuleLoadError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None


@rules_cli.command("lint")
def lint(paths: PathsArg = None) -> None:
    """Validate packs: exit 0 when all load, 1 with every problem (file:line: rule: ...)."""
    from responder.rules.loader import pack_files

    files = pack_files(_paths(paths))
    if not files:
        typer.echo("error: no rule pack files found", err=True)
        raise typer.Exit(1)
    rules = _load(paths)
    for pack in rules.packs:
        typer.echo(
            f"ok: {pack.source}: pack {pack.name} {pack.spec.version}, {len(pack.rules)} rules"
        )


@rules_cli.command("test")
def run_rule_tests(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Test files or directories (default: rules/tests)."),
    ] = None,
) -> None:
    """Run rule unit tests; print a diff for each failure; exit 1 if any fails."""
    from responder.rules.testing import find_test_files, run_file
    from responder.settings import default_rules_paths

    if not paths:
        paths = [p / "tests" for p in default_rules_paths()]
    files = find_test_files(paths)
    if not files:
        typer.echo("error: no rule test files found", err=True)
        raise typer.Exit(1)
    passed = failed = 0
    for file in files:
        for result in run_file(file):
            if result.passed:
                passed += 1
                continue
            failed += 1
            typer.echo(f"FAIL {result.file}: {result.name}")
            for failure in result.failures:
                typer.echo("  " + failure.replace("\n", "\n  "))
    typer.echo(f"{passed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _read_facts(path: Path | None) -> dict[str, Any] | None:
    import yaml

    from responder.rules.facts import FactsError, expand

    if path is None:
        return None
    try:
        facts = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"error: {path}: cannot read facts: {exc}", err=True)
        raise typer.Exit(1) from None
    if not isinstance(facts, dict):
        typer.echo(f"error: {path}: facts must be a mapping", err=True)
        raise typer.Exit(1)
    try:
        return expand(facts)  # `prometheus.error_ratio: 0.2` as well as nested mappings
    except FactsError as exc:
        typer.echo(f"error: {path}: {exc}", err=True)
        raise typer.Exit(1) from None


def _print(evaluation: Evaluation, rules: RuleSet, facts: dict[str, Any] | None) -> None:
    for step in evaluation.trace:
        verdict = (
            "MATCH" + (" (ends the walk)" if step.ended_walk else ", continue")
            if step.matched
            else "no match"
        )
        typer.echo(f"  rule {step.pack}/{step.rule}: {verdict}")
        for m in step.matchers:
            mark = "+" if m.passed else "-"
            typer.echo(f"      {mark} {m.text}" + ("" if m.passed else f"   (is {m.actual!r})"))
        for text, outcome in step.conditions:
            mark = "+" if outcome.holds else "-"
            typer.echo(f"      {mark} when {text}   ({outcome.why})")
    d = evaluation.decision
    level = rules.severity_level(d.pack, d.severity)
    typer.echo("  decision:")
    if "scope" in d.reasons:
        typer.echo(f"    scope      {d.reasons['scope']}")
    severity = f"{d.severity.value} ({level.definition}, respond {level.response_time})"
    why = d.reasons.get("severity", "")
    if why.startswith("rule "):
        typer.echo(f"    severity   {severity} by {why}")
    elif why:
        typer.echo(f"    severity   {severity}: {why}")
    elif d.rule is None:
        typer.echo(f"    no rule classified it: {d.severity.value} by default")
    else:
        typer.echo(f"    severity   {severity} by rule {d.rule}")
    error_type = d.error_type.value
    if d.reasons.get("error_type"):
        error_type += f": {d.reasons['error_type']}"
    typer.echo(f"    error type {error_type}")
    typer.echo(f"    title      {d.title}")
    branch = d.branch or ("none: the decision tree needs triage facts" if facts is None else "none")
    typer.echo(f"    branch     {branch}")
    typer.echo(f"    probes     {', '.join(p.spec.type for p in d.probes) or 'none'}")
    for action in d.actions:
        mode = "dry-run" if action.dry_run else "APPLY"
        params = action.spec.model_dump(mode="json", exclude={"type"}, exclude_defaults=True)
        typer.echo(f"    action     {action.spec.type} [{mode}] {json.dumps(params)}")
    if not d.actions:
        typer.echo("    actions    none")
    typer.echo(f"    notify     {', '.join(d.notify) or 'none'}")
    for problem in evaluation.problems:
        typer.echo(f"    problem    {problem}")


@rules_cli.command("explain")
def explain(
    payload: Annotated[Path, typer.Argument(help="A saved Alertmanager webhook payload.")],
    facts: Annotated[
        Path | None,
        typer.Option(
            help="Triage facts (YAML or JSON) to walk the tree with, nested or dotted "
            "(prometheus.error_ratio: 0.2); rules/facts/ has one file per branch."
        ),
    ] = None,
    rules_paths: Annotated[
        list[Path] | None, typer.Option("--rules", help="Packs (default: rules/).")
    ] = None,
) -> None:
    """Which rules were tried for each alert of a payload, which matchers and conditions
    passed or failed, and the decision."""
    from responder.rules.engine import AlertInput

    try:
        doc = json.loads(payload.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {payload}: {exc}", err=True)
        raise typer.Exit(1) from None
    alerts = doc.get("alerts") if isinstance(doc, dict) else None
    if not isinstance(alerts, list) or not alerts:
        typer.echo(f"error: {payload}: not an Alertmanager payload (no alerts)", err=True)
        raise typer.Exit(1)
    rules = _load(rules_paths)
    known = _read_facts(facts)
    for alert in alerts:
        labels = alert.get("labels", {})
        typer.echo(f"alert {labels.get('alertname', '?')} {json.dumps(labels, sort_keys=True)}")
        typer.echo(f"  facts: {json.dumps(known) if known is not None else 'none (before triage)'}")
        evaluation = rules.evaluate(
            AlertInput(labels=labels, annotations=alert.get("annotations", {})), known
        )
        _print(evaluation, rules, known)
