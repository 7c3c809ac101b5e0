"""Memory benchmark: what one open incident with one alert costs in Redis.

Run from the project root:

    .venv/bin/python bench/memory.py                  # 500 incidents
    .venv/bin/python bench/memory.py --incidents 2000 --no-slack

It starts a ``redis-server`` of its own on a free loopback port (or uses ``REDIS_URL``,
writing only keys under a random ``{bench-mem-...}`` prefix and deleting just those), a
fake Slack on loopback (the test suite's, speaking the Web API) unless ``--no-slack``, and
the service in-process with 2 workers, triage off. It sends one firing alert per group
(each group one incident), waits until the queue is drained and every Slack root is
posted, then sums ``MEMORY USAGE`` over every key of the prefix, by key kind, and prints
bytes per incident. The target: 4 KB or less per open incident with one alert.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import secrets
import sys
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from responder.settings import Settings  # noqa: E402
from tests.support.fake_notify import FakeSlack  # noqa: E402
from tests.support.procs import redis_server  # noqa: E402
from tests.support.service import example, running_service  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402


def _kind(key: str, prefix: str) -> str:
    parts = key[len(prefix) + 3 :].split(":")  # past "{prefix}:"
    if parts[0] == "incident":
        return "incident" if len(parts) == 2 else f"incident:{parts[2]}"
    return parts[0]


async def _fill(url: str, prefix: str, incidents: int, slack: FakeSlack | None) -> None:
    values: dict[str, object] = dict(
        redis_url=url,
        redis_prefix=prefix,
        workers=2,
        triage=False,
        visibility_timeout_s=30.0,
        triage_budget_s=5.0,
        log_level="WARNING",
        max_new_incidents_per_minute=0,  # each group its own incident: what is measured
    )
    if slack is not None:
        values.update(slack_token=slack.token, slack_api_url=slack.api_url, slack_channel="#inc")
    base = example("alertmanager/posthog-api-unreachable-firing.json")
    async with running_service(Settings(**values), notify=True) as svc:  # type: ignore[arg-type]
        for n in range(incidents):
            payload = copy.deepcopy(base)
            payload["alerts"][0]["labels"]["service"] = f"service-{n}"
            payload["alerts"][0]["fingerprint"] = ""
            resp = await svc.post_alertmanager(payload)
            assert resp.status == 200, await resp.text()
        await svc.idle(timeout_s=600)
        if slack is not None:

            async def posted() -> bool:
                return len(slack.roots("#inc")) >= incidents

            await eventually(posted, timeout_s=600, what="every root posted")
            await svc.idle(timeout_s=600)


def _measure(url: str, prefix: str, incidents: int) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    by_kind: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for key in client.scan_iter(match="{" + prefix + "}*", count=1000):
        kind = _kind(key, prefix)
        by_kind[kind] += client.memory_usage(key, samples=0) or 0
        keys[kind] += 1
    total = sum(by_kind.values())
    print(f"{'key kind':24s} {'keys':>7s} {'bytes/incident':>15s}")
    for kind, size in by_kind.most_common():
        print(f"{kind:24s} {keys[kind]:7d} {size / incidents:15.0f}")
    print(f"{'total':24s} {sum(keys.values()):7d} {total / incidents:15.0f}")
    verdict = "met" if total / incidents <= 4096 else "MISSED"
    print(f"target (<= 4096 B per open incident with one alert): {verdict}")
    for key in client.scan_iter(match="{" + prefix + "}*", count=1000):
        client.delete(key)
    client.close()


async def _run(url: str, args: argparse.Namespace) -> None:
    prefix = f"bench-mem-{secrets.token_hex(4)}"
    if args.no_slack:
        await _fill(url, prefix, args.incidents, None)
    else:
        async with FakeSlack(channels=["#inc"]) as slack:
            await _fill(url, prefix, args.incidents, slack)
    _measure(url, prefix, args.incidents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--no-slack", action="store_true", help="no notification records")
    args = parser.parse_args()
    if os.environ.get("REDIS_URL"):
        asyncio.run(_run(os.environ["REDIS_URL"], args))
        return
    with redis_server() as server:
        asyncio.run(_run(server.url, args))


if __name__ == "__main__":
    main()
