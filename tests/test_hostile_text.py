"""Hostile text: whoever can push an alert writes its labels and annotations, and none of
it may forge a line of ours, drive a terminal, or carry a configured secret out of the
service (Slack, PagerDuty, the status page, the console, the HTTP API); credentials of
well-known shapes are blanked out of logs and evidence."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from responder import logs
from responder.adapters.console import ConsoleSink
from responder.app import Overrides, build_renderer
from responder.domain.notification import Outbound
from responder.notify.outbound_text import OutboundText
from responder.notify.planners import PAGERDUTY_NOTE, PAGERDUTY_SUMMARY, SLACK_EVENT, SLACK_ROOT
from responder.redaction import REDACTED, Redactor
from responder.render.inert import clean, one_line, quote_lines
from responder.render.samples import sample_events, sample_incidents
from responder.render.templates import Templates
from responder.rules.loader import load_rules
from responder.settings import Settings, default_rules_paths
from tests.support.fake_notify import FakePagerDuty, FakeSlack
from tests.support.service import example, running_service
from tests.support.waiting import eventually

RULES = load_rules(default_rules_paths())
NOW = datetime(2026, 1, 1, 3, 10, tzinfo=UTC)
CHANNEL = "#posthog-incidents"
LIMITED = "alertmanager/posthog-rate-limited-429-firing.json"
UNREACHABLE = "alertmanager/posthog-api-unreachable-firing.json"  # P1, pages
ADMIN = "adm1n-t0ken-quoted-by-an-alert"
# A summary that would put a second status line under ours, retitle a terminal, clear
# its screen, reverse the text after it and quote the admin token.
FORGED = f"x\n*Status:* RESOLVED\r\n*Impact:* none\u2028\x1b]0;pwned\x07\x1b[2J\u202e{ADMIN}"
# Every way of breaking a line, and the characters a terminal or a reader obeys.
BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def hostile(name: str, summary: str = FORGED) -> dict[str, Any]:
    payload = copy.deepcopy(example(name))
    for written in (payload["alerts"][0]["annotations"], payload["commonAnnotations"]):
        written["summary"] = summary
        written["description"] = f"line one\n*Status:* RESOLVED {ADMIN}"
    return payload


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *all_strings(v)]]
    return []


async def _value(value: Any) -> Any:
    return value


# --- the Slack root, end to end -------------------------------------------------------------


async def test_an_alert_forges_no_line_of_the_slack_root_and_its_secret_stays_home(
    make_settings,
) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(
            slack_token=slack.token,
            slack_api_url=slack.api_url,
            slack_channel=CHANNEL,
            admin_token=ADMIN,
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(hostile(LIMITED))
            await svc.idle()
            [root] = await eventually(lambda: _value(slack.roots(CHANNEL)), what="root")
            texts = [root.text] + [b["text"]["text"] for b in root.blocks if "text" in b]
            for text in texts:
                lines = text.splitlines()
                # ours, six of them, in order: the summary's lines stayed inside its own
                assert len(lines) == 6, lines
                assert [ln.split(":*", 1)[0] for ln in lines[1:]] == [
                    "*Status",
                    "*Impact",
                    "*Current action",
                    "*Next update",
                    "*Incident commander",
                ]
                assert [ln for ln in lines if ln.startswith("*Status:*")] == [
                    "*Status:* INVESTIGATING"
                ]
                assert lines[2].startswith("*Impact:* Degraded service: x *Status:* RESOLVED")
                assert CONTROLS.search(text) is None
            # no configured secret in anything Slack was sent (text, blocks, metadata)
            for request in slack.requests:
                assert ADMIN not in json.dumps(request.body), request.path
            assert f"{REDACTED}" in root.text

            # nor in what the API answers of the incident
            auth = {"Authorization": f"Bearer {ADMIN}"}
            [inc] = await svc.incidents()
            for path in (
                "/v1/incidents",
                f"/v1/incidents/{inc['id']}",
                f"/v1/incidents/{inc['id']}/postmortem",
                f"/v1/incidents/{inc['id']}/postmortem?format=json",
            ):
                resp = await svc.client.get(path, headers=auth)
                assert resp.status == 200, (path, await resp.text())
                body = await resp.text()
                assert ADMIN not in body, path
                if "json" in resp.content_type:
                    doc = await resp.json()  # still a valid document
                    assert not any(ADMIN in s for s in all_strings(doc))
            doc = await (await svc.client.get(f"/v1/incidents/{inc['id']}", headers=auth)).json()
            # the rest of the annotation is kept, only the secret is blanked out
            assert doc["annotations"]["summary"].endswith(REDACTED)
            assert doc["annotations"]["summary"].startswith("x\n*Status:* RESOLVED")


async def test_an_api_document_without_a_secret_is_answered_as_it_was(make_settings) -> None:
    async with running_service(make_settings(admin_token=ADMIN)) as svc:
        await svc.post_alertmanager(example(LIMITED))
        await svc.idle()
        [inc] = await svc.incidents()
        resp = await svc.client.get(
            f"/v1/incidents/{inc['id']}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        doc = await resp.json()
        assert doc["annotations"] == example(LIMITED)["alerts"][0]["annotations"]


# --- PagerDuty and the console, end to end --------------------------------------------------


async def test_the_pagerduty_summary_is_one_clean_line_without_the_secret(
    make_settings, tmp_path: Path
) -> None:
    # an operator's template that prints an alert's summary
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / PAGERDUTY_SUMMARY).write_text("{{ severity }} {{ incident.annotations.summary }}")
    async with FakePagerDuty() as pd:
        assert pd.ca_file is not None
        settings = make_settings(
            pagerduty_routing_key=pd.routing_key,
            pagerduty_events_url=pd.url,
            ca_file=Path(pd.ca_file),
            templates_dir=folder,
            admin_token=ADMIN,
        )
        async with running_service(settings, notify=True) as svc:
            await svc.post_alertmanager(hostile(UNREACHABLE))

            async def trigger() -> dict[str, Any] | None:
                sent = [e for e in pd.events if e["event_action"] == "trigger"]
                return sent[0] if sent else None

            event = await eventually(trigger, what="Events API trigger")
            summary = event["payload"]["summary"]
            assert summary.startswith("P1 x *Status:* RESOLVED *Impact:* none")
            assert CONTROLS.search(summary) is None
            assert ADMIN not in json.dumps(event)


async def test_the_console_prints_no_escape_sequence_and_one_line_per_event(
    make_settings,
) -> None:
    out = io.StringIO()
    settings = make_settings(admin_token=ADMIN)
    async with running_service(settings, Overrides(console=out), notify=True) as svc:
        await svc.post_alertmanager(hostile(LIMITED))
        await svc.idle()
        await eventually(lambda: _value("incident.classified" in out.getvalue()), what="lines")
    printed = out.getvalue()
    assert "new incident" in printed
    for obeyed in ("\x1b", "\x07", "\u202e"):
        assert obeyed not in printed
    assert CONTROLS.search(printed.replace("\n", "")) is None
    assert ADMIN not in printed
    # the root's lines are ours, each indented; the summary did not start one
    root = [ln for ln in printed.splitlines() if ln.startswith("   ")]
    assert [ln for ln in root if ln.lstrip().startswith("*Status:*")] == [
        "   *Status:* INVESTIGATING"
    ]


async def test_the_console_sink_strips_escape_sequences_and_keeps_a_line_a_line() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    line = "title \x1b]0;pwned\x07 \x1b]8;;https://x.example\x1b\\click\x1b]8;;\x1b\\ \x9b31m"
    await sink.send(Outbound(sink="console", step="e1", op="reply", text=line + "\nnext"), {})
    root = "*Status:* OK\rFAKE\n\x1b[2J*Impact:* \u202eevil"
    await sink.send(Outbound(sink="console", step="root", op="post", marks="root", text=root), {})
    await asyncio.sleep(0)
    assert stream.getvalue() == (
        "[] title  click  next\n"
        "── [] new incident ──\n"
        "   *Status:* OK\n"
        "   FAKE\n"
        "   *Impact:* evil\n"
    )


# --- templates: values are one line, without control characters ----------------------------


@pytest.mark.parametrize("brk", BREAKS)
def test_no_line_break_in_a_value_starts_a_line_of_a_message(brk: str) -> None:
    renderer = build_renderer(Settings(), lambda: RULES)
    forged = f"t{brk}*Status:* RESOLVED{brk}"
    incident = sample_incidents()[0].model_copy(
        update={"title": forged, "annotations": {"summary": forged}}
    )
    root = renderer.internal(SLACK_ROOT, incident, NOW)
    assert len(root.splitlines()) == 6
    assert [ln for ln in root.splitlines() if "*Status:*" in ln][1] == "*Status:* INVESTIGATING"
    assert CONTROLS.search(root) is None
    summary = renderer.internal(PAGERDUTY_SUMMARY, incident, NOW)
    assert summary.splitlines() == [summary]
    assert summary.startswith("P2 t *Status:* RESOLVED")
    for event in sample_events():
        event = event.model_copy(update={"detail": forged})
        text = renderer.internal(SLACK_EVENT, incident, NOW, event=event)
        assert not any(ln.startswith("*Status:*") for ln in text.splitlines())
    note = renderer.internal(PAGERDUTY_NOTE, incident, NOW, note="summary")
    assert not any(ln.startswith(("*Status:*", "Status: RESOLVED")) for ln in note.splitlines())


def test_a_multi_line_value_is_quoted_on_lines_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / SLACK_ROOT).write_text(
        "*Status:* {{ status }}\n*Description:*\n{{ incident.annotations.get('description', '')"
        " | quote_lines }}\n*Impact:* {{ impact }}"
    )
    renderer = build_renderer(Settings(templates_dir=folder), lambda: RULES)
    description = "first <!channel>\n*Status:* RESOLVED\u2028\x1b[31mred\r\nlast"
    incident = sample_incidents()[0].model_copy(
        update={"annotations": {"description": description}}
    )
    text = renderer.internal(SLACK_ROOT, incident, NOW)
    assert text.splitlines() == [
        "*Status:* INVESTIGATING",
        "*Description:*",
        "> first &lt;!channel&gt;",
        "> *Status:* RESOLVED",
        "> red",
        "> last",
        text.splitlines()[-1],
    ]
    assert text.splitlines()[-1].startswith("*Impact:* ")


def test_a_document_template_prints_values_as_lines_of_their_own_only_quoted(
    tmp_path: Path,
) -> None:
    """A document (the postmortem) writes its own lines too: a value cannot add a heading;
    an inline template (a rule's title) is left as it was."""
    (tmp_path / "doc.md.j2").write_text(
        "## {{ title }}\n{{ summary }}\n{{ summary | quote_lines }}"
    )
    templates = Templates([tmp_path])
    doc = templates.get("doc.md.j2").render(
        {"title": "t\x1b[2J", "summary": "one\r\n### Root Cause\u2028\x1b]0;x\x07three"}
    )
    assert doc.splitlines() == [
        "## t",
        "one ### Root Cause three",
        "> one",
        "> ### Root Cause",
        "> three",
    ]
    assert templates.compile("{{ x }}").render({"x": "a\nb"}) == "a\nb"


# --- the text functions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a\x1b]0;pwned\x07b", "ab"),  # OSC, BEL-terminated: the window title
        ("a\x1b]0;pwned\x1b\\b", "ab"),  # OSC, ST-terminated
        ("a\x1b[2J\x1b[1;31mb", "ab"),  # CSI: clear the screen, colour
        ("a\x9b2Jb", "ab"),  # 8-bit CSI
        ("a\x1bcb", "ab"),  # ESC c: reset the terminal
        ("a\x1bPq#0\x1b\\b", "ab"),  # DCS string
        ("a\x00\x08\x7f\x85\x9fb", "a\nb"),  # C0, DEL, C1 (NEL is a line break)
        ("a\u202eb\u2066c\u2069", "abc"),  # bidi override and isolates
        ("a\r\nb\rc\u2028d\u2029e\x0bf\x0cg", "a\nb\nc\nd\ne\nf\ng"),
        ("tab\there\nnext", "tab\there\nnext"),
        ("a\x1b]0;unterminated", "a0;unterminated"),  # the escape goes, the text is inert
    ],
)
def test_clean_strips_control_characters_and_escape_sequences(raw: str, cleaned: str) -> None:
    assert clean(raw) == cleaned
    assert one_line(raw) == cleaned.replace("\n", " ").replace("\t", " ")


