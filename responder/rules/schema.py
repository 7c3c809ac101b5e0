"""The rule-pack file format, strict: an unknown key is an error, not a silent no-op."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from responder.domain.plans import ActionSpec, ProbeSpec
from responder.domain.severity import ErrorType, Severity, SeverityLevel

_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
_CHANNEL = re.compile(r"^(slack:[#@]?[A-Za-z0-9_.-]+|statuspage|pagerduty|console)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _channels(value: tuple[str, ...]) -> tuple[str, ...]:
    for channel in value:
        if not _CHANNEL.match(channel):
            raise ValueError(
                f"unknown channel {channel!r}: use slack:<channel>, statuspage, pagerduty "
                "or console"
            )
    return value


class ErrorTypeCase(_Strict):
    match: str = Field(min_length=1, description="Regular expression over the value read.")
    type: ErrorType


class ErrorTypeFrom(_Strict):
    """Read the error type from a label or an annotation.

    ``label:<name>``: the label's value must match a case's regex in full (Alertmanager
    style). ``annotation:<name>``: a case's regex is searched in the annotation's text.
    A label named ``error_type`` may also carry the type itself: with no cases, the value
    is taken as the type when it is one.
    """

    source: str = Field(alias="from", pattern=r"^(label|annotation):[A-Za-z_][A-Za-z0-9_]*$")
    cases: tuple[ErrorTypeCase, ...] = ()
    default: ErrorType = ErrorType.UNKNOWN

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _error_type_kind(value: object) -> str:
    return "from" if isinstance(value, dict | ErrorTypeFrom) else "name"


# Either a type's name or a mapping: told apart up front, so that a mistake in one is
# reported once, not also as a failed attempt at the other.
ErrorTypeSpec = Annotated[
    Annotated[ErrorType, Tag("name")] | Annotated[ErrorTypeFrom, Tag("from")],
    Discriminator(_error_type_kind),
]


class Classify(_Strict):
    """What the rule says the alert is. The first matching rule that sets a field sets it,
    so a rule on facts placed first can raise the severity alone (see the PostHog pack)."""

    severity: Severity | None = None
    error_type: ErrorTypeSpec | None = None
    title: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _sets_something(self) -> Classify:
        if self.severity is None and self.error_type is None and self.title is None:
            raise ValueError("classify needs severity, error_type or title")
        return self


class Rule(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    match: tuple[str, ...] = ()
    when: tuple[str, ...] = ()
    classify: Classify | None = None
    probes: tuple[ProbeSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    notify: tuple[str, ...] = ()
    dry_run: bool | None = None
    page: bool = Field(
        False,
        description="Page the on-call through the PagerDuty Events API (unless the alert "
        "already pages through Alertmanager or the incident is linked to PagerDuty).",
    )
    continue_: bool = Field(False, alias="continue")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _check_notify = field_validator("notify")(_channels)

    @model_validator(mode="after")
    def _does_something(self) -> Rule:
        if not self.match and not self.when:
            raise ValueError("a rule needs `match` or `when` (or both): this one matches all")
        if not (self.classify or self.probes or self.actions or self.notify or self.page):
            raise ValueError("a rule needs at least one of classify, probes, actions, notify, page")
        return self


class Defaults(_Strict):
    group_by: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = (
        "alertname",
        "service",
    )
    dry_run: bool = True  # a new pack only says what it would do
    notify: tuple[str, ...] = ()
    probes: tuple[ProbeSpec, ...] = ()

    _check_notify = field_validator("notify")(_channels)


class PublicInfo(_Strict):
    """What the public status page may say of this pack's incidents, and nothing else: the
    external template sees these fields, the status and the times; never labels, hosts,
    logs or actions."""

    name: str = Field(
        "our service", min_length=1, max_length=100, description="What users call it."
    )
    impact: dict[str, str] = Field(
        default_factory=dict,
        description="What users may notice, by error type (or `default`).",
    )

    @field_validator("impact")
    @classmethod
    def _known_error_types(cls, value: dict[str, str]) -> dict[str, str]:
        known = {t.value for t in ErrorType} | {"default"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown error type {', '.join(unknown)}: use {', '.join(sorted(known))}"
            )
        return value

    def impact_of(self, error_type: str | None) -> str:
        return self.impact.get(error_type or "", "") or self.impact.get(
            "default", "problems with features that depend on it"
        )


# The labels an application's alerts usually carry its name in, by convention: the
# Prometheus job, the Kubernetes app, deployment or container, a service label.
SCOPE_LABELS = ("service", "app", "app_kubernetes_io_name", "deployment", "job", "container")


class Scope(_Strict):
    """Which alerts are the pack's own: an alert is when any one of these says so. Every
    rule of the pack sees only those; an alert in scope that no rule classifies gets its
    error type from what it says and its severity from the table (``rules.inference``)."""

    names: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        (),
        description="The integration's names: an alert whose label of `labels` holds one "
        "of them is in scope. Templates see the one found (else the first) as "
        "`integration`.",
    )
    labels: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ...] = SCOPE_LABELS
    any: tuple[str, ...] = Field(
        (), description="Matchers (`alertname=~...`, `annotations.summary=~...`): any one."
    )
    except_: tuple[str, ...] = Field(
        (),
        alias="except",
        description="Matchers: an alert `any` takes is not in scope when one of these "
        "matches (another service's alert that only mentions the integration).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _says_something(self) -> Scope:
        if not self.names and not self.any:
            raise ValueError("scope needs names (with labels) or any matchers")
        if self.names and not self.labels:
            raise ValueError("scope names need labels to be found in")
        return self


class Flapping(_Strict):
    """When a pack's alert flaps: it fired ``fires`` times within ``window_s``. Its
    incident then stays open across resolves (no new incident per flap), its thread
    quiet and its actions not repeated, until no alert fired for ``quiet_s``."""

    fires: int = Field(3, ge=2, le=50)
    window_s: float = Field(600.0, gt=0)
    quiet_s: float = Field(600.0, gt=0)


class Pack(_Strict):
    name: str = Field(pattern=_NAME)
    version: str = Field(min_length=1)
    description: str = ""
    scope: Scope | None = None
    defaults: Defaults = Defaults()
    severities: dict[Severity, SeverityLevel] = Field(default_factory=dict)
    public: PublicInfo = PublicInfo()
    flapping: Flapping = Flapping()
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value


SourceKind = Literal["label", "annotation"]
