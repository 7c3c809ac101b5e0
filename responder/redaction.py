"""Blanking out secrets in text that leaves the service (logs, timelines, evidence,
outbound messages, API documents).

Two nets: the values of every configured secret, and patterns of credentials that turn up
in application logs (bearer tokens, ``Authorization`` and cookie headers, API keys of
well-known shapes, passwords in database URLs, private keys, ``password=...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

REDACTED = "[REDACTED]"

# Shapes of credentials commonly printed by applications. Each pattern's first group, if
# any, is kept (the key name, a URL's user), the rest is replaced. Headers come before
# the generic ``key=value`` pattern, which would take only a header's first word.
_PATTERNS = [
    # PEM private keys, whole (an evidence file holds the lines between BEGIN and END);
    # one cut short by a log's end is blanked to the end
    re.compile(
        r"(-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)"
        r"[\s\S]*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)"
    ),
    # headers whose whole value is a credential, whatever its scheme: to the line's end
    # (or the quote that closes a printed mapping's value)
    re.compile(r"(?im)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]*[^\s\"']"),
    re.compile(r"(?im)(\b(?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]*[^\s\"']"),
    # a URL's password: scheme://user:PASSWORD@host (postgres, mysql, redis, amqp,
    # mongodb+srv, https...); the user stays
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]*:)[^\s/@]+(?=@)"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"),
    re.compile(r"(?i)(\b(?:aws_)?secret_?access_?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{16,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|token|secret|password|passwd|pwd)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{4,}"
    ),
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}\b"),  # Stripe secret keys
    re.compile(r"\b(?:phc|phx|sk|pk|rk)_[A-Za-z0-9]{16,}\b"),  # PostHog and similar keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b"),  # GitHub fine-grained tokens
    re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),  # Google keys
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),  # Slack tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),  # JWTs
]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so that a secret containing another is replaced whole; very short
        # values would shred ordinary words, so they are left to the patterns
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        # how each looks inside a document: as it is, and escaped in a JSON string
        self._raw = [s.encode() for s in self._secrets]
        self._escaped = [orjson.dumps(s)[1:-1] for s in self._secrets]

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

    def json_document(self, body: bytes) -> bytes:
        """A JSON document without the configured secret values, in any string of it (key
        or value): the document itself when none is there (a search per secret)."""
        if not any(escaped in body for escaped in self._escaped):
            return body
        return orjson.dumps(self._tree(orjson.loads(body)))

    def text_document(self, body: bytes) -> bytes:
        """A UTF-8 text document (the postmortem's markdown) without the configured secret
        values."""
        if not any(raw in body for raw in self._raw):
            return body
        return self.known_only(body.decode("utf-8", errors="replace")).encode()

    def _tree(self, value: object) -> object:
        if isinstance(value, str):
            return self.known_only(value)
        if isinstance(value, list):
            return [self._tree(v) for v in value]
        if isinstance(value, dict):
            return {self.known_only(k): self._tree(v) for k, v in value.items()}
        return value