def test_ordinary_text_is_left_alone_and_not_even_copied() -> None:
    for text in (
        "PostHog rate-limits posthog-integration (HTTP 429) *bold* _it_ `code` ~strike~",
        "Zürich — 東京 — مرحبا — 🟠 — naïve café",
        "",
    ):
        assert clean(text) is text
        assert one_line(text) is text
    assert clean("two\nlines") == "two\nlines"
    assert quote_lines("a\nb") == "> a\n> b"


# --- outbound messages: cleaned and redacted in one place -----------------------------------


def test_every_part_of_an_outbound_message_is_cleaned_and_redacted() -> None:
    outbound = OutboundText(Redactor([ADMIN]).known_only)
    message = Outbound(
        sink="pagerduty",
        step="trigger",
        op="trigger",
        title=f"name\n{ADMIN}\x1b[2J",
        text=f"body\n{ADMIN}\x07",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": f"\x1b]0;t\x07{ADMIN}"}}],
        fields={
            "key": "inc-1:notify:pagerduty:trigger",
            "dedup_key": "responder-inc-1",
            "component": f"svc\n{ADMIN}",
            "custom_details": {"group_key": f'{{service="a\u2028b {ADMIN}"}}'},
        },
    )
    out = outbound.message(message)
    assert out.title == f"name {REDACTED}"
    assert out.text == f"body\n{REDACTED}"
    assert out.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": REDACTED}}]
    assert out.fields == {
        "key": "inc-1:notify:pagerduty:trigger",
        "dedup_key": "responder-inc-1",
        "component": f"svc {REDACTED}",
        "custom_details": {"group_key": f'{{service="a b {REDACTED}"}}'},
    }
    # the same message is cleaned the same way every time (what is looked for is what
    # was sent), and a clean one is passed as it is
    assert outbound.message(message) == out
    assert outbound.message(out) is out


