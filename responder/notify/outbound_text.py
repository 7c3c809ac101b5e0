"""The one place text leaves the service for a sink: cleaned and redacted on its way out.

Every sink is wrapped in a ``CleanSink`` (``app.build_channels``): each message it is given
(to send, or to look for after a crash) loses its control characters and escape
sequences, its one-line parts (a status page incident's name, a field's value) their line
breaks, and every configured secret's value (``Settings.secret_values``) wherever it
stands, in the text, the blocks and the fields. An alert annotation quoting the admin
token reaches neither Slack nor the status page nor PagerDuty nor the console.

The same message is cleaned the same way whether it is sent or looked for
(``find_sent``, ``find_open``), so what a sink finds is what it sent. Identifiers we made
(the idempotency key, the dedup key, the channel...) are left as they are: they hold
nothing from outside, and a key must stay the key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from pydantic import JsonValue

from responder.domain.notification import Outbound
from responder.ports import OpenThread, Sink
from responder.render.inert import clean, one_line

# Fields that are identifiers of ours, never text from outside: passed as they are.
_IDENTIFIERS = frozenset(
    {"key", "sent_after", "dedup_key", "incident_id", "incident_group", "channel"}
)


def _text(value: JsonValue, tidy: Callable[[str], str]) -> JsonValue:
    if isinstance(value, str):
        return tidy(value)
    if isinstance(value, list):
        return [_text(v, tidy) for v in value]
    if isinstance(value, dict):
        return {tidy(k): _text(v, tidy) for k, v in value.items()}
    return value


class OutboundText:
    """Cleans and redacts what is sent. ``redact``: blanks out configured secret values
    (``Redactor.known_only``: credential-shaped patterns would shred ordinary words
    of a message, "token: expired")."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def text(self, value: str) -> str:
        """Multi-line text: its lines kept."""
        return self._redact(clean(value))

    def line(self, value: str) -> str:
        """One-line text: its line breaks become spaces."""
        return self._redact(one_line(value))

    def message(self, message: Outbound) -> Outbound:
        text = self.text(message.text)
        title = self.line(message.title)
        blocks = [_text(b, self.text) for b in message.blocks]
        fields = {
            k: v if k in _IDENTIFIERS else _text(v, self.line) for k, v in message.fields.items()
        }
        if (
            text == message.text
            and title == message.title
            and blocks == message.blocks
            and fields == message.fields
        ):
            return message  # nearly always: nothing to copy
        return message.model_copy(
            update={"text": text, "title": title, "blocks": blocks, "fields": fields}
        )


class CleanSink:
    """A sink whose every message goes through ``OutboundText`` first."""

    def __init__(self, sink: Sink, outbound: OutboundText) -> None:
        self.inner = sink
        self.name = sink.name
        self._outbound = outbound

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        return await self.inner.send(self._outbound.message(message), refs)

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        return await self.inner.find_sent(self._outbound.message(message), refs)

    async def find_open(self, message: Outbound, *, group: str, since: float) -> list[OpenThread]:
        return await self.inner.find_open(self._outbound.message(message), group=group, since=since)

    async def open_threads(self, where: Collection[str], *, since: float) -> list[OpenThread]:
        return await self.inner.open_threads(where, since=since)

    async def mark_lost(self, thread: OpenThread, note: str) -> None:
        await self.inner.mark_lost(thread, self._outbound.text(note))

    async def close(self) -> None:
        await self.inner.close()
