"""Lint: the mistakes of a pack that loads but bites at 03:00.

A pack can be valid YAML, follow the format and compile, and still be wrong in ways that
show only when the alert comes. The loader runs these checks on every pack that passed
the others, so ``responder rules lint``, ``responder serve`` and a reload all refuse it,
with the file, the line and the rule like any other problem:

- **Unknown facts.** A ``when`` condition reads a fact no probe of the pack yields
  (``promethues.error_ratio``): a missing fact makes a condition false, so the branch would
  silently never be taken. The facts a rule may read are the ``incident.*`` ones and those
  of the probes that can run for the same alert: the pack's default probes, the rule's
  own, those of earlier rules with ``continue: true``, and those of later rules without
  conditions (before triage the walk passes the rules that need facts). Each probe type
  declares its facts (``responder.domain.plans``); a condition may read into a fact whose
  value may be a mapping (``prometheus.errors_by_status_code.429``). The message suggests
  the closest known fact.
- **Shadowed rules.** An earlier rule without ``continue: true`` each of whose matchers
  and conditions is implied by one of a later rule's matches every alert the later one
  matches and ends the walk first: the later rule never runs. Implied: the same (after
  parsing: quoting, spacing and the way a number is written do not count); a matcher that
  holds on the later one's only value (``alertname=~"PostHog.*"`` before
  ``alertname="PostHogAuthFailures"``, tested with the engine's own anchored match); a
  regex that matches every text of the later one's, when both are plain text and ``.*``
  (``PostHog.*`` before ``PostHogAuth.*``); ``!=`` a value the later matcher refuses; a
  looser threshold on the same fact (``> 0.01`` before ``> 0.05``, ``>=``, ``<``, ``<=``,
  ``==``, ``!=``). Conditions on ``incident.*`` are not compared across a rule with
  ``continue: true`` that classifies: it may change them between the two.
- **Unknown template names.** A template (probe and action parameters, ``classify.title``)
  names a variable the templates do not see (``label.service`` for ``labels.service``) or
  an attribute a known value does not have. ``labels.<any>`` and ``annotations.<any>``
  are always allowed: any label may exist. The templates' names come from
  ``AlertInput.context()``, the context the engine renders them with.
- **URLs out of their own ``allow_hosts``.** A probe whose fixed URL (no template in
  it) names a host its ``allow_hosts`` does not allow is never requested.
- **Regular expressions that can never match**, in regex matchers, ``error_type`` cases
  and ``pod_logs`` patterns: ``^`` or ``\\A`` after text that must already have been
  consumed (``a^b``), text other than a final newline after ``$`` or any text after
  ``\\Z`` (``$x``), a character class that matches no character (``[^\\s\\S]``), the empty
  negative lookahead ``(?!)``, and an expression that needs a newline where the text is a
  single line (label values, log lines).

What is not detected. The regex check is sound, not complete: it never calls an
expression impossible that can match (label values and log lines taken to be single
lines: Prometheus alert rules write them so, though a label value could carry a newline),
and it misses impossibilities other than the above (``(?=a)b``, boundary clashes like
``\\bx\\B``, back references, lookbehinds, ``^`` and ``$`` under ``(?m)``). The shadow
check compares one earlier rule at a time, matcher by matcher: a rule shadowed by several
rules together passes, as does one behind a regex it cannot prove covers the later one's
(``(?i)``, classes, alternatives, ``.+``) or behind conditions implied only together. The
fact check reads one pack: a rule counting on the default probes of another pack that
classifies its alerts is refused, and a fact that exists but cannot hold the value
compared (``health.status == dwon``) passes, as do conditions that contradict each other.
The template check knows names, not values: ``{{ labels.x }}`` passes whatever labels an
alert will carry.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from responder.domain.names import url_problem
from responder.domain.plans import (
    ANSWERED_BY,
    BACKUP,
    ERROR_FACT,
    REACHABLE,
    HealthProbe,
    PodLogsProbe,
    ProbeSpec,
    VendorStatusProbe,
)
from responder.render.templates import Templates
from responder.rules.conditions import Condition, parse_condition
from responder.rules.engine import AlertInput
from responder.rules.facts import INCIDENT_FACTS, known, probe_facts, would_yield
from responder.rules.matchers import Matcher, parse_matcher
from responder.rules.schema import ErrorTypeFrom, Pack, Rule

Path_ = tuple[str | int, ...]

# The template variables whose every attribute exists: any label, any annotation.
OPEN_MAPPINGS = frozenset({"labels", "annotations"})

_sre: Any = importlib.import_module("re._parser")  # sre_parse; no stubs, no public API

_MULTILINE = _sre.SRE_FLAG_MULTILINE
_DOTALL = _sre.SRE_FLAG_DOTALL
_NEWLINE = ord("\n")


@dataclass(frozen=True)
class Finding:
    """One mistake: where it is in the pack's document, and what it is."""

    path: Path_
    message: str