# --- redaction patterns ---------------------------------------------------------------------

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAv1x\nq0Zt8w==\n-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("line", "kept", "gone"),
    [
        (
            "connecting to postgres://app:hunter2pass@db.internal:5432/app",
            "postgres://app:[REDACTED]@db.internal:5432/app",
            "hunter2pass",
        ),
        ("mysql://root:s3cr3t!@10.0.0.5/db", "mysql://root:[REDACTED]@", "s3cr3t!"),
        ("REDIS_URL=redis://:redispass@cache:6379/0", "redis://:[REDACTED]@cache", "redispass"),
        ("amqp://guest:rabbitpw@mq:5672/", "amqp://guest:[REDACTED]@mq", "rabbitpw"),
        (
            "mongodb+srv://svc:m0ngo-pw@cluster0.x.mongodb.net/db",
            "mongodb+srv://svc:[REDACTED]@cluster0",
            "m0ngo-pw",
        ),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED]",
            "wJalrXUtnFEMI",
        ),
        (
            'AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
            'AWS_SECRET_ACCESS_KEY: "[REDACTED]',
            "wJalrXUtnFEMI",
        ),
        ("charging with sk_live_4eC39HqLyjWDarjtT1zdp7dc", "charging with [REDACTED]", "4eC39Hq"),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc used", "key [REDACTED] used", "4eC39Hq"),
        ("rk_live_51H8sXYZabcdefghijkl0123", "[REDACTED]", "51H8sXYZ"),
        ("clone with ghp_16C7e42F292c6912E7710c838347Ae178B4a", "clone with [REDACTED]", "16C7e"),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED]", "16C7e"),
        ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED]", "16C7e"),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
            "[REDACTED]",
            "11ABCDEFG",
        ),
        ("maps key=AIzaSyA-1234567890abcdefghijklmnopqrstu!", "[REDACTED]!", "AIzaSyA"),
        ("url ?key=AIzaSyA-1234567890abcdefghijklmnopqrstu&x=1", "[REDACTED]&x=1", "AIzaSyA"),
        (
            f"loaded key {PEM} done",
            "loaded key -----BEGIN RSA PRIVATE KEY-----[REDACTED] done",
            "MIIEow",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n(log cut short)",
            "-----BEGIN PRIVATE KEY-----[REDACTED]",
            "MIIEvQ",
        ),
        ("GET / Cookie: session=abc123def; csrftoken=zzz", "Cookie: [REDACTED]", "abc123def"),
        ("Set-Cookie: sid=s%3Aabcdef; Path=/; HttpOnly", "Set-Cookie: [REDACTED]", "s%3Aabcdef"),
        ("headers={'Cookie': 'sid=abcdef12'}", "'Cookie': '[REDACTED]'}", "abcdef12"),
        ("Authorization: Token abcdef123456", "Authorization: [REDACTED]", "abcdef123456"),
        (
            "authorization: Digest username=x, response=6629fae4",
            "authorization: [REDACTED]",
            "6629",
        ),
        (
            "Proxy-Authorization: Negotiate YIIGhgYGKwYBBQUC",
            "Proxy-Authorization: [REDACTED]",
            "YIIGhg",
        ),
        (
            '{"Authorization": "Bearer eyJhbGciOi.abc"}',
            '{"Authorization": "[REDACTED]"}',
            "eyJhbGciOi",
        ),
    ],
)
def test_credentials_in_log_lines_are_blanked_out(line: str, kept: str, gone: str) -> None:
    redacted = Redactor()(line)
    assert kept in redacted
    assert gone not in redacted


