"""Intake's fast path (``AlertmanagerWebhook.observations``) hands the store exactly what
the signals themselves would: the same dedupe key, status and occurrence, and a queue
payload the workers read back as the very same ``AlertSignal``."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from responder.domain.signal import SIGNAL_ADAPTER, Observation
from responder.ingest.alertmanager import AlertmanagerWebhook

EXAMPLES = sorted(
    (Path(__file__).resolve().parents[1] / "examples" / "alertmanager").glob("*.json")
)
RECEIVED = datetime(2026, 11, 29, 3, 41, 26, 123456, tzinfo=UTC)


def variants() -> list[tuple[str, dict[str, Any]]]:
    """Every example, and the shapes Alertmanager sends that they do not show."""
    found = [(p.name, json.loads(p.read_text())) for p in EXAMPLES]
    base = found[0][1]

    def changed(name: str, **alert: Any) -> tuple[str, dict[str, Any]]:
        payload = copy.deepcopy(base)
        payload["alerts"][0].update(alert)
        payload["alerts"][0] = {k: v for k, v in payload["alerts"][0].items() if v is not None}
        return name, payload

    found += [
        changed("no fingerprint", fingerprint=None),
        changed("no startsAt", startsAt=None),
        changed("zero endsAt, resolved", status="resolved", endsAt="0001-01-01T00:00:00Z"),
        changed("ends while firing", endsAt="2026-11-29T04:00:00Z"),
        changed("naive times", startsAt="2026-11-29T03:02:11.482", endsAt=None),
        changed("non-ASCII", labels={"alertname": "Düsseldorf ☃", "service": 'a"b\\c'}),
    ]
    many = copy.deepcopy(base)
    many["alerts"] = [dict(base["alerts"][0], fingerprint=f"{i:016x}") for i in range(3)]
    found.append(("three alerts", many))
    return found


@pytest.mark.parametrize(("name", "payload"), variants(), ids=[n for n, _ in variants()])
def test_observations_are_the_signals_as_the_store_sees_them(
    name: str, payload: dict[str, Any]
) -> None:
    webhook = AlertmanagerWebhook.model_validate_json(json.dumps(payload))
    signals = webhook.signals(received_at=RECEIVED)
    observed = webhook.observations(received_at=RECEIVED)
    assert len(observed) == len(signals) == len(payload["alerts"])
    for seen, signal in zip(observed, signals, strict=True):
        reference = Observation.of(signal)
        assert (seen.dedupe_key, seen.dedupe_status, seen.order_ms) == (
            reference.dedupe_key,
            reference.dedupe_status,
            reference.order_ms,
        )
        assert SIGNAL_ADAPTER.validate_json(seen.payload) == signal
        assert json.loads(seen.payload).keys() == json.loads(reference.payload).keys()
