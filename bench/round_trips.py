"""Round-trip benchmark: what one incident's whole life costs in store calls and Redis
commands.

Run from the project root:

    .venv/bin/python bench/round_trips.py                 # 50 incidents
    .venv/bin/python bench/round_trips.py --incidents 200
    .venv/bin/python bench/round_trips.py --sinks         # and Slack + a status page

It starts a ``redis-server`` of its own on a free loopback port (or uses ``REDIS_URL``,
writing only keys under a random ``{bench-rt-...}`` prefix and deleting just those), the
demo's PostHog status page, health endpoint and Prometheus API on loopback, and the
service in-process with 2 workers, the shipped PostHog rule pack (its probes aimed at
them), triage on, every action forced to dry-run and reports written to a temporary
directory. Each incident gets one firing alert (its own group) and, once settled, its
resolve: triage, the decision, the mitigation (dry-run) and the postmortem all run.
It prints, per incident, the calls the service made to its store by method
(``mutate_incidents``: the incident writes) and the Redis commands the run cost (``INFO
commandstats`` deltas, which count the commands run inside Lua scripts too, and the
workers' idle polling). With ``--sinks`` the service also tells a loopback fake of Slack's
Web API and of Statuspage (the test suite's fakes), which one refusal of the status page
makes record a delivery failure per incident.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import secrets
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from responder.demo.world import Evidence, EvidenceServer  # noqa: E402
from responder.settings import Settings  # noqa: E402
from tests.support.fake_notify import FakeSlack, FakeStatuspage  # noqa: E402
from tests.support.packs import posthog_pack  # noqa: E402
from tests.support.procs import redis_server  # noqa: E402
from tests.support.service import example, running_service  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402

FIRING = "alertmanager/posthog-upstream-503-firing.json"
RESOLVED = "alertmanager/posthog-upstream-503-resolved.json"
# The store's methods the pipeline and its stages call: each is one round trip.
_STORE_CALLS = (
    "mutate_incidents",
    "get_incident",
    "unprocessed",
    "mark_processed",
    "defer_follow_up_checks",
    "drop_follow_up_checks",
    "lease_follow_ups",  # one follow-up of an incident at a time, across replicas
    "release_follow_ups",
    "schedule",  # a timer (a verification, another try at a sink, a follow-up)
)


def _count_calls(store: Any, calls: Counter[str]) -> None:
    """Count the store calls the running service makes (its components hold this very
    object and look the method up at each call)."""
    for name in _STORE_CALLS:
        method: Callable[..., Awaitable[Any]] | None = getattr(store, name, None)
        if method is None:
            continue

        def counted(
            *args: Any, _name: str = name, _method: Any = method, **kwargs: Any
        ) -> Awaitable[Any]:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(store, name, counted)


def _alert(name: str, n: int) -> dict[str, Any]:
    payload = copy.deepcopy(example(name))
    payload["alerts"][0]["labels"]["instance"] = f"pod-{n}"
    payload["alerts"][0]["labels"]["alertname"] = f"PostHogUpstream5xx{n}"
    payload["alerts"][0]["fingerprint"] = ""
    return payload


def _commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


async def _run_incidents(
    url: str, prefix: str, incidents: int, tmp: Path, *, sinks: bool
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    if not sinks:
        return await _run_incidents_told(url, prefix, incidents, tmp, {})
    async with FakeSlack() as slack, FakeStatuspage() as statuspage:
        # the status page refuses each incident's creation for good: one delivery failure
        # per incident, which the Slack thread tells
        statuspage.fail_with(422, {"error": "component not found"}, times=incidents)
        told = {
            "slack_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_channel": "#posthog-incidents",
            "statuspage_api_key": statuspage.api_key,
            "statuspage_page_id": statuspage.page_id,
            "statuspage_api_url": statuspage.api_url,
            "statuspage_components": ["cmp1"],
        }
        return await _run_incidents_told(url, prefix, incidents, tmp, told)


async def _run_incidents_told(
    url: str, prefix: str, incidents: int, tmp: Path, told: dict[str, Any]
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    calls: Counter[str] = Counter()
    world = EvidenceServer()
    # our integration fails, PostHog is fine: the upstream-5xx branch plans its set_env
    world.evidence = Evidence(health="degraded", error_ratio=0.3, errors_by_status_code={"503": 3})
    await world.start()
    try:
        pack = posthog_pack(
            tmp, status_page_url=f"{world.url}/vendor", health_url=f"{world.url}/health"
        )
        settings = Settings(
            redis_url=url,
            redis_prefix=prefix,
            workers=2,
            rules=[pack],
            triage=True,
            prometheus_url=f"{world.url}/prometheus",
            triage_budget_s=5.0,
            dry_run=True,
            action_allowlist=["production/posthog-integration/*"],
            reports_dir=tmp / "reports",
            visibility_timeout_s=30.0,
            log_level="WARNING",
            max_new_incidents_per_minute=0,
            **told,
        )
        async with running_service(settings, notify=bool(told)) as svc:
            _count_calls(svc.runtime.store, calls)
            before = _commandstats(client)
            for n in range(incidents):
                resp = await svc.post_alertmanager(_alert(FIRING, n))
                assert resp.status == 200, await resp.text()
            await svc.idle(timeout_s=600)
            for n in range(incidents):
                resp = await svc.post_alertmanager(_alert(RESOLVED, n))
                assert resp.status == 200, await resp.text()
            await svc.idle(timeout_s=600)

            async def all_reported() -> bool:
                listed = await svc.incidents()
                return len(listed) >= incidents and all(i["status"] == "resolved" for i in listed)

            await eventually(all_reported, timeout_s=600, what="every incident resolved")
            after = _commandstats(client)
            counted = Counter(calls)
            kinds: Counter[str] = Counter()
            for inc in await svc.incidents():
                view = await svc.runtime.store.get_incident(inc["id"])
                assert view is not None
                kinds.update(e.kind for e in view.timeline)
    finally:
        await world.close()
    for key in client.scan_iter(match="{" + prefix + "}*", count=1000):
        client.delete(key)
    client.close()
    return counted, after - before, kinds


async def _run(url: str, args: argparse.Namespace) -> None:
    prefix = f"bench-rt-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        calls, commands, kinds = await _run_incidents(
            url, prefix, args.incidents, Path(tmp), sinks=args.sinks
        )
    n = args.incidents
    told = "; told to Slack and a status page that refuses it" if args.sinks else ""
    print(f"{n} incidents, each: firing, triage, decision, dry-run action, resolve, report{told}")
    print(
        "timeline events per incident: "
        + ", ".join(f"{k} {v / n:g}" for k, v in sorted(kinds.items()))
    )
    print(f"\nstore calls per incident: {sum(calls.values()) / n:.2f}")
    for name, count in calls.most_common():
        print(f"  {name:24s} {count / n:8.2f}")
    print(f"\nRedis commands per incident: {sum(commands.values()) / n:.1f}")
    for name, count in commands.most_common(args.top):
        print(f"  {name:24s} {count / n:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--top", type=int, default=10, help="Redis commands listed")
    parser.add_argument(
        "--sinks", action="store_true", help="tell a fake Slack and a fake status page too"
    )
    args = parser.parse_args()
    if os.environ.get("REDIS_URL"):
        asyncio.run(_run(os.environ["REDIS_URL"], args))
        return
    with redis_server() as server:
        asyncio.run(_run(server.url, args))


if __name__ == "__main__":
    main()
