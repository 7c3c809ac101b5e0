"""What rules can ask for: triage probes and mitigation actions, each with typed parameters.

These are the parameter models; ``responder.triage`` and ``responder.mitigate`` execute
them. They are validated when a rule pack loads, so a typo in a pack is an error at start-up
rather than at 03:00. String parameters may be templates over the alert (``{{ labels.x }}``);
the rule engine fills them in when it plans the probe or action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from responder.domain.facts import FACT_NAMESPACES
from responder.domain.model import Frozen
from responder.domain.names import allow_hosts_problem, derive_allow_hosts

NonEmpty = Annotated[str, Field(min_length=1)]


# ------------------------------------------------------------------------------- probes
#
# What each probe yields: ``YIELDS`` names the facts of its result (under its namespace,
# ``responder.domain.facts.FACT_NAMESPACES``: ``vendor.incident``, ``health.ok``...), each
# with what it holds. ``facts()`` is what the rule lint (``responder.rules.lint``) checks
# ``when`` conditions against; ``tests/test_rules_lint.py`` runs every probe adapter and
# holds the keys of its results to this declaration, so the two cannot drift apart.

# A probe that fails or runs out of time leaves only this fact (``merge_facts``).
ERROR_FACT = "error"


class _Probe(Frozen):
    YIELDS: ClassVar[Mapping[str, str]] = {}
    # facts whose value may be a mapping, so that a condition may read into it
    # (``prometheus.errors_by_status_code.429``)
    NESTED: ClassVar[frozenset[str]] = frozenset()
    # facts a failed probe leaves beside its error, saying how it failed (the runbook's
    # error-handling rows, ``responder.triage.troubles``), never one a working probe yields
    FAILURE_FACTS: ClassVar[frozenset[str]] = frozenset()

    type: str

    def facts(self) -> dict[str, bool]:
        """Every fact this probe may yield, dotted (``health.ok``), each with whether its
        value may be a mapping a condition reads into."""
        space = FACT_NAMESPACES.get(self.type, self.type)
        names = {**self.YIELDS, ERROR_FACT: "why the probe failed (its only fact then)"}
        return {f"{space}.{name}": name in self.NESTED for name in names}


class _UrlProbe(_Probe):
    """A probe that requests a URL. The URL may be a template over the alert, so where it
    may go is said apart from it: ``allow_hosts`` (by default the template's fixed part),
    checked when the probe is planned and again before the request, on every redirect."""

    url: NonEmpty
    allow_hosts: tuple[str, ...] = Field(
        (),
        description="Hosts the URL may reach: `host` or `host:port` (no port: the scheme's), "
        "`*` within one DNS label (`*.prod.svc.cluster.local`). Default: the URL's fixed "
        "part, each label with a template in it a `*`; a literal URL allows its own host.",
    )
    follow_redirects: bool = Field(
        False, description="Follow up to 3 redirects, each to a host allow_hosts names."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_allow_hosts(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("allow_hosts"):
            url = data.get("url")
            if isinstance(url, str) and url:
                try:
                    return {**data, "allow_hosts": derive_allow_hosts(url)}
                except ValueError:
                    # the fixed part names no host: none is allowed until the pack says
                    # (planning says why); the pack still loads, as before
                    return data
        return data

    @field_validator("allow_hosts")
    @classmethod
    def _host_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            problem = allow_hosts_problem(entry)
            if problem:
                raise ValueError(problem)
        return value


class VendorStatusProbe(_UrlProbe):
    """An Atlassian Statuspage's public JSON API (the vendor's status page)."""

    YIELDS: ClassVar[Mapping[str, str]] = {
        "incident": "true when an open incident or an outage touches the components",
        "indicator": "the page's overall indicator: none, minor, major, critical",
        "description": "the page's overall status text",
        "incidents": "the open incidents: name, status, impact, url",
        "components_affected": "the components not operational: name, status",
        "reachable": "false when the page could not be reached (with error)",
    }
    FAILURE_FACTS: ClassVar[frozenset[str]] = frozenset({"reachable"})

    type: Literal["vendor_status"]
    url: NonEmpty = Field(
        description="Base URL of the status page, e.g. https://status.posthog.com"
    )
    components: tuple[str, ...] = Field((), description="Only these components count.")
    timeout_s: float = Field(5.0, gt=0, le=60)


class HealthProbe(_UrlProbe):
    """Our integration's health endpoint, read at a JSON path."""

    YIELDS: ClassVar[Mapping[str, str]] = {
        "ok": "true when the value is an ok value and the answer a 2xx",
        "status": "ok, degraded or down (down when unreachable)",
        "value": "the value read at json_path",
        "status_code": "the HTTP status of the answer",
        "latency_ms": "how long the answer took",
        "reachable": "false when the endpoint could not be reached",
    }
    NESTED: ClassVar[frozenset[str]] = frozenset({"value"})

    type: Literal["health"]
    json_path: NonEmpty = Field(
        ".status", description="jq-like path, e.g. .services.posthog.status"
    )
    ok_values: tuple[str, ...] = ("ok", "healthy", "up", "pass")
    degraded_values: tuple[str, ...] = ("degraded", "warn", "warning")
    timeout_s: float = Field(5.0, gt=0, le=60)


