"""Hostile callers of the HTTP API: credentials that mean nothing (empty, or padded with a
Unicode space), reads without a token, paths whose incident id is no id, and PagerDuty
webhooks signed with junk, too big, or trickled in byte by byte.

Header bytes are sent as written here through a raw socket (a client library may re-encode
a non-ASCII value): the server must see U+00A0 as the UTF-8 bytes C2 A0.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from responder.ingest.pagerduty import sign, signature_valid
from responder.settings import Settings
from tests.support.procs import env_without_responder, free_port, serve_process
from tests.support.service import EXAMPLES, Service, example, running_service

AM = example("alertmanager/posthog-upstream-503-firing.json")
AM_BODY = json.dumps(AM).encode()
PD_BODY = (EXAMPLES / "pagerduty" / "incident-triggered.json").read_bytes()
PD_SECRET = (EXAMPLES / "pagerduty" / "webhook-secret.txt").read_text().strip()
NBSP = "\u00a0".encode()  # b"\xc2\xa0"
# an id as domain.incident.new_incident_id makes them, of no incident
NO_SUCH_ID = "inc-0123456789abcdef01"


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str]]:
    """One request written byte for byte; the status and headers of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(64 * 1024), timeout=30)
    finally:
        writer.close()
    status_line, *lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers


def post_head(path: str, *headers: bytes, length: int) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        f"Content-Length: {length}".encode(),
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n"


def get_head(path: str, *headers: bytes) -> bytes:
    return b"\r\n".join([f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]) + b"\r\n"


async def queued(svc: Service) -> int:
    stats = await svc.runtime.queue.stats()  # type: ignore[union-attr]
    return stats.depth


# ------------------------------------------------------------- empty credentials, at start-up


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"RESPONDER_ALERTMANAGER_TOKEN": ""}, "alertmanager_token"),
        ({"RESPONDER_ALERTMANAGER_TOKEN": " \t "}, "alertmanager_token"),
        (
            {"RESPONDER_ALERTMANAGER_USERNAME": "", "RESPONDER_ALERTMANAGER_PASSWORD": "pw"},
            "alertmanager_username",
        ),
        (
            {"RESPONDER_ALERTMANAGER_USERNAME": "am", "RESPONDER_ALERTMANAGER_PASSWORD": ""},
            "alertmanager_password",
        ),
        ({"RESPONDER_ADMIN_TOKEN": ""}, "admin_token"),
        ({"RESPONDER_READ_TOKEN": ""}, "read_token"),
        ({"RESPONDER_PAGERDUTY_WEBHOOK_SECRETS": ""}, "pagerduty_webhook_secrets"),
        ({"RESPONDER_PAGERDUTY_WEBHOOK_SECRETS": "one,,two"}, "pagerduty_webhook_secrets"),
    ],
)
def test_an_empty_credential_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert refused.value.errors(include_url=False)[0]["loc"][0] == field


def test_an_empty_token_file_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "alertmanager-token"
    empty.write_text("\n")
    monkeypatch.setenv("RESPONDER_ALERTMANAGER_TOKEN_FILE", str(empty))
    with pytest.raises(ValidationError, match="alertmanager_token"):
        Settings()


def test_serve_refuses_an_empty_token_in_one_line_naming_it() -> None:
    # an empty token used to count as credentials: serve listened on every address
    result = subprocess.run(
        [sys.executable, "-m", "responder", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **env_without_responder(),
            "RESPONDER_PORT": str(free_port()),
            "RESPONDER_ALERTMANAGER_TOKEN": "",
        },
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: invalid setting RESPONDER_ALERTMANAGER_TOKEN:")


def test_only_ascii_whitespace_is_stripped_from_a_configured_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "admin-token"
    token.write_text("tok\u00a0\n", encoding="utf-8")
    monkeypatch.setenv("RESPONDER_ADMIN_TOKEN_FILE", str(token))
    admin = Settings().admin_token
    assert admin is not None
    assert admin.get_secret_value() == "tok\u00a0"


# ------------------------------------------------- presented credentials: ASCII spaces only


@pytest.fixture
async def token_service(make_settings: Any) -> AsyncIterator[Service]:
    settings = make_settings(
        workers=0,
        alertmanager_token="s3cret-token",
        alertmanager_username="am",
        alertmanager_password="pw",
        admin_token="admin-tok",
        read_token="read-tok",
    )
    async with running_service(settings) as svc:
        yield svc


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer " + NBSP + b"s3cret-token",
        b"Bearer s3cret-token" + NBSP,
        b"Bearer" + NBSP + b"s3cret-token",
        b"Bearer s3cret-token\xe2\x80\x83",  # EM SPACE
        b"Bearer s3cret-token\xff",  # not UTF-8 at all
        b"Basic " + NBSP + base64.b64encode(b"am:pw"),
        b"Basic " + base64.b64encode(b"am:pw") + NBSP,
    ],
)
async def test_a_unicode_space_around_intake_credentials_does_not_authenticate(
    token_service: Service, authorization: bytes
) -> None:
    head = post_head(
        "/v1/webhooks/alertmanager", b"Authorization: " + authorization, length=len(AM_BODY)
    )
    status, _ = await raw_request(token_service.client.port, head, AM_BODY)
    assert status in (401, 403)
    assert await queued(token_service) == 0


