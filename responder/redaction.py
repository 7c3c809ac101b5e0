"""Blanking out secrets in text that leaves the service (logs, timelines, evidence).

Two nets: the values of every configured secret, and patterns of credentials that turn up
in application logs (bearer tokens, API keys of well-known shapes, ``password=...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Shapes of credentials commonly printed by applications. Each pattern's first group, if
# any, is kept (the key name), the rest is replaced.
_PATTERNS = [
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|token|secret|password|passwd|pwd|authorization)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{4,}"
    ),
    re.compile(r"\b(?:phc|phx|sk|pk|rk)_[A-Za-z0-9]{16,}\b"),  # PostHog and similar keys
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),  # Slack tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),  # JWTs
]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so that a secret containing another is replaced whole; very short
        # values would shred ordinary words, so they are left to the patterns
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    @property
    def has_secrets(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text

    def known_only(self, text: str) -> str:
        """Only the configured secret values (for our own log lines, which hold no
        credentials of other shapes and should stay readable)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text