@pytest.mark.parametrize(
    "line",
    [
        "GET https://example.com:8443/path@v2/users HTTP/1.1 200",  # a port, an @ in the path
        "see https://docs.example.com/@user/post and postgres://db.internal:5432/app",
        "mailto:someone@example.com and user@host:/srv",
        "aws_secret_access_key not set; using the instance role",
        "task sk_live_checkout failed; the desk_test_suite passed",
        "the github_pat_ prefix and ghp_short are not tokens",
        "AIzaShort is no key, nor is AIzaSyA-1234567890abcdefghijklmnopqrstuvwxyz (too long)",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqh\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+g\n-----END CERTIFICATE-----",
        "the cookie jar is full; cookies were cleared",
        "authorization failed for user bob; no authorization header",
    ],
)
def test_ordinary_text_that_looks_a_little_like_a_credential_is_kept(line: str) -> None:
    assert Redactor()(line) == line


def test_configured_secrets_leave_a_json_document_valid_and_the_rest_intact() -> None:
    quoted = 'pa"ss\\word'  # a secret a JSON string escapes
    redact = Redactor([ADMIN, quoted])
    doc = {"a": f"x {ADMIN} y", ADMIN: [1, 2.5, None, True, {"b": f"{quoted}!"}], "c": "ok"}
    body = json.dumps(doc).encode()
    out = json.loads(redact.json_document(body))
    assert out == {
        "a": f"x {REDACTED} y",
        REDACTED: [1, 2.5, None, True, {"b": f"{REDACTED}!"}],
        "c": "ok",
    }
    plain = json.dumps({"a": "nothing secret"}).encode()
    assert redact.json_document(plain) is plain
    assert redact.text_document(f"# {ADMIN}\n".encode()) == f"# {REDACTED}\n".encode()


# --- log lines ------------------------------------------------------------------------------


def test_a_log_line_carries_control_characters_only_escaped() -> None:
    """The log pipeline writes JSON, which escapes every control character and non-ASCII
    character: an alert's escape sequence reaches no terminal tailing the logs. (A guard:
    the JSON renderer did so before.)"""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure(level="INFO", secrets=[ADMIN], stream=stream)
    try:
        structlog.get_logger("t").info("incident event", detail=FORGED)
        logging.getLogger("some.library").warning("library says %s", FORGED)
    finally:
        logs.reset()
        root.handlers[:] = handlers
        root.setLevel(level)
    written = stream.getvalue()
    assert len(written.splitlines()) == 2
    assert CONTROLS.search(written.replace("\n", "")) is None
    assert ADMIN not in written
    assert json.loads(written.splitlines()[0])["detail"].startswith("x\n*Status:* RESOLVED")
