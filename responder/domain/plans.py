"""What rules can ask for: triage probes and mitigation actions, each with typed parameters.

These are the parameter models; ``responder.triage`` and ``responder.mitigate`` execute
them. They are validated when a rule pack loads, so a typo in a pack is an error at start-up
rather than at 03:00. String parameters may be templates over the alert (``{{ labels.x }}``);
the rule engine fills them in when it plans the probe or action.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from responder.domain.model import Frozen

NonEmpty = Annotated[str, Field(min_length=1)]


# ------------------------------------------------------------------------------- probes


class VendorStatusProbe(Frozen):
    """An Atlassian Statuspage's public JSON API (the vendor's status page)."""

    type: Literal["vendor_status"]
    url: NonEmpty = Field(
        description="Base URL of the status page, e.g. https://status.posthog.com"
    )
    components: tuple[str, ...] = Field((), description="Only these components count.")
    timeout_s: float = Field(5.0, gt=0, le=60)


class HealthProbe(Frozen):
    """Our integration's health endpoint, read at a JSON path."""

    type: Literal["health"]
    url: NonEmpty
    json_path: NonEmpty = Field(
        ".status", description="jq-like path, e.g. .services.posthog.status"
    )
    ok_values: tuple[str, ...] = ("ok", "healthy", "up", "pass")
    degraded_values: tuple[str, ...] = ("degraded", "warn", "warning")
    timeout_s: float = Field(5.0, gt=0, le=60)


class PrometheusProbe(Frozen):
    """Instant queries; each result becomes the fact ``prometheus.<name>``."""

    type: Literal["prometheus"]
    queries: dict[NonEmpty, NonEmpty] = Field(min_length=1)
    timeout_s: float = Field(5.0, gt=0, le=60)


class PodLogsProbe(Frozen):
    """Recent lines matching a pattern from the pods of a label selector."""

    type: Literal["pod_logs"]
    namespace: NonEmpty
    selector: NonEmpty = Field(description="Label selector, e.g. app=posthog-integration")
    container: str | None = None
    since_s: int = Field(300, ge=1, le=86400)
    pattern: NonEmpty = Field("(?i)error", description="Regular expression a line must contain.")
    tail_lines: int = Field(20, ge=1, le=1000)
    timeout_s: float = Field(10.0, gt=0, le=120)


ProbeSpec = Annotated[
    VendorStatusProbe | HealthProbe | PrometheusProbe | PodLogsProbe,
    Field(discriminator="type"),
]


# ------------------------------------------------------------------------------ actions


class Verify(Frozen):
    """After the settle time, the action helped when this query's value is in bounds."""

    query: NonEmpty
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Verify:
        if self.below is None and self.above is None:
            raise ValueError("verify needs `below` or `above`")
        return self


class _Action(Frozen):
    dry_run: bool | None = Field(None, description="Overrides the rule's and the pack's.")
    settle_s: float = Field(60.0, ge=0, le=3600, description="Wait before verifying.")
    verify: Verify | None = None
    revert_if_unhelpful: bool = False


class _DeploymentAction(_Action):
    namespace: NonEmpty
    deployment: NonEmpty


class SetEnv(_DeploymentAction):
    """What ``kubectl set env deployment/D NAME=value`` does."""

    type: Literal["set_env"]
    container: str | None = Field(None, description="Default: the first container.")
    env: dict[NonEmpty, str] = Field(min_length=1)
    revert_on_resolve: bool = True


class UnsetEnv(_DeploymentAction):
    type: Literal["unset_env"]
    container: str | None = None
    names: tuple[NonEmpty, ...] = Field(min_length=1)
    revert_on_resolve: bool = False


class RolloutRestart(_DeploymentAction):
    """What ``kubectl rollout restart deployment/D`` does."""

    type: Literal["rollout_restart"]


class Scale(_DeploymentAction):
    type: Literal["scale"]
    replicas: int = Field(ge=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(10, ge=1)
    revert_on_resolve: bool = True

    @model_validator(mode="after")
    def _within_bounds(self) -> Scale:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas {self.replicas} is outside [{self.min_replicas}, {self.max_replicas}]"
            )
        return self


class RestartIfSecretRotated(_DeploymentAction):
    """Restart only when the Secret changed after the oldest running pod started."""

    type: Literal["restart_if_secret_rotated"]
    secret: NonEmpty


class PageHuman(_Action):
    """No cluster change: the incident needs a human now."""

    type: Literal["page_human"]
    reason: NonEmpty


ActionSpec = Annotated[
    SetEnv | UnsetEnv | RolloutRestart | Scale | RestartIfSecretRotated | PageHuman,
    Field(discriminator="type"),
]
