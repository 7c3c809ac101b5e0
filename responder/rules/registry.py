"""The rule packs in force, and their reload.

A reload (SIGHUP, or ``POST /v1/admin/reload``) swaps in new packs only when all of them
load cleanly; otherwise the old ones stay in force and the problems are logged, counted
and returned to whoever asked. The service reloads in a thread (``reload_in_thread``):
reading, parsing, linting and compiling packs takes long enough to stall every webhook
if it ran on the event loop; the swap itself happens on the loop, one reload at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from responder.metrics import Metrics
from responder.rules.engine import RuleSet
from responder.rules.loader import RuleLoadError, load_rules

log = structlog.get_logger("responder.rules")


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    problems: tuple[str, ...] = ()


class RuleRegistry:
    def __init__(self, paths: Sequence[Path], metrics: Metrics) -> None:
        """Load the packs; ``RuleLoadError`` when any has a problem (refuse to start)."""
        self._paths = tuple(paths)
        self._metrics = metrics
        self._current = load_rules(self._paths)
        self._reloading = asyncio.Lock()
        self._publish()

    def __call__(self) -> RuleSet:
        return self._current

    def reload(self) -> ReloadResult:
        """Load and swap in the calling thread (the CLI; tests)."""
        try:
            fresh = load_rules(self._paths)
        except RuleLoadError as exc:
            return self._refused(exc)
        return self._swap(fresh)

    async def reload_in_thread(self) -> ReloadResult:
        """Load in a worker thread, swap on the loop; reloads that overlap run in turn, so
        the last one asked for reads the files last."""
        async with self._reloading:
            try:
                fresh = await asyncio.to_thread(load_rules, self._paths)
            except RuleLoadError as exc:
                return self._refused(exc)
            return self._swap(fresh)

    def _refused(self, exc: RuleLoadError) -> ReloadResult:
        problems = tuple(str(p) for p in exc.problems)
        self._metrics.rule_reloads.labels("error").inc()
        log.error("rule reload failed; the rules in force stay", problems=list(problems))
        return ReloadResult(ok=False, problems=problems)

    def _swap(self, fresh: RuleSet) -> ReloadResult:
        self._current = fresh
        self._metrics.rule_reloads.labels("ok").inc()
        self._publish()
        log.info("rules reloaded", packs=[f"{p.name}@{p.spec.version}" for p in fresh.packs])
        return ReloadResult(ok=True)

    def _publish(self) -> None:
        self._metrics.rule_packs.clear()
        for pack in self._current.packs:
            self._metrics.rule_packs.labels(pack.name, pack.spec.version).set(len(pack.rules))
