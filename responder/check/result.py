"""One check's outcome: what was checked, how it went, and what to do when it failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

# "skip": the integration is not configured, so there is nothing to check (not a failure)
Status = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True)
class Result:
    integration: str  # "redis", "slack", ...
    status: Status
    what: str  # what was found, one line
    fix: str | None = None  # what to do about it (FAIL and warn)

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def ok(integration: str, what: str) -> Result:
    return Result(integration, "ok", what)


def warn(integration: str, what: str, fix: str) -> Result:
    return Result(integration, "warn", what, fix)


def fail(integration: str, what: str, fix: str) -> Result:
    return Result(integration, "FAIL", what, fix)


def skip(integration: str, what: str) -> Result:
    return Result(integration, "skip", what)
