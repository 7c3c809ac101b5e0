"""``POST /v1/slack/interactions``: the presses of the incident messages' buttons
(Acknowledge, Pause and Resume automation, Approve and Reject a step), as Slack sends them.

Each request is checked in this order, and counted by what became of it
(``responder_slack_interactions_total{outcome}``): a signing secret is configured (else
404, ``unconfigured``); Slack's signature (``X-Slack-Signature``, v0, over the timestamp and
the raw body) matches one of the secrets (else 401, ``forged``), its timestamp within 5
minutes of our clock (else 401, ``stale``); the request was not taken before, on any replica
(``Store.remember_once`` on its signature; else 409, ``replayed``); it is a press of one of
our buttons (else 400, ``invalid``); the presser is granted the act (``ingest/slack.py``;
else an ephemeral refusal only they see, and 200, ``refused``); its incident is one the
store holds and not resolved (else an ephemeral saying so, 200, ``moot``: a button of an
expired incident, of another install's, or pressed after the resolve would otherwise be
queued and ignored without a word to the presser). Then the press is queued
as a ``HumanSignal`` under its incident's order key and answered 200 at once: Slack wants an
answer within 3 s, and a worker applies it as it applies every event.

Without a bot token (incoming-webhook mode) messages carry no buttons; a press still is
verified and queued, but nobody can be answered privately.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

import structlog
from aiohttp import web
from slack_sdk.signature import Clock as SlackClock
from slack_sdk.signature import SignatureVerifier

from responder.domain.incident import approval_of
from responder.domain.signal import HumanSignal
from responder.ingest.slack import (
    InvalidPress,
    Press,
    already_decided_text,
    already_resolved_text,
    read_press,
    unknown_incident_text,
)
from responder.ports import Clock, IncidentView, SlackLookupError
from responder.web.common import CONTEXT, ApiError, WebContext

log = structlog.get_logger("responder.web")

# A signed request is remembered this long: past the 5 minutes either way that Slack's
# timestamp may be off our clock, so it cannot be replayed while it would still verify.
REPLAY_WINDOW_S = 15 * 60.0
_FORM = "application/x-www-form-urlencoded"


class _OurClock(SlackClock):
    """slack-sdk's verifier asks its clock for epoch seconds: ours (a test moves it)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now().timestamp()


def _verify(ctx: WebContext, request: web.Request, body: bytes) -> str:
    """The signature when one of the secrets signed the request in time; else 401,
    ``stale`` when a secret signed it but its timestamp is out of the window."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp")
    signature = request.headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        raise _refused(401, "forged", "send X-Slack-Request-Timestamp and X-Slack-Signature")
    clock = _OurClock(ctx.clock)
    authentic = False
    for secret in ctx.settings.slack_signing_secrets:
        verifier = SignatureVerifier(secret.get_secret_value(), clock=clock)
        try:
            if verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
                return signature
            expected = verifier.generate_signature(timestamp=timestamp, body=body)
            # the same signature out of the window: signed by Slack, but too old (or new)
            authentic |= expected is not None and hmac.compare_digest(
                expected.encode(), signature.encode("utf-8", "surrogateescape")
            )
        except (ValueError, TypeError):  # a timestamp that is no number, a body not UTF-8
            continue
    if authentic:
        raise _refused(
            401, "stale", "the request's timestamp is more than 5 minutes off; not taken"
        )
    raise _refused(401, "forged", "the signature matches none of the signing secrets")


def _refused(status: int, outcome: str, detail: str) -> ApiError:
    error = {401: "unauthorized", 404: "not found", 409: "replayed", 400: "invalid payload"}
    return ApiError(status, error.get(status, "refused"), detail, outcome=outcome)


def _press(request: web.Request, body: bytes) -> Press:
    if request.content_type != _FORM:
        raise InvalidPress(f"send Content-Type: {_FORM}, as Slack does")
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidPress("the body is not UTF-8") from None
    payloads = form.get("payload") or []
    if len(payloads) != 1:
        raise InvalidPress("the form holds no payload field (or more than one)")
    return read_press(payloads[0])


def _later(ctx: WebContext, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` after the answer is sent (kept until done; awaited at shutdown)."""
    task = asyncio.get_running_loop().create_task(work)
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)