def lint(
    pack: Pack, raw: Mapping[str, Any], lines: Mapping[Path_, int] | None = None
) -> list[Finding]:
    """Every mistake of a pack that passed validation (``raw``: the document as written,
    for its template strings; ``lines``: where each path starts, for messages that name
    another place)."""
    return [
        *_unknown_facts(pack),
        *_shadowed(pack, lines or {}),
        *_templates(raw),
        *_regexes(pack),
        *_unreachable_urls(pack),
    ]


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# ------------------------------------------------------------------------------- facts


def _probes_for(rules: Sequence[Rule], i: int, defaults: Sequence[ProbeSpec]) -> list[ProbeSpec]:
    """The probes that can run for an alert that reaches rule ``i``."""
    probes = [*defaults, *rules[i].probes]
    for j, other in enumerate(rules):
        if (j < i and other.continue_) or (j > i and not other.when):
            probes += other.probes
    return probes


def _unknown_facts(pack: Pack) -> Iterator[Finding]:
    for i, rule in enumerate(pack.rules):
        if not rule.when:
            continue
        facts = {
            **probe_facts(_probes_for(pack.rules, i, pack.defaults.probes)),
            **{name: False for name in INCIDENT_FACTS},
        }
        for k, text in enumerate(rule.when):
            path = parse_condition(text).path
            if known(path, facts):
                continue
            message = f"unknown fact {path} (no probe of this pack yields it)"
            # a probe's `error` (and prometheus' answered_by and backup, which share the
            # long `prometheus.` prefix with every query) is a poor guess for a fact name
            poor = (
                f".{ERROR_FACT}",
                *(f"prometheus.{n}" for n in (ANSWERED_BY, BACKUP, REACHABLE)),
            )
            named = sorted(f for f in facts if not f.endswith(poor))
            hint = _suggest(path, named)
            kind = would_yield(path)
            if not hint and kind == "prometheus":
                name = path.split(".", 1)[1]
                hint = f"; add a query named {name} to a prometheus probe of the pack"
            elif not hint and kind is not None:
                hint = f"; a {kind} probe yields it: add one to defaults.probes or to this rule"
            yield Finding(
                ("rules", i, "when", k), message + (hint or _suggest(path, sorted(facts)))
            )


# ---------------------------------------------------------------------------- shadowing


