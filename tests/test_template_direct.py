"""Templates rendered without jinja2 (``{{ name }}``/``{{ name.key }}`` among fixed text,
``render.templates.direct_parts``) print what jinja2 prints and fail as it fails; probes
and actions compiled once per rule set (``rules.engine._Planner``) are planned per alert
as before: a refusal is told on every alert, and nothing one alert fills leaks into the
next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from responder.render.interpolation import Piece, render_pieces
from responder.render.templates import (
    MAX_OUTPUT_CHARS,
    Template,
    TemplateProblem,
    Templates,
    direct_parts,
)
from responder.rules.engine import AlertInput
from responder.rules.loader import load_rules

# jinja2 alone, configured as ``Templates`` is for an inline template
_JINJA = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)

CONTEXT: dict[str, Any] = {
    "integration": "posthog-integration",
    "labels": {"namespace": "prod", "items": "x", "empty": "", "odd": "a/b?c {d}\n"},
    "count": 3,
    "nothing": None,
    "source": "alertmanager",
}

# templates of fixed text and context values: rendered without jinja2
DIRECT = [
    "http://{{ integration }}.{{ labels.namespace }}.svc.cluster.local/health",
    "{{ labels.namespace }}",
    "app={{ integration }}",
    "{{ integration }}{{ labels.namespace }}",
    "a{# a comment #}b {{ labels.empty }}|{{ labels.odd }}",
    "  {{- integration -}}  \n",
    "{{ source }}\n",
    "{% raw %}{{ not printed }}{% endraw %}",
]
# the same forms when a value is not a str or not there: jinja2 prints it or says why
FALLBACK = [
    "{{ count }} alerts",
    "{{ nothing }}",
    "{{ labels.missing }}",
    "{{ missing }}",
    "{{ integration.upper }}",
]
# anything more than values and text: jinja2 from the start
JINJA_ONLY = [
    "{{ labels.items }}",  # a dict's method, not its item: the sandbox's way
    "{{ labels['namespace'] }}",
    "{{ labels.namespace | upper }}",
    "{{ 'x' }}",
    "{% if count %}{{ integration }}{% endif %}",
]


def _outcome(render: Any) -> str:
    try:
        return "ok: " + render()
    except TemplateProblem as exc:
        return f"problem: {exc}"


@pytest.mark.parametrize("source", DIRECT + FALLBACK + JINJA_ONLY)
def test_an_inline_template_renders_as_jinja2_renders_it(source: str) -> None:
    ours = Templates().compile(source)
    reference = Template(source, _JINJA.from_string(source))
    assert _outcome(lambda: ours.render(CONTEXT)) == _outcome(lambda: reference.render(CONTEXT))
    assert _outcome(lambda: ours.render(CONTEXT, limit=5)) == _outcome(
        lambda: reference.render(CONTEXT, limit=5)
    )


def test_which_templates_are_rendered_without_jinja2() -> None:
    env = SandboxedEnvironment()
    assert all(direct_parts(env, s) is not None for s in DIRECT + FALLBACK)
    assert all(direct_parts(env, s) is None for s in JINJA_ONLY)
    assert direct_parts(env, "a{# c #}b{{ x }}c{{ y.z }}") == ("ab", ("x", None), "c", ("y", "z"))


def _by_jinja(source: str) -> str:
    # the same output, in a form only jinja2 renders (a block around it)
    return "{% if true %}" + source + "{% endif %}"


@pytest.mark.parametrize("source", [s for s in DIRECT + FALLBACK if not s.endswith("\n")])
def test_pieces_are_what_jinja2_marks(source: str) -> None:
    def pieces(text: str) -> str:
        try:
            return repr(render_pieces(text, CONTEXT))
        except TemplateProblem as exc:
            return "problem: " + str(exc).replace(repr(text), "T")

    assert pieces(source) == pieces(_by_jinja(source))


def test_values_holding_a_marker_or_too_long_are_refused_alike() -> None:
    for labels in (
        {"namespace": "a\x02b"},
        {"namespace": "a\x03b"},
        {"namespace": "x" * (MAX_OUTPUT_CHARS * 2)},
    ):
        ctx = {**CONTEXT, "labels": labels}
        source = "ns={{ labels.namespace }}"
        with pytest.raises(TemplateProblem) as direct:
            render_pieces(source, ctx)
        with pytest.raises(TemplateProblem) as jinja:
            render_pieces(_by_jinja(source), ctx)
        assert str(direct.value).replace(repr(source), "T") == str(jinja.value).replace(
            repr(_by_jinja(source)), "T"
        )
    assert render_pieces("{{ labels.empty }}{{ labels.empty }}", CONTEXT) == [
        Piece("", interpolated=True),
        Piece("", interpolated=True),
    ]


def _pack(tmp: Path, probes: str) -> Path:
    path = tmp / "pack.yaml"
    path.write_text(
        "name: planned\nversion: '1'\ndefaults:\n  probes:\n"
        + probes
        + "rules:\n  - name: r\n    match: ['alertname=\"X\"']\n    classify: {severity: P2}\n"
    )
    return path


def test_a_probe_without_templates_is_planned_on_every_alert(tmp_path: Path) -> None:
    # (one whose URL is out of its allow_hosts does not load: the loader says so)
    rules = load_rules(
        [_pack(tmp_path, "    - {type: vendor_status, url: 'https://status.example.com'}\n")]
    )
    [pack] = rules.packs
    [spec] = pack.spec.defaults.probes
    for i in range(3):
        evaluation = rules.evaluate(AlertInput(labels={"alertname": "X", "i": str(i)}))
        assert [p.spec for p in evaluation.decision.probes] == [spec]
        assert evaluation.decision.probes[0].spec.allow_hosts == ("status.example.com",)
        assert evaluation.problems == []


def test_each_alert_fills_its_own_values_where_they_land(tmp_path: Path) -> None:
    rules = load_rules(
        [
            _pack(
                tmp_path,
                "    - type: health\n"
                "      url: 'http://{{ labels.h }}.example.com:{{ labels.p }}/s/{{ labels.x }}'\n"
                "      allow_hosts: ['*.example.com:8080']\n"
                "    - {type: health, url: '{{ labels.s }}://h.example.com/',"
                " allow_hosts: [h.example.com]}\n",
            )
        ]
    )

    def urls(**labels: str) -> tuple[list[str], str]:
        decision = rules.evaluate(AlertInput(labels={"alertname": "X", **labels})).decision
        return [p.spec.url for p in decision.probes], decision.reasons.get("refused", "")

    fine = {"h": "api", "p": "8080", "x": "a/b?c", "s": "http"}
    assert urls(**fine)[0] == ["http://api.example.com:8080/s/a%2Fb%3Fc"]
    refused = urls(**{**fine, "h": "a.b", "p": "80x"})
    assert refused[0] == []
    assert "in the host, 'a.b' is not a DNS label" in refused[1]
    assert "value 'http' would make the URL's scheme or host: refused" in refused[1]
    port = urls(**{**fine, "p": "80x"})[1]
    assert "value '80x' in the port is not a number" in port
    assert urls(**{**fine, "x": "other"})[0] == ["http://api.example.com:8080/s/other"]
