"""Who may post: Alertmanager's bearer token or basic auth, PagerDuty's signature."""

from __future__ import annotations

import base64
import json

import pytest

from responder.ingest.pagerduty import sign, signature_valid
from responder.settings import ConfigError
from tests.support.service import EXAMPLES, Service, example, running_service

AM = example("alertmanager/posthog-upstream-503-firing.json")
PD_BODY = (EXAMPLES / "pagerduty" / "incident-triggered.json").read_bytes()
PD_SECRET = (EXAMPLES / "pagerduty" / "webhook-secret.txt").read_text().strip()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def queued(svc: Service) -> int:
    stats = await svc.runtime.queue.stats()  # type: ignore[union-attr]
    return stats.depth


@pytest.fixture
async def token_service(make_settings):
    async with running_service(make_settings(workers=0, alertmanager_token="s3cret-token")) as s:
        yield s


async def test_missing_bearer_token_is_401_with_a_challenge(token_service: Service) -> None:
    resp = await token_service.post_alertmanager(AM)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"] == "unauthorized"
    assert await queued(token_service) == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token",
        "Bearer s3cret-tokenX",
        "Bearer s3cret-toke",
        "Token s3cret-token",
        basic("s3cret-token", "s3cret-token"),
    ],
)
async def test_wrong_bearer_token_is_403(token_service: Service, header: str) -> None:
    resp = await token_service.post_alertmanager(AM, headers={"Authorization": header})
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    assert await queued(token_service) == 0


async def test_right_bearer_token_is_accepted(token_service: Service) -> None:
    resp = await token_service.post_alertmanager(
        AM, headers={"Authorization": "Bearer s3cret-token"}
    )
    assert resp.status == 200
    assert await queued(token_service) == 1


@pytest.fixture
async def basic_service(make_settings):
    settings = make_settings(workers=0, alertmanager_username="am", alertmanager_password="pa:ss")
    async with running_service(settings) as s:
        yield s


async def test_basic_auth_right_credentials_are_accepted(basic_service: Service) -> None:
    resp = await basic_service.post_alertmanager(
        AM, headers={"Authorization": basic("am", "pa:ss")}
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    "header",
    [
        basic("am", "wrong"),
        basic("other", "pa:ss"),
        basic("am", ""),
        "Basic !!!notbase64",
        "Bearer pa:ss",
    ],
)
async def test_basic_auth_wrong_credentials_are_403(basic_service: Service, header: str) -> None:
    resp = await basic_service.post_alertmanager(AM, headers={"Authorization": header})
    assert resp.status == 403
    assert await queued(basic_service) == 0


async def test_basic_auth_missing_is_401(basic_service: Service) -> None:
    resp = await basic_service.post_alertmanager(AM)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_token_and_basic_configured_together_accept_either(make_settings) -> None:
    settings = make_settings(
        workers=0, alertmanager_token="tok1", alertmanager_username="am", alertmanager_password="pw"
    )
    async with running_service(settings) as svc:
        assert (
            await svc.post_alertmanager(AM, headers={"Authorization": "Bearer tok1"})
        ).status == 200
        assert (
            await svc.post_alertmanager(AM, headers={"Authorization": basic("am", "pw")})
        ).status == 200
        assert (
            await svc.post_alertmanager(AM, headers={"Authorization": basic("am", "tok1")})
        ).status == 403


async def test_auth_outcomes_are_counted_in_metrics(token_service: Service) -> None:
    await token_service.post_alertmanager(AM)
    await token_service.post_alertmanager(AM, headers={"Authorization": "Bearer nope"})
    await token_service.post_alertmanager(AM, headers={"Authorization": "Bearer s3cret-token"})
    text = await (await token_service.client.get("/metrics")).text()
    for outcome in ("unauthorized", "forbidden", "accepted"):
        assert f'responder_webhooks_total{{outcome="{outcome}",source="alertmanager"}} 1.0' in text


# ----------------------------------------------------------------------------- PagerDuty


@pytest.fixture
async def pd_service(make_settings):
    settings = make_settings(workers=0, pagerduty_webhook_secrets=f"old-secret-abc,{PD_SECRET}")
    async with running_service(settings) as s:
        yield s


async def test_pagerduty_valid_signature_is_accepted(pd_service: Service) -> None:
    resp = await pd_service.post_pagerduty(
        PD_BODY, {"X-PagerDuty-Signature": sign(PD_BODY, PD_SECRET)}
    )
    assert resp.status == 200
    assert await queued(pd_service) == 1