def _value_key(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return ("list", tuple(sorted((_value_key(v) for v in value), key=repr)))
    return json.dumps(value, sort_keys=True, default=str)


def _numeric(value: Any) -> float | None:
    """A condition's value as a finite number (``None``: a bool, text, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# Whether `fact <later op> a` implies `fact <earlier op> b`, by (later op, earlier op): an
# ordering holds only for a number (never a bool, never NaN, see `conditions._compare`).
_ORDER_IMPLIES: dict[tuple[str, str], Callable[[float, float], bool]] = {
    (">", ">"): lambda a, b: a >= b,
    (">", ">="): lambda a, b: a >= b,
    (">", "!="): lambda a, b: b <= a,
    (">=", ">"): lambda a, b: a > b,
    (">=", ">="): lambda a, b: a >= b,
    (">=", "!="): lambda a, b: b < a,
    ("<", "<"): lambda a, b: a <= b,
    ("<", "<="): lambda a, b: a <= b,
    ("<", "!="): lambda a, b: b >= a,
    ("<=", "<"): lambda a, b: a < b,
    ("<=", "<="): lambda a, b: a <= b,
    ("<=", "!="): lambda a, b: b > a,
}
_POINT_IMPLIES: dict[str, Callable[[float, float], bool]] = {
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _condition_implies(later: Condition, earlier: Condition) -> bool:
    """Whether ``later`` holding (on the same fact) means ``earlier`` holds."""
    if (later.op, _value_key(later.value)) == (earlier.op, _value_key(earlier.value)):
        return True
    a, b = _numeric(later.value), _numeric(earlier.value)
    if a is None or b is None:
        return False
    if later.op == "==":
        # `== 1` also holds for true and `== 0` for false, which no ordering takes
        test = _POINT_IMPLIES.get(earlier.op)
        return test is not None and a not in (0.0, 1.0) and test(a, b)
    order = _ORDER_IMPLIES.get((later.op, earlier.op))
    return order is not None and order(a, b)


@dataclass(frozen=True)
class _Glob:
    """A regular expression of plain text and ``.*`` only: ``None`` in ``parts`` is a
    ``.*``; ``dotall``: it may take a newline (``(?s)``)."""

    parts: tuple[str | None, ...]
    dotall: bool

    @property
    def only(self) -> str | None:
        """The one text it matches, when it has no ``.*``."""
        if None in self.parts:
            return None
        return "".join(p for p in self.parts if p is not None)

    def text(self) -> str:
        return "".join(p for p in self.parts if p is not None)


_ANY_RUN = [("ANY", None)]


def _glob(pattern: str) -> _Glob | None:
    """``pattern`` as a ``_Glob``, or ``None`` when it is anything more."""
    try:
        parsed = _sre.parse(pattern)
    except Exception:  # noqa: BLE001 (re.error and the parser's own surprises)
        return None
    flags = parsed.state.flags & ~_sre.SRE_FLAG_UNICODE
    if flags & ~_DOTALL:
        return None  # (?i) and the rest change what a character matches
    parts: list[str | None] = []

    def walk(items: Sequence[tuple[Any, Any]]) -> bool:
        for raw_op, av in items:
            op = str(raw_op)
            if op == "LITERAL":
                if parts and isinstance(parts[-1], str):
                    parts[-1] += chr(av)
                else:
                    parts.append(chr(av))
            elif op == "SUBPATTERN":
                _group, add, remove, pattern = av
                if add or remove or not walk(pattern):
                    return False
            elif op in ("MAX_REPEAT", "MIN_REPEAT"):  # not possessive: `a.*+` is not `a.*`
                low, high, pattern = av
                if (low, high) != (0, _sre.MAXREPEAT):
                    return False
                if [(str(o), a) for o, a in pattern] != _ANY_RUN:
                    return False
                if not parts or parts[-1] is not None:
                    parts.append(None)
            else:
                return False
        return True

    if not walk(list(parsed)):
        return None
    return _Glob(tuple(parts), bool(flags & _DOTALL))


def _holds(m: Matcher, value: str) -> bool:
    """Whether ``m`` holds on an alert where what it reads is ``value`` (the engine's own
    test, with its anchoring)."""
    if m.name == "__source__":
        return m.matches({}, {}, value)
    if m.name.startswith("annotations."):
        return m.matches({}, {m.name.removeprefix("annotations."): value}, "")
    return m.matches({m.name: value}, {}, "")


def _regex_hits(m: Matcher, value: str) -> bool:
    """Whether the regex of ``m`` (``=~`` or ``!~``) matches all of ``value``."""
    return _holds(m, value) != (m.op == "!~")


def _regex_covers(outer: Matcher, inner: Matcher) -> bool:
    """Whether the regex of ``outer`` matches every text the regex of ``inner`` matches:
    decided when ``inner`` matches one text, or when both are plain text and ``.*``.
    Then ``inner`` with each ``.*`` replaced by a character neither contains is a text
    ``inner`` matches; ``outer`` can match it only by a ``.*`` taking that character, and
    that ``.*`` would take any text ``inner``'s ``.*`` takes in its stead."""
    inside, around = _glob(inner.value), _glob(outer.value)
    if inside is None:
        return False
    only = inside.only
    if only is not None:
        return _regex_hits(outer, only)
    if around is None or around.only is not None or (inside.dotall and not around.dotall):
        return False
    used = inside.text() + around.text() + "\n"
    stand_in = next(c for c in map(chr, range(0x10FFFF)) if c not in used)
    witness = "".join(stand_in if p is None else p for p in inside.parts)
    return _regex_hits(outer, witness)


def _matcher_implies(later: Matcher, earlier: Matcher) -> bool:
    """Whether every value ``later`` takes (of the same label or annotation), ``earlier``
    takes too."""
    if (later.op, later.value) == (earlier.op, earlier.value):
        return True
    if later.op == "=":
        return _holds(earlier, later.value)
    glob = _glob(later.value) if later.op == "=~" else None
    if glob is not None and glob.only is not None:
        return _holds(earlier, glob.only)  # a regex that is plain text: one value
    if earlier.op == "!=":
        return not _holds(later, earlier.value)
    if later.op == earlier.op == "=~":
        return _regex_covers(earlier, later)
    if later.op == earlier.op == "!~":
        return _regex_covers(later, earlier)  # what earlier refuses, later refuses
    return False


@dataclass(frozen=True)
class _Needs:
    """What a rule requires of an alert, parsed."""

    matchers: tuple[Matcher, ...]
    conditions: tuple[Condition, ...]

    @classmethod
    def of(cls, rule: Rule) -> _Needs:
        return cls(
            tuple(parse_matcher(t) for t in rule.match),
            tuple(parse_condition(t) for t in rule.when),
        )

    def implied_by(self, later: _Needs) -> bool:
        """Whether every alert (and facts) ``later`` takes, these needs take too: each
        matcher and condition is implied by one of ``later``'s on the same name."""
        return all(
            any(m.name == n.name and _matcher_implies(n, m) for n in later.matchers)
            for m in self.matchers
        ) and all(
            any(c.path == d.path and _condition_implies(d, c) for d in later.conditions)
            for c in self.conditions
        )


def _shadowed(pack: Pack, lines: Mapping[Path_, int]) -> Iterator[Finding]:
    needs = [_Needs.of(rule) for rule in pack.rules]
    for j, later in enumerate(pack.rules):
        for i in range(j):
            earlier = pack.rules[i]
            if earlier.continue_ or not needs[i].implied_by(needs[j]):
                continue
            if any(c.path.startswith("incident.") for c in needs[i].conditions) and any(
                k.continue_ and k.classify is not None for k in pack.rules[i + 1 : j]
            ):
                continue  # a rule between them may change the incident's facts
            line = lines.get(("rules", i))
            where = f" (line {line})" if line else ""
            yield Finding(
                ("rules", j),
                f"never runs: rule {earlier.name!r}{where} comes first, matches every alert "
                f"rule {later.name!r} matches and ends the walk (it has no `continue: true`)",
            )
            break


# ---------------------------------------------------------------------------- templates


def template_strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every template string in ``value`` (a pack's raw data), with where it is."""
    if isinstance(value, str):
        if Templates.is_template(value):
            yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from template_strings(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from template_strings(v, (*path, i))


def _pack_templates(raw: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
    defaults = raw.get("defaults")
    if isinstance(defaults, Mapping):
        yield from template_strings(defaults.get("probes", []), ("defaults", "probes"))
    rules = raw.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, Mapping):
            continue
        classify = rule.get("classify")
        if isinstance(classify, Mapping) and isinstance(classify.get("title"), str):
            yield ("rules", i, "classify", "title"), classify["title"]
        for key in ("probes", "actions"):
            yield from template_strings(rule.get(key, []), ("rules", i, key))


def _template_context(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The names templates see and an example of each value: the engine's context (and,
    in a pack with a scope, the integration's name it found)."""
    context = AlertInput(labels={}, annotations={}).context()
    if isinstance(raw.get("scope"), Mapping):
        context["integration"] = ""
    return context


def _attributes(value: Any) -> list[str] | None:
    """The attributes a template may read of a context value (``None``: any). A mapping
    empty in the example context holds whatever the alert brings, like ``labels``."""
    if isinstance(value, Mapping):
        return sorted(str(k) for k in value) or None
    return sorted(a for a in dir(value) if not a.startswith("_"))


def _check_template(text: str, templates: Templates, context: Mapping[str, Any]) -> Iterator[str]:
    names = templates.names(text)
    if names is None:
        return  # the loader reports templates that do not compile
    for name in sorted(names.free - set(context)):
        yield (
            f"template {text!r}: unknown name {name} (templates see "
            f"{', '.join(sorted(context))}){_suggest(name, sorted(context))}"
        )
    for name, attr in names.attributes:
        if name not in context or name in OPEN_MAPPINGS:
            continue
        fields = _attributes(context[name])
        if fields is not None and attr not in fields:
            yield f"template {text!r}: {name} has no attribute {attr}{_suggest(attr, fields)}"


def _templates(raw: Mapping[str, Any]) -> Iterator[Finding]:
    templates = Templates()
    context = _template_context(raw)
    for path, text in _pack_templates(raw):
        for message in _check_template(text, templates, context):
            yield Finding(path, message)


# ---------------------------------------------------------------------------- regexes

_REPEATS = frozenset(
    str(op)
    for op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None))
    if op is not None
)


@dataclass(frozen=True)
class _At:
    """What is known of the position in the text, weakest first: ``started``, at least
    one character lies before it; ``end`` 1: after ``$`` (only a final newline may follow),
    2: after ``\\Z`` or that newline (nothing may follow)."""

    started: bool = False
    end: int = 0


def _merge(states: Sequence[_At]) -> _At:
    return _At(all(s.started for s in states), min(s.end for s in states))


def _may_be_newline(op: str, av: Any, flags: int) -> bool:
    if op == "LITERAL":
        return bool(av == _NEWLINE)
    if op == "NOT_LITERAL":
        return bool(av != _NEWLINE)
    if op == "ANY":
        return bool(flags & _DOTALL)
    return True  # a class: assume it may (the check stays sound)


def _empty_class(items: Sequence[tuple[Any, Any]]) -> bool:
    """A negated class holding a category and its complement, or every character."""
    ops = [(str(op), av) for op, av in items]
    if not ops or ops[0][0] != "NEGATE":
        return False
    categories = {str(av) for op, av in ops if op == "CATEGORY"}
    if any("_NOT_" in c and c.replace("_NOT_", "_") in categories for c in categories):
        return True
    return any(op == "RANGE" and av[0] == 0 and av[1] >= 0x10FFFF for op, av in ops)


def _consume(op: str, av: Any, at: _At, flags: int) -> tuple[str | None, _At]:
    if at.end == 2:
        return "it needs text after the end of the text (`\\Z`, or `$` and a final newline)", at
    if at.end == 1:
        if not _may_be_newline(op, av, flags):
            return "after `$` only a final newline may come, and it needs other text there", at
        return None, _At(True, 2)
    return None, _At(True, 0)


def _sequence(items: Sequence[tuple[Any, Any]], at: _At, flags: int) -> tuple[str | None, _At]:
    for op, av in items:
        reason, at = _item(str(op), av, at, flags)
        if reason:
            return reason, at
    return None, at


def _item(op: str, av: Any, at: _At, flags: int) -> tuple[str | None, _At]:
    if op in ("LITERAL", "NOT_LITERAL", "ANY"):
        return _consume(op, av, at, flags)
    if op == "IN":
        if _empty_class(av):
            return "a character class that matches no character", at
        return _consume(op, av, at, flags)
    if op == "AT":
        code = str(av)
        if code == "AT_BEGINNING" and not flags & _MULTILINE and at.started:
            return "`^` comes after text, and without `(?m)` it matches only at the start", at
        if code == "AT_BEGINNING_STRING" and at.started:
            return "`\\A` comes after text, but it matches only at the start", at
        if code == "AT_END" and not flags & _MULTILINE:
            return None, _At(at.started, max(at.end, 1))
        if code == "AT_END_STRING":
            return None, _At(at.started, 2)
        return None, at
    if op == "SUBPATTERN":
        _group, add, remove, pattern = av
        return _sequence(pattern, at, (flags | add) & ~remove)
    if op == "ATOMIC_GROUP":
        return _sequence(av, at, flags)
    if op == "BRANCH":
        outcomes = [_sequence(alt, at, flags) for alt in av[1]]
        possible = [state for reason, state in outcomes if reason is None]
        if not possible:
            return outcomes[0][0], at
        return None, _merge(possible)
    if op in _REPEATS:
        low, high, pattern = av
        if high == 0:
            return None, at
        reason, once = _sequence(pattern, at, flags)
        if reason:
            return (reason, at) if low >= 1 else (None, at)
        if low >= 2:
            reason, _ = _sequence(pattern, once, flags)
            if reason:
                return reason, at
        return None, (once if low >= 1 else _merge([at, once]))
    if op == "ASSERT":
        direction, pattern = av
        if direction == 1:  # a lookahead must match where it stands
            reason, _ = _sequence(pattern, at, flags)
            if reason:
                return f"the lookahead can never hold: {reason}", at
        return None, at
    if op == "ASSERT_NOT":
        _direction, pattern = av
        if not list(pattern):
            return "the empty negative lookaround `(?!)` never holds", at
        return None, at
    if op == "GROUPREF_EXISTS":
        _group, yes, no = av
        outcomes = [_sequence(yes, at, flags), _sequence(no or [], at, flags)]
        possible = [state for reason, state in outcomes if reason is None]
        return (None, _merge(possible)) if possible else (outcomes[0][0], at)
    return None, at  # back references and the rest: nothing is claimed


def _needs_newline(items: Sequence[tuple[Any, Any]]) -> bool:
    """Whether every match of ``items`` contains a newline."""
    for raw_op, av in items:
        op = str(raw_op)
        if op == "LITERAL" and av == _NEWLINE:
            return True
        if op == "IN" and [(str(o), a) for o, a in av] == [("LITERAL", _NEWLINE)]:
            return True
        if op == "SUBPATTERN" and _needs_newline(av[3]):
            return True
        if op == "ATOMIC_GROUP" and _needs_newline(av):
            return True
        if op == "BRANCH" and all(_needs_newline(alt) for alt in av[1]):
            return True
        if op in _REPEATS and av[0] >= 1 and _needs_newline(av[2]):
            return True
        if op == "ASSERT" and av[0] == 1 and _needs_newline(av[1]):
            return True
    return False


def never_matches(pattern: str, *, single_line: bool = False) -> str | None:
    """Why ``pattern`` can match no text (``single_line``: no text with a newline), or
    ``None`` when it may match (or it is not a valid expression: the loader says so)."""
    try:
        parsed = _sre.parse(pattern)
    except Exception:  # noqa: BLE001 (re.error and the parser's own surprises)
        return None
    reason, _ = _sequence(list(parsed), _At(), parsed.state.flags)
    if reason is None and single_line and _needs_newline(list(parsed)):
        reason = "it needs a newline, and the text it reads is a single line"
    return reason


def _regexes(pack: Pack) -> Iterator[Finding]:
    for i, rule in enumerate(pack.rules):
        for j, text in enumerate(rule.match):
            m = parse_matcher(text)
            if m.regex is None:
                continue
            reason = never_matches(m.value, single_line=m.on_label)
            if reason:
                then = "the matcher always holds" if m.op == "!~" else "the rule never matches"
                yield Finding(
                    ("rules", i, "match", j),
                    f"regular expression {m.value!r} can never match ({reason}): {then}",
                )
        spec = rule.classify.error_type if rule.classify is not None else None
        if isinstance(spec, ErrorTypeFrom):
            single_line = spec.source.startswith("label:")
            for j, case in enumerate(spec.cases):
                reason = never_matches(case.match, single_line=single_line)
                if reason:
                    yield Finding(
                        ("rules", i, "classify", "error_type", "cases", j, "match"),
                        f"regular expression {case.match!r} can never match ({reason}): "
                        f"this case is never chosen",
                    )
        yield from _log_patterns(rule.probes, ("rules", i, "probes"))
    yield from _log_patterns(pack.defaults.probes, ("defaults", "probes"))


def _log_patterns(probes: Sequence[ProbeSpec], base: Path_) -> Iterator[Finding]:
    for k, probe in enumerate(probes):
        if not isinstance(probe, PodLogsProbe) or Templates.is_template(probe.pattern):
            continue
        reason = never_matches(probe.pattern, single_line=True)  # lines, split
        if reason:
            yield Finding(
                (*base, k, "pattern"),
                f"regular expression {probe.pattern!r} can never match ({reason}): "
                "the probe never finds a line",
            )


# ------------------------------------------------------------------------------ URLs


def _unreachable_urls(pack: Pack) -> Iterator[Finding]:
    places: list[tuple[Path_, Sequence[ProbeSpec]]] = [
        (("defaults", "probes"), pack.defaults.probes)
    ]
    places += [(("rules", i, "probes"), rule.probes) for i, rule in enumerate(pack.rules)]
    for base, probes in places:
        for k, probe in enumerate(probes):
            if not isinstance(probe, HealthProbe | VendorStatusProbe):
                continue
            if Templates.is_template(probe.url):
                continue  # checked when planned, with the alert's values
            problem = url_problem(probe.url, probe.allow_hosts)
            if problem:
                yield Finding((*base, k, "url"), f"{problem}: the probe is never requested")