async def test_ascii_spaces_around_intake_credentials_still_authenticate(
    token_service: Service,
) -> None:
    head = post_head(
        "/v1/webhooks/alertmanager", b"Authorization: Bearer \ts3cret-token \t", length=len(AM_BODY)
    )
    assert (await raw_request(token_service.client.port, head, AM_BODY))[0] == 200


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer " + NBSP + b"admin-tok", b"Bearer admin-tok" + NBSP, b"Bearer admin-tok\xff"],
)
async def test_a_unicode_space_around_the_admin_token_does_not_authenticate(
    token_service: Service, authorization: bytes
) -> None:
    head = post_head("/v1/admin/resume", b"Authorization: " + authorization, length=2)
    assert (await raw_request(token_service.client.port, head, b"{}"))[0] == 403
    ok = post_head("/v1/admin/resume", b"Authorization: Bearer  admin-tok ", length=2)
    assert (await raw_request(token_service.client.port, ok, b"{}"))[0] == 200


@pytest.mark.parametrize(
    "authorization", [b"Bearer " + NBSP + b"read-tok", b"Bearer read-tok" + NBSP]
)
async def test_a_unicode_space_around_the_read_token_does_not_authenticate(
    token_service: Service, authorization: bytes
) -> None:
    head = get_head("/v1/incidents", b"Authorization: " + authorization)
    assert (await raw_request(token_service.client.port, head))[0] == 403


# ------------------------------------------------------------------------ the read API

READ_PATHS = [
    "/v1/incidents",
    "/v1/incidents/{id}",
    "/v1/incidents/{id}/postmortem",
    "/v1/incidents/{id}/postmortem?format=json",
    "/v1/incidents/{id}/evidence",
    "/v1/rules",
    "/v1/automation",
]
OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


async def test_reads_need_the_read_or_admin_token_once_one_is_set(make_settings: Any) -> None:
    settings = make_settings(workers=1, read_token="read-tok", admin_token="admin-tok")
    async with running_service(settings) as svc:
        assert (await svc.post_alertmanager(AM)).status == 200
        await svc.idle()
        page = await svc.runtime.store.list_incidents(limit=10)
        [view] = page.incidents
        for template in READ_PATHS:
            path = template.format(id=view.incident.id)
            refused = await svc.client.get(path)
            assert refused.status == 401, path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer"), path
            assert (await refused.json())["error"] == "unauthorized"
            wrong = await svc.client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 403, path
            for token in ("read-tok", "admin-tok"):
                ok = await svc.client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert ok.status == 200, (path, token)
        for path in OPEN_PATHS:
            assert (await svc.client.get(path)).status == 200, path


async def test_reads_are_refused_off_loopback_without_a_read_token(make_settings: Any) -> None:
    # the service believes it listens on every interface (as in its pod), with intake
    # credentials (so it may) and no read token: nobody may read
    settings = make_settings(workers=0, host="0.0.0.0", alertmanager_token="t")
    async with running_service(settings) as svc:
        for template in READ_PATHS:
            resp = await svc.client.get(template.format(id=NO_SUCH_ID))
            assert resp.status == 403, template
            assert "RESPONDER_READ_TOKEN" in (await resp.json())["detail"]
        for path in OPEN_PATHS:
            assert (await svc.client.get(path)).status == 200, path


