"""Loading rule packs: every problem names the file, the right line, the rule, and says what.

Each file under tests/fixtures/rules/bad/ holds one mistake (or, for the last tests, a few).
What the loader must say about it is kept here, next to the case, not in the YAML.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from responder.rules.loader import MAX_PACK_BYTES, Problem, RuleLoadError, load_pack, load_rules

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
BAD = FIXTURES / "bad"
GOOD = FIXTURES / "good"
SHIPPED = Path(__file__).resolve().parents[1] / "rules"

UNCHECKED = object()  # the rule is not asserted for this case


@dataclass(frozen=True)
class Expect:
    line: int
    rule: str | object | None
    # every phrase must be in the problem's message: a str is a substring, a Pattern is searched
    phrases: tuple[str | re.Pattern[str], ...]


def field(name: str) -> re.Pattern[str]:
    """The name of a field as a word of its own (``env`` but not the ``env`` of ``set_env``)."""
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")


CASES: dict[str, Expect] = {
    "unknown_top_level_key.yaml": Expect(3, None, ("owner", "unknown key")),
    "unknown_rule_key.yaml": Expect(6, "typo-in-rule", ("matches", "unknown key")),
    # the second rule has no name: it is called by its position, and the message says which
    # field is missing
    "missing_rule_name.yaml": Expect(7, "#2", ("Field required", field("name"))),
    "bad_pack_name.yaml": Expect(2, None, ("name", "should match pattern")),
    "no_rules.yaml": Expect(4, None, ("rules", "at least 1 item")),
    # the line of the second `name: same`, not the top of the file
    "duplicate_rule_name.yaml": Expect(11, "same", ("'same'", "used twice")),
    "duplicate_yaml_key.yaml": Expect(7, None, ("'version'", "appears twice")),
    "duplicate_yaml_key_in_rule.yaml": Expect(7, UNCHECKED, ("'match'", "appears twice")),
    "invalid_yaml.yaml": Expect(6, None, ("not valid YAML", "mapping values are not allowed")),
    "matcher_syntax.yaml": Expect(
        7, "broken-matcher", ("match[1]", "'alertname: CheckoutDown'", "is not of the form")
    ),
    "matcher_bad_regex.yaml": Expect(
        5, "broken-regex", ("match[1]", "Checkout(Down", "invalid regular expression")
    ),
    "condition_syntax.yaml": Expect(
        8, "broken-condition", ("when[1]", ">> 0.5", "is not of the form")
    ),
    "condition_gt_not_number.yaml": Expect(6, "gt-word", ("when[0]", "`>` needs a number")),
    "condition_in_not_list.yaml": Expect(6, "in-scalar", ("when[0]", "`in` needs a list")),
    "bad_severity.yaml": Expect(8, "p5", ("classify.severity", "'P1', 'P2', 'P3' or 'P4'")),
    "bad_error_type.yaml": Expect(8, "timeout-type", ("classify.error_type", "'rate_limit'")),
    "error_type_bad_source.yaml": Expect(
        9, "header-source", ("classify.error_type.from", "should match pattern")
    ),
    "error_type_case_bad_regex.yaml": Expect(
        12,
        "case-regex",
        ("classify.error_type.cases[1].match", "invalid regular expression '5[0-9'"),
    ),
    "title_template.yaml": Expect(8, "bad-title", ("classify.title", "does not compile")),
    "action_unknown_type.yaml": Expect(10, "nuke", ("actions[1]", "'delete_namespace'")),
    "set_env_without_env.yaml": Expect(7, "no-env", ("actions[0]", "Field required", field("env"))),
    "scale_out_of_bounds.yaml": Expect(
        7, "too-many", ("actions[0]", "replicas 20 is outside [1, 8]")
    ),
    "probe_unknown_type.yaml": Expect(7, "ping", ("probes[0]", "'ping'")),
    "prometheus_without_queries.yaml": Expect(
        7, "no-queries", ("probes[0]", "Field required", field("queries"))
    ),
    "no_match_no_when.yaml": Expect(8, "catch-all", ("needs `match` or `when`",)),
    "rule_does_nothing.yaml": Expect(
        4, "idle", ("at least one of classify, probes, actions, notify",)
    ),
    "unknown_notify_channel.yaml": Expect(
        6, "mail", ("notify", "unknown channel 'email:ops@example.com'")
    ),
    "classify_empty.yaml": Expect(
        6, "empty-classify", ("classify", "needs severity, error_type or title")
    ),
    "action_param_template.yaml": Expect(
        8, "restart", ("actions[0].namespace", "{{ labels.namespace | }}", "does not compile")
    ),
    "default_probe_template.yaml": Expect(8, None, ("defaults.probes[1].url", "does not compile")),
    "not_a_mapping.yaml": Expect(1, None, ("a rule pack is a mapping",)),
    "match_not_a_list.yaml": Expect(5, "scalar-match", ("match", "valid tuple")),
    "only_rule_invalid.yaml": Expect(7, "lonely", ("unknown channel 'carrier-pigeon'",)),
    # nine levels of nine aliases: 380 bytes that expand to 9**9 nodes; refused at the
    # first alias, before anything is expanded
    "yaml_alias.yaml": Expect(4, None, ("YAML aliases", "not allowed")),
    "yaml_merge_key.yaml": Expect(8, None, ("YAML aliases", "not allowed")),
}

# Files with several problems, checked by tests of their own below.
MULTI = {"three_schema_problems.yaml", "three_problems_mixed.yaml"}


def _has(message: str, phrase: str | re.Pattern[str]) -> bool:
    if isinstance(phrase, re.Pattern):
        return phrase.search(message) is not None
    return phrase in message


def _load_error(path: Path) -> RuleLoadError:
    with pytest.raises(RuleLoadError) as info:
        load_pack(path)
    return info.value


def test_every_bad_fixture_has_an_expectation() -> None:
    on_disk = {p.name for p in BAD.glob("*.yaml")}
    assert on_disk == set(CASES) | MULTI
    assert len(CASES) >= 18


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_pack_is_refused_with_file_line_rule_and_reason(name: str) -> None:
    expect = CASES[name]
    path = BAD / name
    error = _load_error(path)
    problems = error.problems
    assert problems, "a RuleLoadError without problems"
    found = [p for p in problems if all(_has(p.message, ph) for ph in expect.phrases)]
    assert found, f"no problem says {expect.phrases}; got:\n{error}"
    problem = found[0]
    assert problem.file == str(path)
    assert problem.line == expect.line, str(problem)
    if expect.rule is not UNCHECKED:
        assert problem.rule == expect.rule, str(problem)
    # the exception's text is one line per problem: file:line: [rule 'x':] message
    text = str(error)
    assert str(problem) in text.splitlines()
    prefix = f"{path}:{expect.line}:"
    if isinstance(expect.rule, str):
        prefix += f" rule {expect.rule!r}:"
    assert str(problem).startswith(prefix), str(problem)
    assert path.name in text


def test_display_name_replaces_the_path_in_every_problem() -> None:
    error = _load_error(BAD / "bad_severity.yaml")
    with pytest.raises(RuleLoadError) as info:
        load_pack(BAD / "bad_severity.yaml", display="rules/mine.yaml")
    assert [p.file for p in info.value.problems] == ["rules/mine.yaml"] * len(error.problems)
    assert str(info.value).startswith("rules/mine.yaml:8: rule 'p5': classify.severity: ")


def test_a_file_that_cannot_be_read_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    error = _load_error(missing)
    [problem] = error.problems
    assert problem == Problem(str(missing), None, None, problem.message)
    assert problem.message.startswith("cannot read: ")
    assert str(problem).startswith(f"{missing}: cannot read")


def test_a_pack_larger_than_the_cap_is_refused_unparsed(tmp_path: Path) -> None:
    """A valid pack padded past the cap with a comment: refused for its size alone."""
    path = tmp_path / "huge.yaml"
    shipped = (SHIPPED / "posthog.yaml").read_text()
    path.write_text(shipped + "#" + "x" * (MAX_PACK_BYTES - len(shipped.encode())) + "\n")
    [problem] = _load_error(path).problems
    assert problem.message == f"larger than {MAX_PACK_BYTES} bytes: not a rule pack"
    path.write_text(shipped + "#" + "x" * (MAX_PACK_BYTES - len(shipped.encode()) - 3) + "\n")
    assert load_pack(path).name == "posthog"  # at the cap: loads


def test_a_pack_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    [problem] = _load_error(path).problems
    assert problem.message.startswith("not UTF-8 text")


def test_all_schema_problems_of_a_file_are_reported_at_once() -> None:
    path = BAD / "three_schema_problems.yaml"
    error = _load_error(path)
    lines = str(error).splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}:") for line in lines)
    got = {(p.line, p.rule) for p in error.problems}
    assert got == {(3, None), (7, "one"), (11, "two")}
    by_line = {p.line: p.message for p in error.problems}
    assert "unknown key" in by_line[3]
    assert "classify.severity" in by_line[7]
    assert "unknown channel 'fax'" in by_line[11]


def test_all_problems_of_a_file_are_reported_at_once_across_checks() -> None:
    """A schema problem in one rule must not hide a bad matcher or condition in another:
    the loader promises every problem of a file at once."""
    path = BAD / "three_problems_mixed.yaml"
    error = _load_error(path)
    got = sorted((p.line, p.rule) for p in error.problems)
    assert got == [(6, "one"), (9, "two"), (14, "three")], str(error)


def test_a_pack_whose_only_rule_is_bad_reports_only_that_rule() -> None:
    """One mistake, one problem: no extra 'rules: ... at least 1 item' for a pack that has
    a rule (the rule is there, it is just wrong)."""
    error = _load_error(BAD / "only_rule_invalid.yaml")
    assert len(error.problems) == 1, str(error)
    assert error.problems[0].rule == "lonely"


def test_good_fixtures_and_shipped_rules_load() -> None:
    for path in [*GOOD.glob("*.yaml"), *SHIPPED.glob("*.yaml")]:
        pack = load_pack(path)
        assert pack.source == str(path)
        assert pack.rules
    shop = load_pack(GOOD / "shop.yaml")
    assert shop.name == "shop"
    assert shop.spec.version == "1.0"
    assert [r.name for r in shop.rules] == [
        "escalate",
        "checkout-slow",
        "checkout-errors",
        "checkout-latency-type",
        "scale-out",
        "checkout-fallback",
        "never-reached",
    ]


def test_numeric_version_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        "name: v\nversion: 2\nrules:\n  - name: r\n    match: ['a=\"b\"']\n    notify: [console]\n"
    )
    assert load_pack(path).spec.version == "2"


# ------------------------------------------------------------------ several packs at once


def _pack_text(pack: str, *rules: str) -> str:
    body = "".join(
        f"  - name: {r}\n    match: ['alertname=\"{r}\"']\n    notify: [console]\n" for r in rules
    )
    return f"name: {pack}\nversion: '1'\nrules:\n{body}"


def test_two_packs_with_the_same_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_pack_text("twin", "one"))
    (tmp_path / "b.yaml").write_text(_pack_text("twin", "two"))
    with pytest.raises(RuleLoadError) as info:
        load_rules([tmp_path])
    [problem] = info.value.problems
    assert problem.file == str(tmp_path / "b.yaml")
    assert problem.message == f"pack name 'twin' is also used by {tmp_path / 'a.yaml'}"


def test_two_packs_sharing_a_rule_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_pack_text("first", "shared", "own-a"))
    (tmp_path / "b.yaml").write_text(_pack_text("second", "own-b", "shared"))
    with pytest.raises(RuleLoadError) as info:
        load_rules([tmp_path])
    [problem] = info.value.problems
    assert problem.file == str(tmp_path / "b.yaml")
    assert problem.rule == "shared"
    assert problem.message == f"rule name also used in {tmp_path / 'a.yaml'}"
    assert str(problem) == (
        f"{tmp_path / 'b.yaml'}: rule 'shared': rule name also used in {tmp_path / 'a.yaml'}"
    )


def test_one_bad_pack_refuses_the_whole_set(tmp_path: Path) -> None:
    shutil.copy(GOOD / "shop.yaml", tmp_path / "a-shop.yaml")
    shutil.copy(BAD / "bad_severity.yaml", tmp_path / "b-bad.yaml")
    with pytest.raises(RuleLoadError) as info:
        load_rules([tmp_path])
    assert {p.file for p in info.value.problems} == {str(tmp_path / "b-bad.yaml")}


def test_every_file_of_a_directory_is_reported() -> None:
    with pytest.raises(RuleLoadError) as info:
        load_rules([BAD])
    reported = {Path(p.file).name for p in info.value.problems}
    assert reported == {p.name for p in BAD.glob("*.yaml")}


def test_directories_load_in_name_order_and_ignore_other_files(tmp_path: Path) -> None:
    shutil.copy(GOOD / "shop.yaml", tmp_path / "b.yaml")
    shutil.copy(GOOD / "billing.yaml", tmp_path / "a.yml")
    (tmp_path / "notes.txt").write_text("not a pack: {{{")
    rules = load_rules([tmp_path])
    assert [p.name for p in rules.packs] == ["billing", "shop"]
