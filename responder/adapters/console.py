"""Console notifier: the embedded default's way of telling people what happened."""

from __future__ import annotations

import sys
from typing import TextIO

from responder.domain.incident import IncidentChange


class ConsoleNotifier:
    """Prints each timeline event as one readable line on standard output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def incident_changed(self, change: IncidentChange) -> None:
        out = self._stream or sys.stdout
        inc = change.incident
        for event in change.events:
            at = event.at.strftime("%H:%M:%S")
            out.write(f"{at} [{inc.id}] {inc.status.value:<8} {event.kind:<22} {event.detail}\n")
        out.flush()
