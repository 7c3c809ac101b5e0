"""Console sink: the embedded default's way of telling people, on standard output.

It prints what Slack would get (the root message, its edits) and every timeline event as
one line, so a demo or a laptop run shows the whole conversation without any account.

A terminal obeys escape sequences: nothing of what it prints keeps a control character
(an alert's ``\x1b]0;…\x07`` would retitle the window, a CSI sequence rewrite the screen),
and an event's line stays one line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

from pydantic import JsonValue

from responder.domain.notification import Outbound
from responder.ports import NoThreadLookup
from responder.render.inert import clean, one_line


def _unescape_mrkdwn(text: str) -> str:
    # The console shares Slack's templates, whose values are escaped for Slack; a
    # terminal shows the characters themselves (&amp; last, so "&amp;lt;" stays "&lt;").
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class ConsoleSink(NoThreadLookup):
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        # the loop a flush is scheduled on (a loop closed before running it must not
        # keep the next loop's lines unflushed)
        self._flush_due: asyncio.AbstractEventLoop | None = None

    async def send(self, message: Outbound, refs: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        out = self._stream or sys.stdout
        text = _unescape_mrkdwn(message.text)
        incident = one_line(str(message.fields.get("key", "")).split(":notify:", 1)[0])
        if message.marks == "root" or message.op == "update":
            heading = "new incident" if message.marks == "root" else "root message now"
            out.write(f"── [{incident}] {heading} ──\n")
            out.write("".join(f"   {line}\n" for line in clean(text).splitlines()))
        else:
            out.write(f"[{incident}] {one_line(text)}\n")
        loop = asyncio.get_running_loop()
        if self._flush_due is not loop:
            # one flush (one write to the terminal or log) for all the lines of this turn
            # of the loop: a batch of signals prints hundreds
            self._flush_due = loop
            loop.call_soon(self._flush, out)
        return {}

    def _flush(self, out: TextIO) -> None:
        self._flush_due = None
        out.flush()

    async def find_sent(
        self, message: Outbound, refs: Mapping[str, JsonValue]
    ) -> dict[str, JsonValue] | None:
        return None

    async def close(self) -> None:
        return None
