"""Settings: every knob of the service, read once at start-up.

Sources, strongest first: explicit arguments, ``RESPONDER_*`` environment variables,
``RESPONDER_*_FILE`` variables naming a file that holds the value (Kubernetes secret mounts),
the YAML file named by ``RESPONDER_CONFIG``, then the defaults below. Secrets are
``SecretStr`` so that printing settings never shows them.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "RESPONDER_"
# What is stripped around a credential, configured or presented: str.strip() without
# arguments strips Unicode whitespace too, so " token\u00a0" would pass for "token".
ASCII_WHITESPACE = " \t\r\n"
# Settings that let a caller in: empty, they would let anyone in (an empty bearer token
# compares equal to an empty one) or pass the bind-safety check while checking nothing.
_CREDENTIALS = (
    "alertmanager_token",
    "alertmanager_username",
    "alertmanager_password",
    "admin_token",
    "read_token",
)


# Who a Slack grant names: a user (U…, or W… in an Enterprise Grid) or a user group (S…).
_SLACK_GRANTEE = re.compile(r"[UWS][A-Z0-9]{2,20}", re.ASCII)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# RESPONDER_* variables that are not settings: the CLI's --url and --token options read
# RESPONDER_URL (the read and admin tokens are settings too), and RESPONDER_CONFIG names
# the YAML file.
_NOT_SETTINGS = frozenset({"URL", "CONFIG"})


class ConfigError(ValueError):
    """The configuration cannot work; the message says what to change."""


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(environ: Mapping[str, str]) -> str | None:
    """The first ``RESPONDER_*`` variable that names no setting, with a did-you-mean: a
    typo (``RESPONDER_WOKERS``) would otherwise leave the default in force, silently."""
    fields = {name.upper() for name in Settings.model_fields}
    known = fields | {f"{name}_FILE" for name in fields} | _NOT_SETTINGS
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable.removeprefix(ENV_PREFIX)
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        return f"unknown variable {variable}: no such setting{hint}"
    return None


def explain(exc: ValidationError) -> str:
    """The first problem of a ``ValidationError`` as one line that names the variable
    (``RESPONDER_PORT``), or for a check spanning settings, every variable it names."""
    first = exc.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if first["loc"]:
        field = str(first["loc"][0])
        if first["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, list(Settings.model_fields), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            return f"unknown setting {field} (in {ENV_PREFIX}CONFIG){hint}"
        return f"invalid setting {env_name(field)}: {message}"
    # names with an underscore only: "triage" or "rules" in a sentence are words
    fields = "|".join(sorted((f for f in Settings.model_fields if "_" in f), key=len)[::-1])
    named = re.sub(rf"\b({fields})\b", lambda m: env_name(m.group(1)), message)
    return f"invalid settings: {named}"


def _read_config_file(path: str) -> None:
    """A malformed or non-mapping ``RESPONDER_CONFIG`` as a one-line ``ConfigError``: the
    YAML source would raise a parser traceback, or a ``TypeError`` for a list."""
    what = f"{ENV_PREFIX}CONFIG={path}"
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{what}: {where}{problem}") from None
    if doc is not None and not isinstance(doc, dict):
        raise ConfigError(
            f"{what}: a {type(doc).__name__} at the top; write a mapping of setting: value"
        )


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class FileSecretsSource(PydanticBaseSettingsSource):
    """``RESPONDER_<NAME>_FILE=/path`` reads the setting ``<name>`` from that file."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            # ASCII whitespace only (the file's newline): a U+00A0 is part of the value,
            # as it is of a presented credential (see ASCII_WHITESPACE)
            text = Path(path).read_text(encoding="utf-8").strip(ASCII_WHITESPACE)
        except OSError as exc:
            raise ConfigError(
                f"{ENV_PREFIX}{field_name.upper()}_FILE: cannot read {path}: {exc.strerror}"
            ) from None
        return text, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        # a model-wide error (settings that go together) would otherwise print every input,
        # secrets included: errors name the setting and say why, never echo the values
        hide_input_in_errors=True,
    )

    host: str = Field("127.0.0.1", description="Address to bind. Loopback by default.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL for state and the work queue; unset runs the embedded "
        "in-memory store and queue (one process, nothing survives a restart).",
    )
    redis_prefix: str = Field(
        "responder",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key, so several deployments can share one Redis.",
    )
    redis_timeout_s: float = Field(
        2.0, gt=0, description="Socket timeout for Redis calls; past it a webhook gets 503."
    )
    redis_sentinels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host:port of Redis Sentinels, instead of redis_url: the "
        "master named by redis_sentinel_master is asked of them, and found again after a "
        "failover. Database 0, plain TCP.",
    )
    redis_sentinel_master: str | None = Field(
        None, description="The master's name in the sentinels (`sentinel monitor <name>`)."
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the sentinels themselves, when they require one."
    )
    redis_password: SecretStr | None = Field(
        None,
        description="Password of the Redis servers behind redis_sentinels (with redis_url, "
        "the URL carries it).",
    )
    intake_durability: Literal["write", "replica", "fsync"] = Field(
        "write",
        description="What a webhook's 200 waits for: write, Redis executed the write; "
        "replica, a replica confirmed it too (WAIT), else 503; fsync, Redis runs with "
        "appendonly yes and appendfsync always (checked at start-up).",
    )
    intake_wait_timeout_ms: int = Field(
        500,
        ge=1,
        le=60_000,
        description="With intake_durability=replica, how long a webhook waits for a replica "
        "to confirm its signals before it gets 503. Below redis_timeout_s.",
    )
    intake_wait_replicas: Annotated[int, Field(ge=1, le=16)] | Literal["all"] = Field(
        1,
        description="With intake_durability=replica, how many replicas must confirm a write "
        "(WAIT <n>), or all: every replica the master has online (at least one). Sentinel "
        "promotes the replica whose offset it last read as highest, which may lag: with "
        "several replicas, all survives any promotion.",
    )
    intake_fsync_unchecked: bool = Field(
        False,
        description="With intake_durability=fsync and CONFIG GET refused (renamed, or not "
        "allowed to the user), start anyway: the operator vouches for appendfsync always.",
    )
    alertmanager_token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager must send (http_config.authorization)."
    )
    alertmanager_username: str | None = Field(
        None, description="Basic-auth user Alertmanager may send instead of a token."
    )
    alertmanager_password: SecretStr | None = Field(
        None, description="Basic-auth password that goes with alertmanager_username."
    )
    pagerduty_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated PagerDuty V3 webhook signing secrets; several during "
        "a rotation. Unset: PagerDuty webhooks are accepted unsigned only where "
        "unauthenticated intake is allowed.",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Allow intake without credentials on a non-loopback address. Off: the "
        "service refuses to start that way.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest webhook body accepted (413 above)."
    )
    pagerduty_max_body_bytes: int = Field(
        64 * 1024,
        gt=0,
        description="Largest PagerDuty webhook body accepted (413 above). A V3 event is a "
        "few KiB; the body is read before its signature can be checked.",
    )
    pagerduty_read_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Time a PagerDuty webhook's body may take to arrive (408 after it): a "
        "body trickled in byte by byte, unsigned, holds nothing for long.",
    )
    workers: int = Field(
        4, ge=0, le=256, description="Worker tasks per process; 0 runs intake only."
    )
    visibility_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long an entry may stay unacknowledged before another worker "
        "claims it (the worker that had it is presumed dead).",
    )
    batch_wait_s: float = Field(
        0.2,
        ge=0,
        le=5,
        description="The longest a worker waits for a batch to fill while signals keep "
        "coming (a batch costs the store about as much as one entry, so in an alert storm "
        "this multiplies throughput). It waits in quarter steps and stops at a step that "
        "brought nothing: a lone signal waits a quarter of it. 0 handles each at once.",
    )
    max_deliveries: int = Field(
        5,
        ge=1,
        description="Failed tries of one entry (handling errors, and deliveries to workers "
        "that died with it) before it goes to the dead-letter stream with its error. A store "
        "outage does not count.",
    )
    group_by: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["alertname", "service"],
        description="Alert labels whose values make the incident group, like Alertmanager's "
        "group_by, for alerts no rule pack claims (a pack's own group_by wins).",
    )
    rules: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: default_rules_paths(),
        description="Comma-separated rule pack files or directories (their *.yaml). Default: "
        "the packs shipped in rules/.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for /v1/admin/* (rule reload, pause, resume, ack); unset "
        "disables them. It reads the API too.",
    )
    read_token: SecretStr | None = Field(
        None,
        description="Bearer token for the read API (incidents, postmortems, evidence, "
        "automation, rules); the admin token works too. Unset: reads are open on a loopback "
        "address only, or where allow_unauthenticated_reads says so.",
    )
    allow_unauthenticated_reads: bool = Field(
        False,
        description="Allow the read API without a token on a non-loopback address (a trusted "
        "network). Off: there, reads need read_token or admin_token.",
    )
    dry_run: bool = Field(
        False, description="Force dry-run for every action, whatever the packs say."
    )
    action_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespace/deployment/action entries automatic actions may "
        "touch (shell wildcards allowed, e.g. production/posthog-integration/*). Empty: none.",
    )
    action_cooldown_s: float = Field(
        600.0, ge=0, description="After an action on a target, the same action waits this long."
    )
    action_budget: int = Field(
        5, ge=0, description="Automatic actions allowed in the budget window, all targets."
    )
    action_budget_window_s: float = Field(
        3600.0, gt=0, description="The sliding window of the action budget."
    )
    action_lock_ttl_s: float = Field(
        120.0, gt=0, description="How long a per-target lock holds if its holder dies."
    )
    approval_timeout_s: float = Field(
        900.0,
        gt=0,
        description="How long a step a rule says needs approval (`approval: required`, "
        "`when_unsure`) waits for a person's yes before it expires and the on-call is paged, "
        "unless the action says its own approval_timeout_s. 15 minutes: within the runbook's "
        "P1 response time, long enough to reach someone in Slack.",
    )
    prometheus_url: str | None = Field(
        None,
        description="Prometheus base URL for triage and verification queries; or several, "
        "comma-separated, tried in order (the runbook's backup metrics): the first that "
        "answers is used, and the triage facts say which.",
    )
    kubeconfig: Path | None = Field(
        None,
        description="kubeconfig for the cluster; unset: the in-cluster service account when "
        "running in a pod, else no cluster (pod logs unavailable, actions dry-run).",
    )
    triage: bool = Field(
        True,
        description="Run the rules' triage probes. Off: incidents are classified and "
        "followed, no probe is run (no outbound calls), no branch is chosen.",
    )
    triage_budget_s: float = Field(
        20.0, gt=0, le=300, description="Wall time one incident's probes get in all."
    )
    triage_cache_ttl_s: float = Field(
        120.0,
        ge=0,
        description="Facts younger than this are reused when more alerts join an incident.",
    )
    # Watching and reminding after the first response (responder/watch/)
    vendor_watch_interval_s: float = Field(
        120.0,
        gt=0,
        description="While an incident's facts show a vendor incident, its status page is "
        "read again this often (a Statuspage's public API is cached for about a minute).",
    )
    vendor_watch_max_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="The vendor is watched at most this long after the incident opened.",
    )
    update_interval_p1_s: float = Field(
        900.0, gt=0, description="A P1's promised update cadence: a reminder when none came."
    )
    update_interval_p2_s: float = Field(
        1800.0, gt=0, description="A P2's promised update cadence: a reminder when none came."
    )
    update_interval_p3_s: float = Field(
        3600.0, gt=0, description="A P3's promised update cadence: a reminder when none came."
    )
    update_interval_p4_s: float = Field(
        3600.0, gt=0, description="A P4's promised update cadence: a reminder when none came."
    )
    ack_repages: int = Field(
        2,
        ge=0,
        le=10,
        description="A P1 not acknowledged within its response time is paged; re-paged this "
        "many more times, one response time apart, while still not acknowledged.",
    )
    slack_token: SecretStr | None = Field(
        None,
        description="Slack bot token (xoxb-…, scope chat:write; channels:history, and "
        "channels:read for channels given by name, let it find a message it may have posted "
        "before a crash; files:write lets it put the error-rate graph in the thread on "
        "resolve, else the thread links the incident page). Set: root message per incident, "
        "thread replies, edits.",
    )
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL.")
    slack_webhook_url: SecretStr | None = Field(
        None,
        description="Slack incoming-webhook URL, for teams without a bot token: messages "
        "only, in the webhook's channel; no threads and no edits. Ignored when "
        "slack_token is set.",
    )
    slack_signing_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated signing secrets of the Slack app (Basic Information, "
        "Signing Secret); several during a rotation. Set: POST /v1/slack/interactions "
        "takes the presses of the incident messages' buttons, which the messages carry "
        "with a bot token only (Acknowledge, Pause automation, Approve, Reject); unset: "
        "no buttons (the messages say how to answer otherwise) and that route answers 404.",
    )
    slack_acknowledge_by: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Who may press Acknowledge: comma-separated Slack user ids (U…, W…) or "
        "user-group ids (S…, members looked up with the bot token, scope usergroups:read), "
        "or * for anyone who sees the message. Empty: nobody.",
    )
    slack_pause_by: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Who may press Pause automation and Resume automation (of one "
        "incident): user ids, user-group ids or *, as slack_acknowledge_by.",
    )
    slack_approve_by: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Who may press Approve and Reject of a step waiting for approval: user "
        "ids, user-group ids or *, as slack_acknowledge_by. Empty by default: an approval "
        "changes production, so who may give it is granted explicitly.",
    )
    slack_channel: str = Field(
        "#incidents",
        description="Channel for incidents whose rules name none (a rule's slack:<channel> "
        "wins; slack_channels wins over both). Channel ids (C…) work best.",
    )
    slack_channels: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Channel by severity, e.g. P1=#incidents-major,P2=#incidents.",
    )
    incident_commander: str | None = Field(
        None,
        description="Who the root message names as incident commander until a human "
        "acknowledges (e.g. @posthog-oncall).",
    )
    statuspage_api_key: SecretStr | None = Field(
        None, description="Statuspage management API key. Set with the page id: public incidents."
    )
    statuspage_page_id: str | None = Field(None, description="Statuspage page id.")
    statuspage_api_url: str = Field(
        "https://api.statuspage.io/v1", description="Statuspage management API base URL."
    )
    statuspage_severities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["P1", "P2"],
        description="Severities that open a public status page incident (a rule naming "
        "statuspage in notify adds its incidents).",
    )
    statuspage_components: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Statuspage component ids the incident affects.",
    )
    statuspage_component_status: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {
            "P1": "major_outage",
            "P2": "partial_outage",
            "P3": "degraded_performance",
            "P4": "degraded_performance",
        },
        description="Component status by severity, e.g. P1=major_outage,P2=partial_outage; "
        "operational again on resolve.",
    )
    pagerduty_api_key: SecretStr | None = Field(
        None,
        description="PagerDuty REST API key: notes (triage, actions, handoff) on linked "
        "PagerDuty incidents, and their acknowledgement when a person acknowledges in Slack "
        "or through the API. Needs pagerduty_from.",
    )
    pagerduty_from: str | None = Field(
        None, description="Email of a PagerDuty user, sent as From with REST calls."
    )
    pagerduty_api_url: str = Field(
        "https://api.pagerduty.com", description="PagerDuty REST API base URL (https only)."
    )
    pagerduty_events_url: str = Field(
        "https://events.pagerduty.com", description="PagerDuty Events API base URL (https only)."
    )
    pagerduty_routing_key: SecretStr | None = Field(
        None,
        description="Events API v2 integration key: rules with page: true trigger (and "
        "resolve) a PagerDuty alert with a stable dedup key.",
    )
    pagerduty_paged_label: str = Field(
        "paged",
        description="An alert with this label set to true already pages through "
        "Alertmanager: responder does not page again for it.",
    )
    templates_dir: Path | None = Field(
        None,
        description="Directory of message templates overriding the shipped ones (same "
        "file names); checked at start-up.",
    )
    reports_dir: Path | None = Field(
        None,
        description="Where the postmortem draft and the evidence bundle of each resolved "
        "incident are written (created when missing); unset: not written, the API and the "
        "CLI render them at any time.",
    )
    public_url: str | None = Field(
        None,
        description="The service's URL as people reach it (e.g. https://responder.example); "
        "set, the Slack thread links the postmortem through the API instead of a file path.",
    )
    ca_file: Path | None = Field(
        None,
        description="Extra CA bundle (PEM) trusted for outbound HTTPS to Slack, Statuspage "
        "and PagerDuty (a TLS-inspecting proxy, a test server).",
    )
    notify_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Time one outbound message may take."
    )
    notify_retry_base_s: float = Field(
        2.0, gt=0, description="First wait before trying a failing message again (doubles)."
    )
    notify_circuit_failures: int = Field(
        5, ge=1, description="Failures in a row that open a sink's circuit breaker."
    )
    notify_circuit_open_s: float = Field(
        30.0, gt=0, description="How long an open circuit leaves its sink alone (doubles)."
    )
    notify_retry_cap_s: float = Field(
        300.0, gt=0, description="Longest wait between two tries of a failing message."
    )
    notify_give_up_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="A message failing for this long is recorded as failed and dropped.",
    )
    retry_after_s: int = Field(
        5, ge=1, description="Retry-After sent with a 503 when the store is unreachable."
    )
    signal_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="How long a dedupe record lives after its last sighting.",
    )
    incident_retention_s: int = Field(
        90 * 24 * 3600,
        ge=60,
        description="Seconds a resolved incident is kept (its alerts, timeline, ledger and "
        "PagerDuty links with it) after its last change, then forgotten, on Redis and in "
        "memory. 90 days by default: a quarter's postmortems and trend reviews can still "
        "read it, and an estate's incidents stay a bounded set.",
    )
    max_new_incidents_per_minute: int = Field(
        30,
        ge=0,
        description="The most incidents one rule pack's alerts open within a minute (a "
        "sliding window, counted across replicas); beyond it each further group joins the "
        "pack's one 'alert storm' incident, P2 or worse, without triage or actions, and a "
        "human is told (responder_incidents_capped_total counts them). 0 turns the cap "
        "off. 30 by default: far above what a real outage opens in a pack (a handful of "
        "groups), low enough that one webhook of 1,000 groups opens 30 threads, not 1,000.",
    )
    queue_maxlen: int = Field(
        100_000,
        ge=1000,
        description="The most unhandled signals the queue holds: beyond it intake answers "
        "503 (the sender retries) and counts responder_intake_queue_full_total; an "
        "accepted signal is never dropped. Handled entries leave the queue at once.",
    )
    ready_max_queue_age_s: float = Field(
        300.0,
        ge=0,
        description="/readyz fails when the oldest unhandled signal is older than this "
        "(workers stuck or far behind); 0 turns the check off. Every replica shares the "
        "queue, so a failing check takes them all out of a Service: keep it well above "
        "what an alert storm's backlog takes to drain.",
    )
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: use {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # the URL may carry a password: the error names the scheme only
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in REDIS_SCHEMES:
            shown = f"the scheme {parts.scheme}://" if parts.scheme else "no scheme"
            raise ValueError(
                f"not a Redis URL ({shown}): write redis://[:password@]host:6379/0, "
                "rediss:// for TLS or unix:///path/redis.sock"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host: write redis://[:password@]host:6379/0")
        return value

    @field_validator("slack_api_url", "statuspage_api_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator(*_CREDENTIALS)
    @classmethod
    def _credential_not_empty(cls, value: object, info: ValidationInfo) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str):
            stripped = raw.strip(ASCII_WHITESPACE)
            if not stripped:
                raise ValueError(
                    "empty: an empty credential checks nothing; set a value or leave the "
                    "setting out"
                )
            if info.field_name != "alertmanager_password":  # a password may end in a space
                return SecretStr(stripped) if isinstance(value, SecretStr) else stripped
        return value

    @field_validator("pagerduty_webhook_secrets", "slack_signing_secrets", mode="before")
    @classmethod
    def _webhook_secrets(cls, value: object) -> object:
        """Comma-separated; an empty entry (or an empty value) is refused, not dropped."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list):
            return value
        found: list[object] = []
        for part in parts:
            raw = part.get_secret_value() if isinstance(part, SecretStr) else part
            if isinstance(raw, str):
                raw = raw.strip(ASCII_WHITESPACE)
                if not raw:
                    raise ValueError(
                        "empty, or an empty entry between commas: an empty signing secret "
                        "checks nothing; list the secrets, comma-separated"
                    )
            found.append(raw)
        return found

    @field_validator(
        "redis_sentinels",
        "group_by",
        "rules",
        "action_allowlist",
        "statuspage_severities",
        "statuspage_components",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("slack_acknowledge_by", "slack_pause_by", "slack_approve_by", mode="before")
    @classmethod
    def _slack_grants(cls, value: object) -> object:
        """Comma-separated Slack ids, or * alone; an empty value grants nobody."""
        parts = _split_commas(value)
        if not isinstance(parts, list):
            return value
        for part in parts:
            if not isinstance(part, str):
                continue
            if part == "*" and len(parts) > 1:
                raise ValueError("* already grants everyone: write * alone, or list ids")
            if part != "*" and _SLACK_GRANTEE.fullmatch(part) is None:
                raise ValueError(
                    f"{part!r} is not a Slack user id (U…, W…) or user-group id (S…): copy "
                    "it from the profile's or the group's menu, or write * for anyone"
                )
        return parts

    @field_validator("slack_channels", "statuspage_component_status", mode="before")
    @classmethod
    def _severity_map(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            found: dict[str, str] = {}
            for pair in pairs:
                key, sep, val = pair.partition("=")
                if not sep or not key.strip() or not val.strip():
                    raise ValueError(f"{pair!r}: write SEVERITY=value, e.g. P1=#incidents")
                found[key.strip()] = val.strip()
            return found
        return value

    @field_validator("slack_channels", "statuspage_component_status")
    @classmethod
    def _severities_known(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"P1", "P2", "P3", "P4"})
        if unknown:
            raise ValueError(f"unknown severity {', '.join(unknown)}: use P1, P2, P3, P4")
        return value

    @field_validator("statuspage_component_status")
    @classmethod
    def _component_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        known = {
            "operational",
            "degraded_performance",
            "partial_outage",
            "major_outage",
            "under_maintenance",
        }
        wrong = sorted(v for v in value.values() if v not in known)
        if wrong:
            raise ValueError(
                f"unknown component status {', '.join(wrong)}: use {', '.join(sorted(known))}"
            )
        return value

    @field_validator("statuspage_severities")
    @classmethod
    def _statuspage_severities(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"P1", "P2", "P3", "P4"})
        if unknown:
            raise ValueError(f"unknown severity {', '.join(unknown)}: use P1, P2, P3, P4")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_urls(cls, value: str | None) -> str | None:
        if value is None:
            return None
        urls = _split_commas(value)
        assert isinstance(urls, list)
        if not urls:
            raise ValueError("no URL: leave it unset, or name one or more, comma-separated")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return value

    @property
    def prometheus_urls(self) -> list[str]:
        """The Prometheus base URLs, in the order they are tried."""
        urls = _split_commas(self.prometheus_url or "")
        assert isinstance(urls, list)
        return [str(u) for u in urls]

    @field_validator("pagerduty_api_url", "pagerduty_events_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the PagerDuty client accepts https:// URLs only")
        return value

    @model_validator(mode="after")
    def _notification_pairs(self) -> Settings:
        if (self.statuspage_api_key is None) != (self.statuspage_page_id is None):
            raise ValueError(
                "statuspage_api_key and statuspage_page_id go together: set both or neither"
            )
        if self.pagerduty_api_key is not None and not self.pagerduty_from:
            raise ValueError(
                "pagerduty_api_key needs pagerduty_from (a PagerDuty user's email): "
                "PagerDuty refuses notes without it"
            )
        if self.templates_dir is not None and not self.templates_dir.is_dir():
            raise ValueError(f"templates_dir: no such directory: {self.templates_dir}")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file: no such file: {self.ca_file}")
        if self.kubeconfig is not None and not self.kubeconfig.is_file():
            raise ValueError(f"{env_name('kubeconfig')}: no such file: {self.kubeconfig}")
        return self

    @field_validator("group_by")
    @classmethod
    def _group_by_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("group_by needs at least one label name")
        return value

    @model_validator(mode="after")
    def _triage_within_visibility(self) -> Settings:
        if self.triage_budget_s >= self.visibility_timeout_s:
            raise ValueError(
                "triage_budget_s must be below visibility_timeout_s: otherwise another worker "
                "claims an entry while its triage still runs"
            )
        if self.batch_wait_s + self.triage_budget_s >= self.visibility_timeout_s:
            raise ValueError(
                "batch_wait_s plus triage_budget_s must be below visibility_timeout_s: an "
                "entry stays unacknowledged while its batch fills and its triage runs, and "
                "past the timeout another worker claims it"
            )
        return self

    @model_validator(mode="after")
    def _basic_auth_pairs(self) -> Settings:
        if (self.alertmanager_username is None) != (self.alertmanager_password is None):
            raise ValueError(
                "alertmanager_username and alertmanager_password go together: set both or neither"
            )
        return self

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_host_port(entry)
        return value

    @model_validator(mode="after")
    def _redis_choice(self) -> Settings:
        if bool(self.redis_sentinels) != (self.redis_sentinel_master is not None):
            raise ValueError(
                "redis_sentinels and redis_sentinel_master go together: set both or neither"
            )
        if self.redis_sentinels and self.redis_url is not None:
            raise ValueError(
                "redis_url and redis_sentinels exclude each other: set one (with sentinels, "
                "the master's address comes from them)"
            )
        if not self.redis_sentinels and (
            self.redis_password is not None or self.redis_sentinel_password is not None
        ):
            raise ValueError(
                "redis_password and redis_sentinel_password go with redis_sentinels; with "
                "redis_url, the URL carries the password"
            )
        if self.intake_durability != "write" and not self.uses_redis:
            raise ValueError(
                f"intake_durability={self.intake_durability} needs Redis (redis_url or "
                "redis_sentinels): the embedded store keeps nothing past its process"
            )
        replica = self.intake_durability == "replica"
        if replica and self.intake_wait_timeout_ms >= self.redis_timeout_s * 1000:
            raise ValueError(
                "intake_wait_timeout_ms must be below redis_timeout_s: the socket timeout "
                "would cut the wait for a replica short"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        unknown = unknown_variables(os.environ)
        if unknown:
            raise ConfigError(unknown)
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            FileSecretsSource(settings_cls),
        ]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigError(f"{ENV_PREFIX}CONFIG: no such file: {config_file}")
            _read_config_file(config_file)
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def intake_has_credentials(self) -> bool:
        return self.alertmanager_token is not None or self.alertmanager_username is not None

    @property
    def uses_redis(self) -> bool:
        """Redis (by URL or through sentinels) rather than the embedded store."""
        return self.redis_url is not None or bool(self.redis_sentinels)

    def update_intervals_s(self) -> dict[str, float]:
        """The promised update cadence by severity (the Slack root's "Next update")."""
        return {
            "P1": self.update_interval_p1_s,
            "P2": self.update_interval_p2_s,
            "P3": self.update_interval_p3_s,
            "P4": self.update_interval_p4_s,
        }

    def redis_address(self) -> str:
        """Where Redis is, for messages: host:port (or the socket, or the sentinels), never
        the password the URL may carry."""
        if self.redis_sentinels:
            return f"{self.redis_sentinel_master} via sentinels {', '.join(self.redis_sentinels)}"
        if self.redis_url is None:
            return "the embedded store"
        parts = urlsplit(self.redis_url.get_secret_value())
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{parts.port or 6379}"

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry) for entry in self.redis_sentinels]

    def secret_values(self) -> list[str]:
        """Every configured secret, for redaction of logs and error messages."""
        values = [
            s.get_secret_value()
            for s in (
                self.alertmanager_token,
                self.alertmanager_password,
                self.admin_token,
                self.read_token,
                self.slack_token,
                self.slack_webhook_url,
                self.statuspage_api_key,
                self.pagerduty_api_key,
                self.pagerduty_routing_key,
                self.redis_password,
                self.redis_sentinel_password,
            )
            if s is not None
        ]
        values += [s.get_secret_value() for s in self.pagerduty_webhook_secrets]
        values += [s.get_secret_value() for s in self.slack_signing_secrets]
        if self.redis_url is not None:
            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                values.append(password)
        return [v for v in values if v]

    def reads_need_token(self, host: str) -> bool:
        """Whether the read API asks for a token on ``host``: always once a read token is
        configured; without one, only off loopback and without the explicit opt-in (as
        ``check_bind`` decides for the intake)."""
        if self.read_token is not None:
            return True
        return not (self.allow_unauthenticated_reads or is_loopback(host))

    def check_bind(self, host: str) -> None:
        """Refuse an open intake on a non-loopback address unless explicitly allowed."""
        if self.intake_has_credentials or self.allow_unauthenticated or is_loopback(host):
            return
        raise ConfigError(
            f"refusing to listen on {host} without credentials: set "
            f"{ENV_PREFIX}ALERTMANAGER_TOKEN (or _USERNAME/_PASSWORD), or "
            f"{ENV_PREFIX}ALLOW_UNAUTHENTICATED=true if the network is trusted"
        )


def default_rules_paths() -> list[Path]:
    """The ``rules/`` directory shipped beside the package (a checkout, or the image)."""
    shipped = Path(__file__).resolve().parents[1] / "rules"
    return [shipped] if shipped.is_dir() else []


def parse_host_port(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too), or ``ValueError`` saying how to write it."""
    host, sep, port = entry.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r}: write host:port, e.g. redis-sentinel:26379")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
