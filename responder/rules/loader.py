"""Loading rule packs: YAML with line numbers, strict validation, compilation.

Every problem names the file, the line and the rule, e.g.
``rules/posthog.yaml:42: rule 'rate-limited': classify.severity: Input should be 'P1',
'P2', 'P3' or 'P4'``; all problems of a file are reported at once. A pack that passes
is then linted (``responder.rules.lint``): its mistakes are problems like any other.
Nothing partial is ever returned: a pack with a problem is not loaded, so an invalid pack
cannot replace a valid one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from responder.render.templates import Template, TemplateProblem, Templates
from responder.rules.conditions import ConditionError, parse_condition
from responder.rules.engine import (
    CompiledErrorType,
    CompiledPack,
    CompiledRule,
    CompiledScope,
    RuleSet,
)
from responder.rules.lint import lint, template_strings
from responder.rules.matchers import MatcherError, parse_matcher
from responder.rules.schema import ErrorTypeFrom, Pack, Rule

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" rule {self.rule!r}:" if self.rule else ""
        return f"{where}:{who} {self.message}"


class RuleLoadError(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


# ----------------------------------------------------------------------- YAML with lines


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


def _lines(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
            _lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


# A pack is a page or two of YAML (the shipped one is about 15 KB); anything near this is a
# mistake or an attack, and is refused before it is parsed.
MAX_PACK_BYTES = 1024 * 1024


class _AliasRefused(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        super().__init__(f"line {line}: YAML aliases (*name, <<: *name) are not allowed")
        self.line = line


class _PackLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases: ``*name`` (and so ``<<: *name``) is refused where it
    is met. An alias makes a node shared, and a few hundred bytes of nested aliases (the
    "billion laughs") expand into more nodes than memory holds once they are walked."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _AliasRefused(event.start_mark.line + 1 if event.start_mark else 0)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> tuple[Any, dict[Path_, int]]:
    """The document and, for every path in it, the line it starts on (1-based).
    ``_AliasRefused`` for a YAML alias."""
    loader = _PackLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Path_, int] = {}
        _lines(node, (), lines)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------- problems


class _Report:
    def __init__(self, file: str, data: Any, lines: Mapping[Path_, int]) -> None:
        self.file, self.data, self.lines = file, data, lines
        self.problems: list[Problem] = []

    def _resolve(self, loc: Sequence[str | int]) -> Path_:
        """The real path in the document (pydantic adds union tags to error locations)."""
        path: list[str | int] = []
        current = self.data
        for part in loc:
            step = _step(current, part)
            if step is not None:
                current = step[0]
                path.append(part)
        return tuple(path)

    def add(self, loc: Sequence[str | int], message: str, *, missing: bool = False) -> None:
        path = self._resolve(loc)
        # a missing key is not in the document: name it after the place it belongs
        shown = (*path, loc[-1]) if missing and loc and path[-1:] != tuple(loc[-1:]) else path
        line = None
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        rule = None
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            candidate = self.data["rules"][path[1]]
            rule = candidate.get("name") if isinstance(candidate, dict) else None
            rule = str(rule) if rule is not None else f"#{path[1] + 1}"
            shown = shown[2:]
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in shown)
        where = where.replace(".[", "[")
        self.problems.append(
            Problem(self.file, line, rule, f"{where}: {message}" if where else message)
        )


def _step(current: Any, part: str | int) -> tuple[Any] | None:
    if isinstance(current, dict) and part in current:
        return (current[part],)
    if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
        return (current[part],)
    return None


# ---------------------------------------------------------------------------- compiling


def _check_templates(raw: Any, base: Path_, templates: Templates, report: _Report) -> None:
    for path, text in template_strings(raw, base):
        try:
            templates.compile(text)
        except TemplateProblem as exc:
            report.add(path, str(exc))


def _check_raw(data: dict[str, Any], report: _Report) -> None:
    """Checks that need no valid schema: every matcher, condition, regex and template,
    and rule names. They run even when the schema fails, so that a file's problems are
    all reported at once."""
    templates = Templates()
    scope = data.get("scope")
    if isinstance(scope, dict):
        for key in ("any", "except"):
            entries = scope.get(key)
            for j, text in enumerate(entries if isinstance(entries, list) else []):
                if isinstance(text, str):
                    try:
                        parse_matcher(text)
                    except MatcherError as exc:
                        report.add(("scope", key, j), str(exc))
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        _check_templates(defaults.get("probes", []), ("defaults", "probes"), templates, report)
    rules = data.get("rules")
    if not isinstance(rules, list):
        return
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        base: Path_ = ("rules", i)
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                report.add((*base, "name"), f"rule name {name!r} is used twice in this pack")
            seen.add(name)
        for key, parse, error in (
            ("match", parse_matcher, MatcherError),
            ("when", parse_condition, ConditionError),
        ):
            entries = rule.get(key)
            for j, text in enumerate(entries if isinstance(entries, list) else []):
                if isinstance(text, str):
                    try:
                        parse(text)
                    except error as exc:
                        report.add((*base, key, j), str(exc))
        classify = rule.get("classify")
        if isinstance(classify, dict):
            title = classify.get("title")
            if isinstance(title, str):
                try:
                    templates.compile(title)
                except TemplateProblem as exc:
                    report.add((*base, "classify", "title"), str(exc))
            error_type = classify.get("error_type")
            cases = error_type.get("cases") if isinstance(error_type, dict) else None
            for j, case in enumerate(cases if isinstance(cases, list) else []):
                pattern = case.get("match") if isinstance(case, dict) else None
                if isinstance(pattern, str):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        report.add(
                            (*base, "classify", "error_type", "cases", j, "match"),
                            f"invalid regular expression {pattern!r}: {exc}",
                        )
        _check_templates(
            {"probes": rule.get("probes", []), "actions": rule.get("actions", [])},
            base,
            templates,
            report,
        )


def _compiled_templates(raw: Any, templates: Templates) -> dict[str, Template]:
    return {text: templates.compile(text) for _, text in template_strings(raw, ())}


def _compile_error_type(rule: Rule) -> CompiledErrorType | None:
    assert rule.classify is not None
    spec = rule.classify.error_type
    if spec is None:
        return None
    if not isinstance(spec, ErrorTypeFrom):
        return CompiledErrorType(fixed=spec)
    kind, _, name = spec.source.partition(":")
    cases = tuple((re.compile(case.match), case.type) for case in spec.cases)
    return CompiledErrorType(fixed=None, kind=kind, name=name, cases=cases, default=spec.default)


def _compile(pack: Pack, raw: dict[str, Any], file: str) -> CompiledPack:
    """Runtime objects of a pack that passed every check (nothing here can fail)."""
    templates = Templates()
    compiled = CompiledPack(spec=pack, source=file)
    if pack.scope is not None:
        compiled.scope = CompiledScope(
            names=frozenset(pack.scope.names),
            first=pack.scope.names[0] if pack.scope.names else None,
            labels=pack.scope.labels,
            matchers=tuple(parse_matcher(text) for text in pack.scope.any),
            excepted=tuple(parse_matcher(text) for text in pack.scope.except_),
        )
    compiled.default_probe_templates = _compiled_templates(
        raw.get("defaults", {}).get("probes", []), templates
    )
    rules = []
    for rule, raw_rule in zip(pack.rules, raw["rules"], strict=True):
        title = None
        if rule.classify is not None and rule.classify.title is not None:
            title = templates.compile(rule.classify.title)
        rules.append(
            CompiledRule(
                pack=compiled,
                spec=rule,
                matchers=tuple(parse_matcher(text) for text in rule.match),
                conditions=tuple(parse_condition(text) for text in rule.when),
                title=title,
                error_type=_compile_error_type(rule) if rule.classify is not None else None,
                templates=_compiled_templates(
                    {"probes": raw_rule.get("probes", []), "actions": raw_rule.get("actions", [])},
                    templates,
                ),
            )
        )
    compiled.rules = tuple(rules)
    return compiled


# -------------------------------------------------------------------------------- public


def load_pack(path: Path, *, display: str | None = None) -> CompiledPack:
    """One pack file, validated and compiled; ``RuleLoadError`` lists every problem."""
    file = display or str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PACK_BYTES + 1)  # never more than the cap, whatever the file is
    except OSError as exc:
        raise RuleLoadError([Problem(file, None, None, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_PACK_BYTES:
        raise RuleLoadError(
            [Problem(file, None, None, f"larger than {MAX_PACK_BYTES} bytes: not a rule pack")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleLoadError([Problem(file, None, None, f"not UTF-8 text: {exc.reason}")]) from None
    try:
        data, lines = load_yaml(text)
    except _DuplicateKey as exc:
        raise RuleLoadError(
            [Problem(file, exc.line, None, f"key {exc.key!r} appears twice")]
        ) from None
    except _AliasRefused as exc:
        raise RuleLoadError(
            [
                Problem(
                    file,
                    exc.line,
                    None,
                    "YAML aliases (*name, <<: *name) are not allowed in a rule pack: "
                    "write the value out",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleLoadError([Problem(file, line, None, f"not valid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise RuleLoadError(
            [Problem(file, 1, None, "a rule pack is a mapping (name, version, rules...)")]
        )
    report = _Report(file, data, lines)
    _check_raw(data, report)
    pack: Pack | None = None
    try:
        pack = Pack.model_validate(data)
    except ValidationError as exc:
        has_rules = isinstance(data.get("rules"), list) and bool(data["rules"])
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and loc == ("rules",) and has_rules:
                continue  # pydantic counts only the valid rules; their problems are reported
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key (not part of the rule-pack format)"
            report.add(loc, message, missing=error["type"] == "missing")
    if report.problems or pack is None:
        raise RuleLoadError(report.problems)
    # a valid pack may still be wrong in ways that show only at 03:00
    for finding in lint(pack, data, lines):
        report.add(finding.path, finding.message)
    if report.problems:
        raise RuleLoadError(report.problems)
    return _compile(pack, data, file)


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, and the ``*.yaml``/``*.yml`` files of directories named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            )
        else:
            files.append(path)
    return files


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Every pack of ``paths``, or ``RuleLoadError`` with every problem of every file."""
    packs: list[CompiledPack] = []
    problems: list[Problem] = []
    paths = list(paths)
    for path in paths:
        if path.is_dir() and not pack_files([path]):
            # an emptied directory (a config map gone wrong) must not drop every rule
            problems.append(Problem(str(path), None, None, "no rule packs (*.yaml) here"))
        elif not path.exists():
            problems.append(Problem(str(path), None, None, "no such file or directory"))
    for path in pack_files(paths):
        try:
            packs.append(load_pack(path))
        except RuleLoadError as exc:
            problems += exc.problems
    owners: dict[str, str] = {}
    for pack in packs:
        if pack.name in owners:
            problems.append(
                Problem(
                    pack.source,
                    None,
                    None,
                    f"pack name {pack.name!r} is also used by {owners[pack.name]}",
                )
            )
        owners.setdefault(pack.name, pack.source)
        for rule in pack.rules:
            key = f"rule:{rule.name}"
            if key in owners and owners[key] != pack.source:
                problems.append(
                    Problem(pack.source, None, rule.name, f"rule name also used in {owners[key]}")
                )
            owners.setdefault(key, pack.source)
    if problems:
        raise RuleLoadError(problems)
    return RuleSet(tuple(packs))
