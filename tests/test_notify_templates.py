"""Message templates: the shipped defaults, overrides from ``templates_dir``, the start-up
check that refuses a broken override, the sandbox, ``responder render`` and the console
sink of the embedded defaults."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from responder.adapters.console import ConsoleSink
from responder.app import SHIPPED_TEMPLATES, build_renderer, create_app
from responder.cli import cli
from responder.domain.notification import Outbound
from responder.notify.planners import (
    PAGERDUTY_NOTE,
    SLACK_EVENT,
    SLACK_ROOT,
    STATUSPAGE_BODY,
    TEMPLATE_NAMES,
)
from responder.render.samples import sample_events, sample_incidents
from responder.render.templates import MAX_OUTPUT_CHARS, TemplateProblem, Templates
from responder.rules.loader import load_rules
from responder.settings import ConfigError, Settings, default_rules_paths
from tests.support.procs import env_without_responder, free_port
from tests.support.service import Service, example, running_service
from tests.support.waiting import eventually

RULES = load_rules(default_rules_paths())
NOW = datetime(2026, 1, 1, 3, 10, tzinfo=UTC)
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"


def override(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(source)
    return folder


# --- overrides ------------------------------------------------------------------------------


def test_every_shipped_template_exists_and_renders() -> None:
    assert set(TEMPLATE_NAMES) <= {p.name for p in SHIPPED_TEMPLATES.glob("*.j2")}
    renderer = build_renderer(Settings(), lambda: RULES)
    assert renderer.internal(SLACK_ROOT, sample_incidents()[0], NOW).startswith(
        "🟠 *P2 INCIDENT: PostHog rate-limits posthog-integration (HTTP 429)*"
    )


def test_an_override_replaces_one_template_and_the_others_stay_shipped(tmp_path: Path) -> None:
    folder = override(
        tmp_path, SLACK_ROOT, "OURS {{ severity }} {{ title }} <!subteam^S123|oncall>\n"
    )
    shipped = build_renderer(Settings(), lambda: RULES)
    ours = build_renderer(Settings(templates_dir=folder), lambda: RULES)
    incident = sample_incidents()[1].model_copy(update={"title": "t <!channel> & co"})
    text = ours.internal(SLACK_ROOT, incident, NOW)
    # the override's own markup (a group mention) stays; the data it prints is escaped
    assert text == "OURS P2 t &lt;!channel&gt; &amp; co <!subteam^S123|oncall>"
    assert shipped.internal(SLACK_ROOT, incident, NOW) != text
    event = sample_events()[3]
    assert ours.internal(SLACK_EVENT, incident, NOW, event=event) == shipped.internal(
        SLACK_EVENT, incident, NOW, event=event
    )
    assert ours.public(STATUSPAGE_BODY, incident, NOW) == shipped.public(
        STATUSPAGE_BODY, incident, NOW
    )
    assert ours.public(STATUSPAGE_BODY, incident, NOW).startswith(
        "We're experiencing issues with our PostHog integration."
    )


@pytest.mark.parametrize(
    ("name", "source", "reason"),
    [
        (SLACK_ROOT, "{{ title ", "slack_root.mrkdwn.j2 line 1"),
        (SLACK_ROOT, "{% if status %}open", "slack_root.mrkdwn.j2"),
        (SLACK_ROOT, "{{ titel }}", "'titel' is undefined"),
        (PAGERDUTY_NOTE, "{{ note }} {{ event.data.nope }}", "pagerduty_note.txt.j2"),
        # the public context has no labels: an external template cannot print one
        (STATUSPAGE_BODY, "{{ service }} {{ incident.labels }}", "'incident' is undefined"),
        (STATUSPAGE_BODY, "{{ labels.instance }}", "statuspage_body.txt.j2"),
    ],
)
def test_a_broken_override_stops_the_app_at_start_up(
    tmp_path: Path, name: str, source: str, reason: str
) -> None:
    settings = Settings(templates_dir=override(tmp_path, name, source), triage=False)
    with pytest.raises(ConfigError, match="message templates do not render") as caught:
        create_app(settings)
    message = str(caught.value)
    assert reason in message
    assert name in message


def test_the_check_reports_every_broken_template_at_once(tmp_path: Path) -> None:
    folder = override(tmp_path, SLACK_ROOT, "{{ nope1 }}")
    override(tmp_path, STATUSPAGE_BODY, "{{ nope2 }}")
    with pytest.raises(ConfigError) as caught:
        build_renderer(Settings(templates_dir=folder), lambda: RULES)
    assert "nope1" in str(caught.value)
    assert "nope2" in str(caught.value)


# --- the sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ title.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_the_sandbox_refuses_unsafe_attribute_access(source: str) -> None:
    context = {"title": "t"}
    with pytest.raises(TemplateProblem, match="is unsafe"):
        Templates().compile(source).render(context)


def test_an_unsafe_override_does_not_start(tmp_path: Path) -> None:
    folder = override(tmp_path, SLACK_ROOT, "{{ title.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError, match=r"slack_root\.mrkdwn\.j2.*unsafe"):
        build_renderer(Settings(templates_dir=folder), lambda: RULES)


def test_output_is_capped() -> None:
    out = Templates().compile("{% for i in range(100000) %}x{% endfor %}").render({})
    assert len(out) == MAX_OUTPUT_CHARS


def test_only_mrkdwn_templates_escape_what_they_print(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.mrkdwn.j2").write_text("{{ v }}")
    (folder / "a.txt.j2").write_text("{{ v }}")
    templates = Templates([folder])
    value = {"v": "<!channel> & <https://x|y>"}
    assert templates.get("a.mrkdwn.j2").render(value) == (
        "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
    )
    assert templates.get("a.txt.j2").render(value) == "<!channel> & <https://x|y>"


# --- responder render ---------------------------------------------------------------------


async def one_incident(svc: Service) -> str:
    resp = await svc.post_alertmanager(example(LIMITED))
    assert resp.status == 200, await resp.text()
    await svc.idle()
    [inc] = await svc.incidents()
    return str(inc["id"])


async def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    """``responder ARGS`` in-process, in a thread: the command runs its own event loop."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env or {})