async def _tell(ctx: WebContext, press: Press, text: str) -> None:
    access = ctx.slack
    if access is None or access.people is None or press.channel_id is None:
        log.info("slack press answered by nobody: no bot token", incident_id=press.incident_id)
        return
    try:
        await access.people.tell_privately(channel=press.channel_id, user=press.user_id, text=text)
    except SlackLookupError as exc:
        log.warning("slack ephemeral not sent", user_id=press.user_id, error=str(exc))


def _moot_text(ctx: WebContext, view: IncidentView | None) -> str:
    """Why a press changes nothing: its incident is not held (expired, or another
    install's), or is resolved."""
    if view is None:
        return unknown_incident_text(retention_s=ctx.settings.incident_retention_s)
    at = view.incident.resolved_at
    return already_resolved_text(at=f"{at:%H:%M:%S} UTC" if at is not None else "an earlier time")


async def slack_interactions(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    counted = ctx.metrics.slack_interactions
    try:
        outcome = await _interaction(ctx, request)
    except ApiError as exc:
        counted.labels(exc.outcome).inc()
        log.info("slack interaction refused", outcome=exc.outcome, detail=exc.body.detail)
        raise
    counted.labels(outcome).inc()
    # Slack shows the press as done on any 200; what happened is on the message, or told
    # to the presser alone
    return web.Response(status=200)


async def _interaction(ctx: WebContext, request: web.Request) -> str:
    """What became of a press that is answered 200 (``accepted``, ``refused``, ``moot``);
    the other outcomes are raised as their ``ApiError``."""
    access = ctx.slack
    if access is None or not ctx.settings.slack_signing_secrets:
        raise _refused(
            404, "unconfigured", "Slack interactions are off: set RESPONDER_SLACK_SIGNING_SECRETS"
        )
    body = await request.read()  # bounded by the app's client_max_size (413 above)
    signature = _verify(ctx, request, body)
    # one digest of the signature (it covers the timestamp and the body): across replicas
    digest = hashlib.sha256(signature.encode("utf-8", "surrogateescape")).hexdigest()
    if not await ctx.store.remember_once(f"slack:{digest}", ttl_s=REPLAY_WINDOW_S):
        raise _refused(409, "replayed", "this signed request was taken before")
    try:
        press = _press(request, body)
    except InvalidPress as exc:
        raise _refused(400, "invalid", str(exc)) from None
    verdict = await access.decide(press)
    if not verdict.allowed:
        log.info(
            "slack press refused",
            incident_id=press.incident_id,
            act=press.act,
            user_id=press.user_id,
            reason=verdict.reason,
        )
        _later(ctx, _tell(ctx, press, verdict.reason))
        return "refused"
    view = await ctx.store.get_incident(press.incident_id)
    if view is None or not view.incident.is_active:
        _later(ctx, _tell(ctx, press, _moot_text(ctx, view)))
        log.info(
            "slack press moot",
            incident_id=press.incident_id,
            act=press.act,
            user_id=press.user_id,
            known=view is not None,
        )
        return "moot"
    decided = None
    if press.act in ("approve", "reject") and press.step is not None:
        # told at once, though harmless to queue: the first answer stands
        approval = approval_of(view.incident, press.step)
        if approval is not None and approval.state != "requested":
            at = approval.decided_at or approval.expires_at
            decided = already_decided_text(
                state=approval.state, by=approval.decided_by, at=f"{at:%H:%M:%S} UTC"
            )
    signal = HumanSignal(
        incident_id=press.incident_id,
        act=press.act,
        step=press.step,
        by=press.by,
        user_id=press.user_id,
        via="slack",
        request_id=press.trigger_id or digest[:32],
        received_at=ctx.clock.now(),
    )
    await ctx.store.observe([signal.observation()])
    log.info(
        "slack press queued",
        incident_id=press.incident_id,
        act=press.act,
        step=press.step,
        user_id=press.user_id,
    )
    if decided is not None:
        _later(ctx, _tell(ctx, press, decided))
    return "accepted"
