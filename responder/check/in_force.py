"""The settings in force, secrets masked, as ``responder check`` prints them first, and the
summary (sinks, cluster, Prometheus, allowlist, dry-run) that ``serve``'s start banner
prints in the same words."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from responder.settings import ENV_PREFIX, Settings

MASK = "****"


def masked_url(url: str) -> str:
    """A URL with its password masked, the rest shown (where it points is no secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        # the Redis URL says where the store is: only its password is secret
        return masked_url(value.get_secret_value()) if name == "redis_url" else MASK
    if isinstance(value, list):
        return [_shown(name, v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(name, v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        # a URL that is not a secret setting can still carry a password (Prometheus's)
        return ",".join(masked_url(url) for url in value.split(","))
    return value


def settings_in_force(settings: Settings) -> dict[str, Any]:
    """Every setting that differs from its default, by its variable name, secrets masked:
    what this configuration chose (the defaults are in docs and ``--help``)."""
    shown: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        if value != default:
            shown[f"{ENV_PREFIX}{name.upper()}"] = _shown(name, value)
    return shown


def sinks(settings: Settings) -> str:
    found = []
    if settings.slack_token is not None:
        # the buttons need the signing secrets too: said here, so a team that expects
        # them sees at start-up why their messages have none
        buttons = (
            "buttons on" if settings.slack_signing_secrets else "no buttons: no signing secret"
        )
        found.append(f"slack (bot token, {buttons})")
    elif settings.slack_webhook_url is not None:
        found.append("slack (incoming webhook)")
    else:
        found.append("console (no Slack configured)")
    if settings.statuspage_page_id is not None:
        found.append(f"statuspage (page {settings.statuspage_page_id})")
    if settings.pagerduty_api_key is not None:
        found.append("pagerduty notes")
    if settings.pagerduty_routing_key is not None:
        found.append("pagerduty events")
    return ", ".join(found)


def summary(settings: Settings) -> dict[str, str]:
    """What is in force, in the words the serve banner and ``responder check`` share."""
    if settings.kubeconfig is not None:
        cluster = f"kubeconfig {settings.kubeconfig}"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):  # as adapters/kube.py finds one
        cluster = "in-cluster service account"
    else:
        cluster = "none"
    allowlist = settings.action_allowlist
    return {
        "sinks": sinks(settings),
        "cluster": cluster,
        "prometheus": ", ".join(masked_url(u) for u in settings.prometheus_urls) or "none",
        "allowlist": ", ".join(allowlist) if allowlist else "empty (no automatic action)",
        "dry-run": "on (actions are only recorded)" if settings.dry_run else "off",
    }


def summary_line(settings: Settings) -> str:
    return "  ".join(f"{key}: {value}" for key, value in summary(settings).items())