async def test_off_loopback_the_admin_token_reads(make_settings: Any) -> None:
    settings = make_settings(workers=0, host="0.0.0.0", alertmanager_token="t", admin_token="a")
    async with running_service(settings) as svc:
        resp = await svc.client.get("/v1/incidents")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (
            await svc.client.get("/v1/incidents", headers={"Authorization": "Bearer a"})
        ).status == 200
        # the intake's token is no read token
        assert (
            await svc.client.get("/v1/incidents", headers={"Authorization": "Bearer t"})
        ).status == 403


async def test_off_loopback_reads_open_only_by_explicit_opt_in(make_settings: Any) -> None:
    settings = make_settings(
        workers=0, host="0.0.0.0", alertmanager_token="t", allow_unauthenticated_reads=True
    )
    async with running_service(settings) as svc:
        assert (await svc.client.get("/v1/incidents")).status == 200
        # the intake's own opt-in does not open the reads
    settings = make_settings(workers=0, host="0.0.0.0", allow_unauthenticated=True)
    async with running_service(settings) as svc:
        assert (await svc.client.get("/v1/incidents")).status == 403


@pytest.mark.parametrize(
    ("values", "host", "need"),
    [
        ({}, "127.0.0.1", False),
        ({}, "::1", False),
        ({}, "0.0.0.0", True),
        ({}, "10.1.2.3", True),
        ({"allow_unauthenticated_reads": True}, "0.0.0.0", False),
        ({"allow_unauthenticated": True}, "0.0.0.0", True),
        ({"admin_token": "a"}, "0.0.0.0", True),
        ({"read_token": "r"}, "127.0.0.1", True),
        ({"read_token": "r", "allow_unauthenticated_reads": True}, "0.0.0.0", True),
    ],
)
def test_when_reads_need_a_token(
    make_settings: Any, values: dict[str, Any], host: str, need: bool
) -> None:
    assert make_settings(**values).reads_need_token(host) is need


def test_the_read_token_is_redacted_and_documented(make_settings: Any) -> None:
    assert "read-tok-value" in make_settings(read_token="read-tok-value").secret_values()
    from responder.openapi import build_openapi

    doc = build_openapi()
    assert doc["components"]["securitySchemes"]["read"]["scheme"] == "bearer"
    for template in READ_PATHS:
        path = template.split("?")[0].replace("{id}", "{incident_id}")
        assert doc["paths"][path]["get"]["security"] == [{"read": []}], path
    for path in OPEN_PATHS:
        assert "security" not in doc["paths"][path]["get"], path


def test_the_cli_reads_with_the_read_token() -> None:
    def incidents_list(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "responder", "incidents", "list", "--url", served.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env_without_responder(), **env},
        )

    with serve_process({"RESPONDER_READ_TOKEN": "cli-read", "RESPONDER_WORKERS": "0"}) as served:
        refused = incidents_list()
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: 401 from ")
        assert incidents_list(RESPONDER_READ_TOKEN="cli-read").returncode == 0
        assert incidents_list("--token", "cli-read").returncode == 0
        assert incidents_list("--token", "wrong").stderr.startswith("error: 403 from ")


# ---------------------------------------------------------------------------- incident ids

BAD_IDS = [
    "inc-x:timeline",
    f"{NO_SUCH_ID}:timeline",
    f"{NO_SUCH_ID}:alerts",
    "*",
    "inc-*",
    "inc-%2A",
    "inc-%00",
    "INC-0123456789ABCDEF01",
    "inc-0123456789abcdef0",
    "inc-0123456789abcdef01%3Atimeline",
]


@pytest.mark.parametrize("incident_id", BAD_IDS)
async def test_an_id_that_cannot_be_one_is_a_json_404_on_every_read(
    service: Service, incident_id: str
) -> None:
    for suffix in ("", "/postmortem", "/evidence"):
        resp = await service.client.get(f"/v1/incidents/{incident_id}{suffix}")
        assert resp.status == 404, suffix
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"] == "not found"


