"""Requests as Slack's interactivity sends them: the form body (``payload=<JSON>``) and its
v0 signature headers, for tests of ``POST /v1/slack/interactions``.

The signature is slack-sdk's own (``SignatureVerifier.generate_signature``), so a test
signs exactly as the route verifies and as Slack documents it: ``v0=`` and the hex
HMAC-SHA256 of ``v0:<timestamp>:<body>`` under the app's signing secret.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"


def form_body(payload: dict[str, Any]) -> bytes:
    """The body Slack posts: one form field, ``payload``, holding the interaction's JSON."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Content-Type, X-Slack-Request-Timestamp and X-Slack-Signature for ``body`` signed
    with ``secret`` at ``timestamp`` (epoch seconds)."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }


def button_press(
    *,
    action_id: str,
    incident: str,
    step: str | None = None,
    user_id: str = "U0000000001",
    username: str = "jane",
    channel: str = "C0000000001",
    trigger_id: str = "1337.42.abcdef",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it for a press of one of our buttons."""
    value: dict[str, Any] = {"incident": incident}
    if step is not None:
        value["step"] = step
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": username, "name": username, "team_id": "T0000000001"},
        "api_app_id": "A0000000001",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": "T0000000001", "domain": "example"},
        "channel": {"id": channel, "name": "incidents"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "incident"},
        "response_url": "https://hooks.slack.com/actions/T0000000001/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "incident-actions",
                "value": json.dumps(value),
                "type": "button",
                "action_ts": "1700000001.000200",
            }
        ],
    }


def signed_press(
    *, secret: str, user_id: str, username: str, **press: Any
) -> tuple[bytes, dict[str, str]]:
    """A press (``button_press``'s fields) signed with ``secret`` now, by the wall clock a
    ``responder serve`` process checks it by; its trigger id its own, so that two presses
    are never one request replayed."""
    body = form_body(
        button_press(
            user_id=user_id,
            username=username,
            trigger_id=f"{uuid.uuid4().int % 10**12}.{user_id}",
            **press,
        )
    )
    return body, signed_headers(secret, body, int(time.time()))