async def test_render_previews_templates_on_an_incident_of_the_service(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with running_service(make_settings()) as svc:
        incident_id = await one_incident(svc)
        url = svc.base_url.rstrip("/")
        root = await invoke("render", "slack_root", incident_id, "--url", url)
        assert root.exit_code == 0, root.output
        assert root.stdout.startswith("🟠 *P2 INCIDENT: ")
        assert "*Status:* INVESTIGATING" in root.stdout
        public = await invoke("render", "statuspage_body.txt.j2", incident_id, "--url", url)
        assert public.exit_code == 0, public.output
        assert "our PostHog integration" in public.stdout
        assert "posthog-integration" not in public.stdout  # a label value: never public
        # the local override is what is previewed
        folder = override(tmp_path, SLACK_ROOT, "PREVIEW {{ severity }} {{ incident.id }}")
        mine = await invoke(
            "render",
            "slack_root",
            incident_id,
            "--url",
            url,
            env={"RESPONDER_TEMPLATES_DIR": str(folder)},
        )
        assert mine.exit_code == 0, mine.output
        assert mine.stdout.strip() == f"PREVIEW P2 {incident_id}"


async def test_render_with_a_broken_override_or_name_exits_2(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = override(tmp_path, SLACK_ROOT, "{{ titel }}")
    async with running_service(make_settings()) as svc:
        incident_id = await one_incident(svc)
        url = svc.base_url.rstrip("/")
        broken = await invoke(
            "render",
            "slack_event",
            incident_id,
            "--url",
            url,
            env={"RESPONDER_TEMPLATES_DIR": str(folder)},
        )
        assert broken.exit_code == 2
        assert broken.stderr.startswith("error: message templates do not render: ")
        assert "slack_root.mrkdwn.j2" in broken.stderr
        assert "'titel' is undefined" in broken.stderr
        assert "Traceback" not in broken.output
        unknown = await invoke("render", "slack_rot", incident_id, "--url", url)
        assert unknown.exit_code == 2
        assert unknown.stderr.startswith("error: no template 'slack_rot': use one of slack_root")


def test_serve_with_a_broken_override_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    folder = override(tmp_path, STATUSPAGE_BODY, "{% for %}")
    result = subprocess.run(
        [sys.executable, "-m", "responder", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env_without_responder(), "RESPONDER_TEMPLATES_DIR": str(folder)},
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: message templates do not render: template statuspage_body")
    assert last.endswith("; nothing started")
    assert "responder starting" not in result.stderr


# --- the console of the embedded defaults ---------------------------------------------------


async def test_the_console_shows_the_root_message_when_slack_is_not_configured(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    async def printed(marker: str) -> bool:
        seen.append(capsys.readouterr().out)
        return marker in "".join(seen)

    async with running_service(make_settings(), notify=True) as svc:
        assert svc.runtime.deliveries.sinks == ["console"]
        incident_id = await one_incident(svc)
        await eventually(lambda: printed("*Impact:*"), what="root message on the console")
        await eventually(lambda: printed("incident.classified"), what="timeline lines")
    out = "".join(seen)
    assert f"── [{incident_id}] new incident ──" in out
    assert "   🟠 *P2 INCIDENT: " in out
    assert "*Status:* INVESTIGATING" in out
    assert f"[{incident_id}] " in out
    assert out.count("new incident") == 1


async def test_the_console_flushes_once_for_the_lines_of_a_turn_of_the_loop() -> None:
    """A batch of signals prints a line per event: one flush (one write) for them all,
    made before the loop goes on to anything else."""

    class Counting(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    stream = Counting()
    sink = ConsoleSink(stream)
    for n in range(3):
        line = Outbound(sink="console", step=f"s{n}", op="reply", text=f"line {n} &amp; more")
        await sink.send(line, {})
    assert stream.flushes == 0
    await asyncio.sleep(0)
    assert stream.flushes == 1
    assert stream.getvalue() == "[] line 0 & more\n[] line 1 & more\n[] line 2 & more\n"
    await sink.send(Outbound(sink="console", step="s3", op="reply", text="later"), {})
    await asyncio.sleep(0)
    assert stream.flushes == 2


def test_public_text_of_a_pack_without_a_public_name_reads_naturally() -> None:
    """The default public name is "our service": the external template must not say
    "our our service", and the title starts with a capital."""
    from responder.render.templates import Templates

    shipped = Templates([Path(__file__).resolve().parents[1] / "responder/render/defaults"])
    context = {"impact": "delays", "updated_at": "now", "started_at": "then"}
    for service, phrase in (("our service", "our service"), ("PostHog API", "our PostHog API")):
        title = shipped.get("statuspage_name.txt.j2").render({"service": service})
        assert title == f"{service[0].upper()}{service[1:]} issue"
        for status in ("investigating", "resolved"):
            body = shipped.get("statuspage_body.txt.j2").render(
                {**context, "service": service, "status": status}
            )
            assert f"with {phrase}" in body
            assert "our our" not in body


def test_the_console_flushes_on_a_new_loop_when_the_last_one_closed_before_flushing() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    flushed: list[str] = []
    stream.flush = lambda: flushed.append(stream.getvalue())  # type: ignore[method-assign]
    first = asyncio.new_event_loop()
    sent = first.create_task(sink.send(Outbound(sink="console", step="a", op="reply"), {}))
    first.call_soon(first.stop)  # the loop stops in the turn the line is written
    first.run_forever()
    first.close()  # the flush it scheduled never ran
    assert sent.done()
    assert flushed == []

    async def later() -> None:
        await sink.send(Outbound(sink="console", step="b", op="reply", text="b"), {})
        await asyncio.sleep(0)

    asyncio.run(later())
    assert flushed == ["[] \n[] b\n"]


def test_the_pagerduty_summary_note_prints_fact_values_not_python_dicts() -> None:
    """The summary note's facts: each namespace as ``name=value`` pairs, every status code
    of ``errors_by_status_code`` with its rate; no ``{'...': ...}`` reaches the on-call."""
    renderer = build_renderer(Settings(), lambda: RULES)
    incident = sample_incidents()[0].model_copy(
        update={
            "facts": {
                "health": {"status": "down", "status_code": 503, "ok": False},
                "prometheus": {"error_ratio": 0.3512, "errors_by_status_code": {"500": 12.2}},
            }
        }
    )
    note = renderer.internal(PAGERDUTY_NOTE, incident, NOW, note="summary")
    assert "\n- health: status=down, status_code=503, ok=no\n" in note, note
    assert "\n- prometheus: error_ratio=0.351, errors_by_status_code=(500: 12.2)\n" in note, note
    assert "{" not in note, note
    assert "'" not in note, note


def test_the_root_message_counts_alerts_in_the_right_number() -> None:
    renderer = build_renderer(Settings(), lambda: RULES)
    incident = sample_incidents()[0]
    one = incident.model_copy(update={"alerts_firing": 1, "alerts_total": 1})
    three = incident.model_copy(update={"alerts_firing": 2, "alerts_total": 3})
    assert "(1 of 1 alert firing)" in renderer.internal(SLACK_ROOT, one, NOW)
    assert "(2 of 3 alerts firing)" in renderer.internal(SLACK_ROOT, three, NOW)