# h4 (triage): the `http` probe, for the runbook's "Check rate limit headers".
class HttpProbe(_UrlProbe):
    """A URL's answer: its status and the response headers named (``curl -v URL | grep -i
    rate``). Only the headers named are kept: an answer's others (cookies) are not ours."""

    YIELDS: ClassVar[Mapping[str, str]] = {
        "status_code": "the HTTP status of the answer",
        "headers": "the headers named that the answer had: lowercased name → value",
        "rate_limit": "the rate limit's figures read from them (numbers, null when not "
        "given): limit, remaining, reset (X-RateLimit-*), retry_after_s (Retry-After)",
    }
    NESTED: ClassVar[frozenset[str]] = frozenset({"headers", "rate_limit"})

    type: Literal["http"]
    record_headers: tuple[NonEmpty, ...] = Field(
        ("X-RateLimit-*", "Retry-After"),
        min_length=1,
        description="Response headers to keep, case-insensitive; `*` matches any run of "
        "characters (`X-RateLimit-*`).",
    )
    timeout_s: float = Field(5.0, gt=0, le=60)


# h4 (triage): which of RESPONDER_PROMETHEUS_URL's Prometheus servers answered.
ANSWERED_BY = "answered_by"
BACKUP = "backup"
REACHABLE = "reachable"  # false: no Prometheus answered (metrics down), with error