async def test_a_real_id_with_a_key_suffix_names_no_other_record(backend_settings: Any) -> None:
    # "<id>:timeline" is the Redis key of the incident's timeline: it used to be read as an
    # incident (WRONGTYPE, a 500), and an ack would have written there
    async with running_service(backend_settings(workers=1, admin_token="a")) as svc:
        assert (await svc.post_alertmanager(AM)).status == 200
        await svc.idle()
        [view] = (await svc.runtime.store.list_incidents(limit=10)).incidents
        real = view.incident.id
        for record in ("timeline", "alerts", "processed", "ledger"):
            for suffix in ("", "/postmortem", "/evidence"):
                resp = await svc.client.get(f"/v1/incidents/{real}:{record}{suffix}")
                assert resp.status == 404, (record, suffix)
                assert (await resp.json())["error"] == "not found"
            ack = await svc.client.post(
                f"/v1/incidents/{real}:{record}/ack",
                json={"by": "mallory"},
                headers={"Authorization": "Bearer a"},
            )
            assert ack.status == 404, record
        shown = await (await svc.client.get(f"/v1/incidents/{real}")).json()
        assert shown["status"] == "open"
        assert len(shown["timeline"]) == len(view.timeline)


async def test_an_id_that_cannot_be_one_is_a_json_404_on_ack(backend_settings: Any) -> None:
    async with running_service(backend_settings(workers=0, admin_token="a")) as svc:
        for incident_id in BAD_IDS:
            resp = await svc.client.post(
                f"/v1/incidents/{incident_id}/ack",
                json={"by": "dana"},
                headers={"Authorization": "Bearer a"},
            )
            assert resp.status == 404, incident_id
            assert (await resp.json())["error"] == "not found"


# ------------------------------------------------------------------ the PagerDuty webhook


@pytest.fixture
async def pd_service(make_settings: Any) -> AsyncIterator[Service]:
    settings = make_settings(
        workers=0, pagerduty_webhook_secrets=PD_SECRET, pagerduty_read_timeout_s=1.0
    )
    async with running_service(settings) as svc:
        yield svc


@pytest.mark.parametrize(
    "signature",
    [
        "v1=é".encode(),
        b"v1=\xff\xfe",
        NBSP + sign(PD_BODY, PD_SECRET).encode(),
        sign(PD_BODY, PD_SECRET).encode() + NBSP,
    ],
)
async def test_a_signature_that_is_not_ascii_is_401(pd_service: Service, signature: bytes) -> None:
    head = post_head(
        "/v1/webhooks/pagerduty", b"X-PagerDuty-Signature: " + signature, length=len(PD_BODY)
    )
    status, headers = await raw_request(pd_service.client.port, head, PD_BODY)
    assert status == 401
    assert "WWW-Authenticate" in headers
    assert await queued(pd_service) == 0


def test_the_signature_check_never_raises_on_junk() -> None:
    for header in ("v1=é", "v1=\udcff", "\u00a0v1=00", "v1=" + "0" * 10_000):
        assert not signature_valid(PD_BODY, header, [PD_SECRET])


async def test_a_pagerduty_body_above_its_own_limit_is_413(pd_service: Service) -> None:
    # valid JSON, validly signed, and far below the Alertmanager limit: still too big for
    # a PagerDuty event
    big = PD_BODY.rstrip() + b" " * (100 * 1024)
    signed = {"X-PagerDuty-Signature": sign(big, PD_SECRET)}
    assert (await pd_service.post_pagerduty(big, signed)).status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    resp = await pd_service.client.post(
        "/v1/webhooks/pagerduty",
        data=chunks(),
        headers={"Content-Type": "application/json", **signed},
    )
    assert resp.status == 413
    assert await queued(pd_service) == 0
    assert Settings().pagerduty_max_body_bytes == 64 * 1024


async def test_a_trickled_pagerduty_body_is_cut_off_at_the_deadline(pd_service: Service) -> None:
    """Headers, then one byte every half second: the service answers 408 (deadline 1 s)
    long before the body is complete; what is counted is the bytes sent, not the time."""
    body = b'{"event": {"id": "trickle"}}' + b" " * 12
    reader, writer = await asyncio.open_connection("127.0.0.1", pd_service.client.port)
    head = post_head("/v1/webhooks/pagerduty", b"X-PagerDuty-Signature: v1=00", length=len(body))
    writer.write(head + b"\r\n")
    await writer.drain()
    answer = asyncio.ensure_future(reader.read(4096))
    sent = 0
    try:
        for byte in body:  # bounded: one pass over the body
            done, _ = await asyncio.wait({answer}, timeout=0.5)
            if done:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
        raw = await asyncio.wait_for(answer, timeout=30)
    finally:
        writer.close()
    assert sent < len(body)
    assert raw.startswith(b"HTTP/1.1 408 "), raw[:80]
    assert b"Connection: close" in raw
    assert await queued(pd_service) == 0