async def test_pagerduty_published_sample_signature_matches(pd_service: Service) -> None:
    line = next(
        ln
        for ln in (EXAMPLES / "pagerduty" / "signatures.txt").read_text().splitlines()
        if ln.startswith("incident-triggered.json ")
    )
    resp = await pd_service.post_pagerduty(PD_BODY, {"X-PagerDuty-Signature": line.split()[1]})
    assert resp.status == 200


async def test_pagerduty_tampered_body_is_403(pd_service: Service) -> None:
    tampered = PD_BODY.replace(b"Dana Oncall", b"Mallory")
    resp = await pd_service.post_pagerduty(
        tampered, {"X-PagerDuty-Signature": sign(PD_BODY, PD_SECRET)}
    )
    assert resp.status == 403
    assert await queued(pd_service) == 0


async def test_pagerduty_reserialised_body_does_not_verify(pd_service: Service) -> None:
    # the signature covers the raw bytes, not the JSON they mean
    compact = json.dumps(json.loads(PD_BODY)).encode()
    resp = await pd_service.post_pagerduty(
        compact, {"X-PagerDuty-Signature": sign(PD_BODY, PD_SECRET)}
    )
    assert resp.status == 403


async def test_pagerduty_wrong_secret_is_403(pd_service: Service) -> None:
    resp = await pd_service.post_pagerduty(
        PD_BODY, {"X-PagerDuty-Signature": sign(PD_BODY, "nope")}
    )
    assert resp.status == 403


async def test_pagerduty_either_configured_secret_verifies_during_rotation(
    pd_service: Service,
) -> None:
    resp = await pd_service.post_pagerduty(
        PD_BODY, {"X-PagerDuty-Signature": sign(PD_BODY, "old-secret-abc")}
    )
    assert resp.status == 200


async def test_pagerduty_several_signatures_one_valid_is_accepted(pd_service: Service) -> None:
    header = f"v1=deadbeef, {sign(PD_BODY, 'unrelated')},{sign(PD_BODY, PD_SECRET)}"
    resp = await pd_service.post_pagerduty(PD_BODY, {"X-PagerDuty-Signature": header})
    assert resp.status == 200


async def test_pagerduty_missing_signature_is_401(pd_service: Service) -> None:
    resp = await pd_service.post_pagerduty(PD_BODY)
    assert resp.status == 401
    assert await queued(pd_service) == 0


async def test_pagerduty_unsigned_is_refused_off_loopback_without_secrets(make_settings) -> None:
    # the service believes it is bound to every interface, with an Alertmanager token
    settings = make_settings(workers=0, host="0.0.0.0", alertmanager_token="t")
    async with running_service(settings) as svc:
        resp = await svc.post_pagerduty(PD_BODY)
        assert resp.status == 403
        assert "RESPONDER_PAGERDUTY_WEBHOOK_SECRETS" in (await resp.json())["detail"]


async def test_pagerduty_unsigned_is_accepted_on_loopback_without_secrets(make_settings) -> None:
    async with running_service(make_settings(workers=0)) as svc:
        assert (await svc.post_pagerduty(PD_BODY)).status == 200


def test_signature_check_ignores_entries_that_are_not_v1() -> None:
    digest = sign(PD_BODY, PD_SECRET)[3:]
    assert not signature_valid(PD_BODY, f"v0={digest}", [PD_SECRET])
    assert not signature_valid(PD_BODY, digest, [PD_SECRET])
    assert not signature_valid(PD_BODY, "", [PD_SECRET])
    assert signature_valid(PD_BODY, f"v0=abc, v1={digest}", [PD_SECRET])


# --------------------------------------------------------------------------- bind safety


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "responder.example.com"])
def test_open_intake_refuses_a_non_loopback_address(make_settings, host: str) -> None:
    with pytest.raises(ConfigError, match="refusing to listen"):
        make_settings().check_bind(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_open_intake_may_bind_loopback(make_settings, host: str) -> None:
    make_settings().check_bind(host)


def test_credentials_or_explicit_opt_in_allow_any_address(make_settings) -> None:
    make_settings(alertmanager_token="t").check_bind("0.0.0.0")
    make_settings(alertmanager_username="u", alertmanager_password="p").check_bind("0.0.0.0")
    make_settings(allow_unauthenticated=True).check_bind("0.0.0.0")