class PrometheusProbe(_Probe):
    """Instant queries; each result becomes the fact ``prometheus.<name>``: a number, a
    mapping by label values for several series, or null for no data. Besides them,
    ``prometheus.answered_by`` (the URL that answered) and ``prometheus.backup`` (true when
    it is not the first of RESPONDER_PROMETHEUS_URL's)."""

    FAILURE_FACTS: ClassVar[frozenset[str]] = frozenset({REACHABLE})

    type: Literal["prometheus"]
    queries: dict[NonEmpty, NonEmpty] = Field(min_length=1)
    timeout_s: float = Field(5.0, gt=0, le=60)

    @field_validator("queries")
    @classmethod
    def _names_free(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted({ANSWERED_BY, BACKUP, REACHABLE, ERROR_FACT} & set(value))
        if taken:
            raise ValueError(f"query name {taken[0]!r} is the probe's own fact: rename it")
        return value

    def facts(self) -> dict[str, bool]:
        return {
            **{f"prometheus.{name}": True for name in self.queries},
            f"prometheus.{ANSWERED_BY}": False,
            f"prometheus.{BACKUP}": False,
            f"prometheus.{REACHABLE}": False,
            f"prometheus.{ERROR_FACT}": False,
        }


class PodLogsProbe(_Probe):
    """Recent lines matching a pattern from the pods of a label selector."""

    YIELDS: ClassVar[Mapping[str, str]] = {
        "pods": "how many pods the selector found",
        "pods_with_matches": "how many of them had matching lines",
        "matching_lines": "how many matching lines were kept",
        "pods_gone": "how many of the pods listed were gone when their log was read "
        "(replaced by a rollout: a fact, not a failure)",
        "access": "auth_failed (401: credentials expired) or permission_denied (403) when "
        "the cluster refused us (with error)",
    }
    FAILURE_FACTS: ClassVar[frozenset[str]] = frozenset({"access"})

    type: Literal["pod_logs"]
    namespace: NonEmpty
    selector: NonEmpty = Field(description="Label selector, e.g. app=posthog-integration")
    container: str | None = Field(
        None,
        description="Default: the pod's kubectl.kubernetes.io/default-container, else each "
        "container.",
    )
    since_s: int = Field(300, ge=1, le=86400)
    pattern: NonEmpty = Field("(?i)error", description="Regular expression a line must contain.")
    tail_lines: int = Field(20, ge=1, le=1000)
    timeout_s: float = Field(10.0, gt=0, le=120)


ProbeSpec = Annotated[
    VendorStatusProbe | HealthProbe | HttpProbe | PrometheusProbe | PodLogsProbe,
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


# Whether a step waits for a person's yes before it runs: ``none`` (the pre-approval of
# the rule and the allowlist is enough), ``required`` (always), ``when_unsure`` (only when
# the action's own precondition check cannot confirm the step would help: allowed only on
# an action that has one, ``PRECONDITION``).
ApprovalMode = Literal["none", "required", "when_unsure"]


class _DeploymentAction(_Action):
    # whether the action checks its own precondition on the target before it goes ahead
    # (``restart_if_secret_rotated``): what ``approval: when_unsure`` asks about
    PRECONDITION: ClassVar[bool] = False

    namespace: NonEmpty
    deployment: NonEmpty
    approval: ApprovalMode = Field(
        "none",
        description="none: runs when the guards agree; required: waits for a person's "
        "approval (Slack or the admin API) first; when_unsure: only when the action's own "
        "check cannot confirm it would help (restart_if_secret_rotated: the Secret not "
        "visibly rotated after the pods started).",
    )
    approval_timeout_s: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="How long an approval waits before it expires and a human is paged. "
        "Default: RESPONDER_APPROVAL_TIMEOUT_S.",
    )

    @model_validator(mode="after")
    def _unsure_needs_a_check(self) -> _DeploymentAction:
        if self.approval == "when_unsure" and not self.PRECONDITION:
            raise ValueError(
                f"approval: when_unsure needs an action that checks its own precondition "
                f"(restart_if_secret_rotated); {getattr(self, 'type', '?')} has none: say "
                "`required` or `none`"
            )
        return self


# When an applied, reversible action is undone: when the incident resolves; when the
# vendor's incident is over and the action's ``verify`` query has stayed in bounds for a
# quiet period (a fallback switched off while the vendor is still down brings the errors
# back); or never by the automation (a human undoes it; the undo is shown at resolve).
RevertWhen = Literal["resolve", "vendor_resolved", "never"]
REVERT_CHECKS = 3  # quiet periods a vendor_resolved revert waits, at most, then a human


class _RevertibleAction(_DeploymentAction):
    """A Deployment change that can be undone, and when it is. ``revert`` is the policy;
    ``revert_on_resolve`` (the older spelling) still works: true is ``resolve``, false
    ``never``. After validation both are set and agree."""

    revert: RevertWhen = Field(
        "never",
        description="When the automation undoes it: resolve, vendor_resolved (the vendor's "
        "incident over, then `verify` in bounds after `revert_quiet_s`) or never (a human "
        "does; the undo is shown). Default: from revert_on_resolve.",
    )
    revert_on_resolve: bool = False
    revert_quiet_s: float = Field(
        600.0,
        ge=0,
        le=86400,
        description="vendor_resolved: how long after the vendor's incident is over (and "
        "between later checks) the verify query is read before the revert.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_policy(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        on_resolve = data.get("revert_on_resolve")
        if "revert" in data and data["revert"] is not None:
            wanted = data["revert"]
            if on_resolve is not None and bool(on_resolve) != (wanted == "resolve"):
                raise ValueError(
                    f"revert_on_resolve: {str(bool(on_resolve)).lower()} contradicts "
                    f"revert: {wanted}; say only `revert`"
                )
            return {**data, "revert_on_resolve": wanted == "resolve"}
        if on_resolve is None:
            on_resolve = cls.model_fields["revert_on_resolve"].default
        return {**data, "revert": "resolve" if on_resolve else "never"}


class SetEnv(_RevertibleAction):
    """What ``kubectl set env deployment/D NAME=value`` does."""

    type: Literal["set_env"]
    container: str | None = Field(
        None,
        description="Default: the pod template's kubectl.kubernetes.io/default-container, "
        "else every container (as kubectl set env); never one by position.",
    )
    env: dict[NonEmpty, str] = Field(min_length=1)
    revert_on_resolve: bool = True


class UnsetEnv(_RevertibleAction):
    type: Literal["unset_env"]
    container: str | None = Field(None, description="Chosen as set_env's.")
    names: tuple[NonEmpty, ...] = Field(min_length=1)
    revert_on_resolve: bool = False


class RolloutRestart(_DeploymentAction):
    """What ``kubectl rollout restart deployment/D`` does."""

    type: Literal["rollout_restart"]


class Scale(_RevertibleAction):
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

    PRECONDITION: ClassVar[bool] = True

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
