"""Alertmanager webhook payloads (``version: "4"``), parsed leniently.

Alertmanager keeps adding fields (``notification_reason``, ``routeLabels``...), so unknown
fields are ignored; only what a signal cannot do without is required.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from responder.domain.signal import (
    AlertSignal,
    AlertStatus,
    Observation,
    alertmanager_dedupe_key,
    label_fingerprint,
    occurrence_ms,
)

# An alert's incident group from its fingerprint, labels and annotations.
GroupOf = Callable[[str, dict[str, str], dict[str, str]], str]

# Alertmanager marks "not resolved yet" with Go's zero time.
_GO_ZERO_YEAR = 1


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class AlertmanagerAlert(_Lenient):
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(None, alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("ends_at", "starts_at")
    @classmethod
    def _zero_time_is_none(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.year <= _GO_ZERO_YEAR:
            return None
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class AlertmanagerWebhook(_Lenient):
    """The body Alertmanager's webhook receiver posts."""

    version: Literal["4"]
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: AlertStatus | None = None
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[AlertmanagerAlert]

    def observations(
        self, *, received_at: datetime, group_of: GroupOf | None = None
    ) -> list[Observation]:
        """``[Observation.of(s) for s in self.signals(...)]``, made straight from the parsed
        alerts: the hot path of intake. Building each ``AlertSignal`` only to serialise it
        cost 2-3 µs of a webhook's ~60 µs of CPU (bench/intake.py's load, intake alone);
        the payload is the same JSON document, which tests/test_intake_observations.py
        holds to ``signals()``. ``group_of`` names each alert's incident group, the key
        its signals are ordered by."""
        out = []
        for alert in self.alerts:
            fingerprint = alert.fingerprint or label_fingerprint(alert.labels)
            resolved = alert.status is AlertStatus.RESOLVED
            payload = orjson.dumps(
                {
                    "source": "alertmanager",
                    "fingerprint": fingerprint,
                    "status": alert.status,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at if resolved else None,
                    "generator_url": alert.generator_url,
                    "am_group_key": self.group_key,
                    "receiver": self.receiver,
                    "external_url": self.external_url,
                    "received_at": received_at,
                }
            )
            out.append(
                Observation(
                    dedupe_key=alertmanager_dedupe_key(fingerprint),
                    dedupe_status=alert.status.value,
                    order_ms=occurrence_ms(alert.starts_at),
                    payload=payload,
                    order_key=(
                        group_of(fingerprint, alert.labels, alert.annotations)
                        if group_of is not None
                        else None
                    ),
                )
            )
        return out

    def signals(self, *, received_at: datetime) -> list[AlertSignal]:
        """The webhook's signals, one per alert: what ``observations`` must serialise."""
        out = []
        for alert in self.alerts:
            out.append(
                AlertSignal.model_validate(
                    {
                        "fingerprint": alert.fingerprint or label_fingerprint(alert.labels),
                        "status": alert.status,
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "starts_at": alert.starts_at,
                        "ends_at": alert.ends_at if alert.status is AlertStatus.RESOLVED else None,
                        "generator_url": alert.generator_url,
                        "am_group_key": self.group_key,
                        "receiver": self.receiver,
                        "external_url": self.external_url,
                        "received_at": received_at,
                    }
                )
            )
        return out
