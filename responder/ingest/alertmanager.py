"""Alertmanager webhook payloads (``version: "4"``), parsed leniently.

Alertmanager keeps adding fields (``notification_reason``, ``routeLabels``...), so unknown
fields are ignored; only what a signal cannot do without is required.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from responder.domain.signal import AlertSignal, AlertStatus, label_fingerprint

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

    def signals(self, *, received_at: datetime) -> list[AlertSignal]:
        out = []
        for alert in self.alerts:
            # model_construct: every field was validated above; validating again would
            # double the cost of the hot path for nothing.
            out.append(
                AlertSignal.model_construct(
                    fingerprint=alert.fingerprint or label_fingerprint(alert.labels),
                    status=alert.status,
                    labels=alert.labels,
                    annotations=alert.annotations,
                    starts_at=alert.starts_at,
                    ends_at=alert.ends_at if alert.status is AlertStatus.RESOLVED else None,
                    generator_url=alert.generator_url,
                    am_group_key=self.group_key,
                    receiver=self.receiver,
                    external_url=self.external_url,
                    received_at=received_at,
                )
            )
        return out
