"""An alert storm against real ``responder serve`` processes on a real Redis, with the
fake Slack of ``fake_notify`` as the only sink, and the accounting of what must come out.

The storm: ``groups`` Alertmanager groups, each with two alerts A and B (distinct
fingerprints, the same ``alertname`` and ``service``: one group under the shipped pack's
``group_by`` and the default ``RESPONDER_GROUP_BY``), each notified as Alertmanager does
(one episode: both firing, repeats, A resolved while B still fires, repeats, B resolved;
a later episode is a genuine re-fire with a later ``startsAt``), sent back to back per
group, many groups at once; some notifications go to both replicas (an HA pair of
Alertmanagers); a 503 or a connection error is retried after a short backoff, as
Alertmanager does.

The checks read Redis (every incident under the prefix, its alerts and timeline; the
queue, its consumer group, the dead letters) and the fake Slack's record (every message
carries its idempotency key ``<incident>:notify:slack:<step>`` in its metadata).

``STORM_GROUPS``, ``STORM_NOTIFICATIONS`` (per group), ``STORM_EPISODES`` (per group),
``STORM_CONCURRENCY`` (groups in flight), ``STORM_BOTH`` (share of notifications sent to
both replicas) and ``STORM_SEED`` scale it: ``STORM_GROUPS=2000`` is the full storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis

from responder.adapters.redis_keys import RedisKeys
from responder.domain.signal import alertmanager_dedupe_key
from responder.notify.planners import SLACK_REPLY_KINDS
from tests.support.fake_notify import FakeSlack, SlackMessage
from tests.support.procs import (
    SentinelServer,
    env_without_responder,
    free_port,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[2]
HOOK = "/v1/webhooks/alertmanager"
ALERTNAME = "StormAlert"  # claimed by no rule of the shipped pack: RESPONDER_GROUP_BY groups it
CHANNEL = "storm-incidents"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


# ------------------------------------------------------------------------------ the shape


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class StormShape:
    groups: int = 300
    notifications: int = 10  # per group, all episodes together
    episodes: int = 2  # firing episodes per group: each one incident
    concurrency: int = 48  # groups in flight at once
    both: float = 0.10  # share of notifications sent to both replicas
    seed: int = 20261129
    max_attempts: int = 60  # per copy of a notification: bounded, as Alertmanager's are

    @classmethod
    def from_env(cls) -> StormShape:
        shape = cls(
            groups=_env_int("STORM_GROUPS", cls.groups),
            notifications=_env_int("STORM_NOTIFICATIONS", cls.notifications),
            episodes=_env_int("STORM_EPISODES", cls.episodes),
            concurrency=_env_int("STORM_CONCURRENCY", cls.concurrency),
            both=_env_float("STORM_BOTH", cls.both),
            seed=_env_int("STORM_SEED", cls.seed),
        )
        if shape.notifications < 3 * shape.episodes:
            raise ValueError(
                f"STORM_NOTIFICATIONS={shape.notifications}: an episode takes at least 3 "
                f"notifications (firing, A resolved, B resolved); {shape.episodes} need "
                f"{3 * shape.episodes}"
            )
        return shape

    @property
    def total(self) -> int:
        return self.groups * self.notifications

    def timeout_s(self) -> float:
        """A generous ceiling for one scenario's test (pytest-timeout), by size."""
        return 300.0 + self.total * 0.03


# ------------------------------------------------------------------------ the notifications


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fingerprint(labels: dict[str, str]) -> str:
    canon = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Episode:
    index: int
    starts_a: datetime
    starts_b: datetime
    ends_a: datetime
    ends_b: datetime


@dataclass
class Group:
    index: int
    service: str
    labels_a: dict[str, str]
    labels_b: dict[str, str]
    episodes: list[Episode]
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fingerprint_a(self) -> str:
        return _fingerprint(self.labels_a)

    @property
    def fingerprint_b(self) -> str:
        return _fingerprint(self.labels_b)

    def episode_of(self, fingerprint: str, starts_at: str | None) -> int | None:
        """Which episode an alert record (fingerprint, startsAt) belongs to, if any."""
        if starts_at is None:
            return None
        at = datetime.fromisoformat(starts_at.replace("Z", "+00:00"))
        for ep in self.episodes:
            expected = ep.starts_a if fingerprint == self.fingerprint_a else ep.starts_b
            if abs((at - expected).total_seconds()) < 0.0005:
                return ep.index
        return None


def _alert(labels: dict[str, str], fingerprint: str, starts: datetime, ends: datetime | None):
    return {
        "status": "firing" if ends is None else "resolved",
        "labels": labels,
        "annotations": {"summary": f"{labels['service']} {labels['instance']} storm alert"},
        "startsAt": rfc3339(starts),
        "endsAt": GO_ZERO_TIME if ends is None else rfc3339(ends),
        "generatorURL": "http://prometheus.invalid/graph?g0.expr=storm",
        "fingerprint": fingerprint,
    }


def _notification(group: Group, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    common = dict(alerts[0]["labels"])
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    group_labels = {"alertname": ALERTNAME, "service": group.service}
    return {
        "version": "4",
        "receiver": "responder",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {} if len(alerts) > 1 else dict(alerts[0]["annotations"]),
        "externalURL": "http://alertmanager.invalid:9093",
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}", service="{group.service}"}}',
        "truncatedAlerts": 0,
    }


def _repeats(shape: StormShape) -> list[int]:
    """How many times each repeatable state is sent: per episode, [firing, A resolved]
    (Alertmanager repeats a group's state every repeat_interval; the final resolved
    notification goes once)."""
    slots = [1] * (2 * shape.episodes)
    for i in range(shape.notifications - 3 * shape.episodes):
        slots[i % len(slots)] += 1
    return slots


def build_groups(shape: StormShape, *, now: datetime | None = None) -> list[Group]:
    """Every group with its notifications, in the order Alertmanager sends them."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    base = now - timedelta(hours=2)
    repeats = _repeats(shape)
    groups = []
    for g in range(shape.groups):
        service = f"storm-{g:05d}"
        common = {"alertname": ALERTNAME, "service": service, "severity": "warning"}
        group = Group(
            index=g,
            service=service,
            labels_a={**common, "instance": "a"},
            labels_b={**common, "instance": "b"},
            episodes=[],
        )
        for e in range(shape.episodes):
            start = base + timedelta(minutes=20 * e, milliseconds=g)
            group.episodes.append(
                Episode(
                    index=e,
                    starts_a=start,
                    starts_b=start + timedelta(seconds=1),
                    ends_a=start + timedelta(minutes=5),
                    ends_b=start + timedelta(minutes=6),
                )
            )
        fa, fb = group.fingerprint_a, group.fingerprint_b
        for ep in group.episodes:
            firing = [
                _alert(group.labels_a, fa, ep.starts_a, None),
                _alert(group.labels_b, fb, ep.starts_b, None),
            ]
            a_resolved = [
                _alert(group.labels_a, fa, ep.starts_a, ep.ends_a),
                _alert(group.labels_b, fb, ep.starts_b, None),
            ]
            b_resolved = [_alert(group.labels_b, fb, ep.starts_b, ep.ends_b)]  # A is gone
            group.notifications += [_notification(group, firing)] * repeats[2 * ep.index]
            group.notifications += [_notification(group, a_resolved)] * repeats[2 * ep.index + 1]
            group.notifications.append(_notification(group, b_resolved))
        assert len(group.notifications) == shape.notifications
        groups.append(group)
    return groups


# ----------------------------------------------------------------------------- the sender


@dataclass
class SendStats:
    notifications: int = 0  # notifications of the storm accepted (each once)
    copies: int = 0  # copies sent (a notification sent to both replicas is two)
    to_both: int = 0
    attempts: int = 0  # HTTP attempts, retries included
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (connection error)
    failures: list[str] = field(default_factory=list)  # refused for good, or gave up


class StormSender:
    """Alertmanager, as far as the responder can tell: one notification of a group after
    the other (the next once the last was accepted), many groups at once; a copy that
    gets 503 or no answer is tried again after a short backoff. ``urls``: the replicas;
    each copy goes to one at random, and after a connection error to the next (as a
    Kubernetes Service would route around a dead pod)."""

    def __init__(self, urls: list[str], shape: StormShape) -> None:
        self.urls = urls
        self.shape = shape
        self.stats = SendStats()
        self.finished = False
        self._rng = random.Random(shape.seed)

    async def run(self, groups: list[Group]) -> None:
        pending = list(reversed(groups))
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=self.shape.concurrency * 2 + 8)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

                async def worker() -> None:
                    while pending:
                        group = pending.pop()
                        for payload in group.notifications:
                            await self._send(session, payload)

                await asyncio.gather(*(worker() for _ in range(self.shape.concurrency)))
        finally:
            self.finished = True

    async def wait_accepted(self, share: float) -> int:
        """Once ``share`` of the storm's notifications were accepted (or the storm ended):
        how many were."""
        count = int(self.shape.total * share)
        while self.stats.notifications < count and not self.finished:
            await asyncio.sleep(0.005)
        return self.stats.notifications

    async def _send(self, session: aiohttp.ClientSession, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        targets = [self._rng.randrange(len(self.urls))]
        if len(self.urls) > 1 and self._rng.random() < self.shape.both:
            targets = list(range(len(self.urls)))
            self.stats.to_both += 1
        await asyncio.gather(*(self._copy(session, body, t) for t in targets))
        self.stats.notifications += 1

    async def _copy(self, session: aiohttp.ClientSession, body: bytes, target: int) -> None:
        self.stats.copies += 1
        last = ""
        for attempt in range(self.shape.max_attempts):
            self.stats.attempts += 1
            try:
                async with session.post(
                    self.urls[target] + HOOK,
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    status = resp.status
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
                target = (target + 1) % len(self.urls)
            self.stats.statuses[status] += 1
            if status == 200:
                return
            last = f"{status} {text[:200]}"
            if status not in (0, 503):  # Alertmanager does not retry a 4xx: lost
                self.stats.failures.append(f"refused: {last}")
                return
            self.stats.retries += 1
            backoff = min(1.0, 0.05 * 2**attempt)
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
        self.stats.failures.append(f"gave up after {self.shape.max_attempts} attempts: {last}")


# ---------------------------------------------------------------------------- the replicas


class Replica:
    """``responder serve`` in a child process on a fixed port, so that it can be killed
    and started again at the same address; its output is appended to files in ``workdir``."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = {**env_without_responder(), **env}
        self.port = free_port()
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.stderr_path.open("ab") as err, self.stdout_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "responder", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=err,
            )
        self.starts += 1
        try:
            wait_for_port(self.port, proc=self.proc, timeout_s=30)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.stderr_tail()}") from exc

    def kill(self) -> None:
        """SIGKILL: a crash, an OOM kill; nothing is flushed, nothing is released."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stderr_tail(self, lines: int = 15, *, only_problems: bool = False) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        if only_problems:
            text = [
                line
                for line in text
                if '"level": "error"' in line
                or '"level": "warning"' in line
                or "Traceback" in line
                or "Error" in line
            ]
        return "\n".join(f"  [{self.name}] {line[:400]}" for line in text[-lines:])


def replica_env(
    slack: FakeSlack, channel_id: str, prefix: str, redis_env: dict[str, str]
) -> dict[str, str]:
    return {
        **redis_env,
        "RESPONDER_REDIS_PREFIX": prefix,
        "RESPONDER_RULES": str(ROOT / "rules"),
        "RESPONDER_TRIAGE": "false",
        "RESPONDER_DRY_RUN": "true",
        # every group's episodes are counted as incidents of their own here: the cap of
        # new incidents a minute (which would send them to one storm) is tested apart
        "RESPONDER_MAX_NEW_INCIDENTS_PER_MINUTE": "0",
        "RESPONDER_SLACK_TOKEN": slack.token,
        "RESPONDER_SLACK_API_URL": slack.api_url,
        "RESPONDER_SLACK_CHANNEL": channel_id,
        # a killed replica's entries are claimed by the other after this (default 30 s)
        "RESPONDER_VISIBILITY_TIMEOUT_S": "5",
        "RESPONDER_TRIAGE_BUDGET_S": "1",  # below the visibility timeout (a settings rule)
        "RESPONDER_NOTIFY_RETRY_BASE_S": "0.5",
        "RESPONDER_NOTIFY_RETRY_CAP_S": "5",
        "RESPONDER_LOG_LEVEL": "WARNING",
    }


# ----------------------------------------------------------------------------- Redis side


@dataclass
class RedisState:
    incidents: dict[str, dict[str, Any]]  # id -> incident JSON
    alerts: dict[str, dict[str, dict[str, Any]]]  # id -> fingerprint -> alert JSON
    timelines: dict[str, list[dict[str, Any]]]  # id -> events
    queue_len: int
    pending: int | None
    lag: int | None
    entries_read: int | None
    dead_letters: int
    timers: int


async def read_redis(client: aioredis.Redis, prefix: str) -> RedisState:
    base = "{" + prefix + "}"
    keys = [
        k
        async for k in client.scan_iter(match=f"{base}:incident:*", count=1000)
        if ":" not in k[len(f"{base}:incident:") :]
    ]
    ids = [k[len(f"{base}:incident:") :] for k in keys]
    async with client.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.get(k)
            pipe.hgetall(f"{k}:alerts")
            pipe.lrange(f"{k}:timeline", 0, -1)
        replies = await pipe.execute() if keys else []
    incidents, alerts, timelines = {}, {}, {}
    for i, incident_id in enumerate(ids):
        raw, raw_alerts, raw_timeline = replies[3 * i : 3 * i + 3]
        if raw is None:
            continue  # gone between the scan and the read
        incidents[incident_id] = json.loads(raw)
        alerts[incident_id] = {fp: json.loads(v) for fp, v in raw_alerts.items()}
        timelines[incident_id] = [json.loads(e) for e in raw_timeline]
    queue = f"{base}:queue"
    async with client.pipeline(transaction=False) as pipe:
        pipe.xlen(queue)
        pipe.xlen(f"{base}:dead-letters")
        pipe.zcard(f"{base}:timers")
        queue_len, dead, timers = await pipe.execute()
    pending = lag = entries_read = None
    with contextlib.suppress(redis.ResponseError):  # no stream yet
        for group in await client.xinfo_groups(queue):
            if group["name"] == "workers":
                pending, lag = group["pending"], group.get("lag")
                entries_read = group.get("entries-read")
    return RedisState(
        incidents, alerts, timelines, queue_len, pending, lag, entries_read, dead, timers
    )


# ----------------------------------------------------------------------------- Slack side


def _key(message: SlackMessage) -> tuple[str, str] | None:
    """(incident id, step) from the idempotency key the responder puts in the metadata."""
    payload = (message.metadata or {}).get("event_payload") or {}
    key = payload.get("key")
    if not isinstance(key, str) or ":notify:slack:" not in key:
        return None
    incident_id, step = key.split(":notify:slack:", 1)
    return incident_id, step


def _tells(event: dict[str, Any]) -> bool:
    """What SlackPlanner.tells says (only Slack is configured: no other sink's trouble)."""
    kind = str(event["kind"])
    return kind in SLACK_REPLY_KINDS or kind.startswith("action.")


# ------------------------------------------------------------------------------ the checks


class Problems(list[tuple[str, str]]):
    """(kind, detail) pairs."""

    def add(self, kind: str, detail: str) -> None:
        self.append((kind, detail))


@dataclass
class Outcome:
    figures: dict[str, Any]
    problems: Problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, *, samples: int = 4) -> str:
        """The figures, then each kind of problem with its count and a few examples."""
        figures = ", ".join(f"{k}={v}" for k, v in self.figures.items())
        lines = [f"figures: {figures}", f"problems: {len(self.problems)}"]
        by_kind: dict[str, list[str]] = defaultdict(list)
        for kind, detail in self.problems:
            by_kind[kind].append(detail)
        for kind, details in by_kind.items():
            lines.append(f"  {kind}: {len(details)}")
            lines += [f"    - {d}" for d in details[:samples]]
        return "\n".join(lines)

    def settled_signature(self) -> tuple[Any, ...]:
        f = self.figures
        keys = ("incidents", "open", "slack_messages", "slack_edits", "queue_len", "pending")
        return tuple(f.get(k) for k in keys)


def check(
    groups: list[Group],
    state: RedisState,
    slack: FakeSlack,
    channel_id: str,
    stats: SendStats,
) -> Outcome:
    problems = Problems()
    by_service = {g.service: g for g in groups}

    # -- incidents: one per genuine firing episode, none open, both alerts, no mix-up
    per_episode: dict[tuple[int, int], list[str]] = defaultdict(list)
    open_ids = []
    for incident_id, incident in state.incidents.items():
        service = (incident.get("labels") or {}).get("service")
        group = by_service.get(service or "")
        if group is None:
            problems.add(
                "foreign incident", f"{incident_id}: an incident of no storm group ({service!r})"
            )
            continue
        if incident.get("status") != "resolved":
            open_ids.append(incident_id)
        alerts = state.alerts.get(incident_id, {})
        episodes = {group.episode_of(fp, a.get("starts_at")) for fp, a in alerts.items()}
        if set(alerts) != {group.fingerprint_a, group.fingerprint_b}:
            problems.add(
                "incident alerts not A and B",
                f"{incident_id} ({group.service}): alerts {sorted(alerts)} are not A and B",
            )
        if len(episodes) != 1 or None in episodes:
            problems.add(
                "incident mixes episodes",
                f"{incident_id} ({group.service}): alerts of episodes {sorted(map(str, episodes))}",
            )
            continue
        kinds = [e["kind"] for e in state.timelines.get(incident_id, [])]
        if "alert.refired" in kinds:
            problems.add(
                "alert refired within an incident",
                f"{incident_id} ({group.service}): an alert refired in it: {kinds}",
            )
        if kinds.count("incident.opened") != 1:
            problems.add(
                "incident not opened once", f"{incident_id} ({group.service}): timeline {kinds}"
            )
        (episode,) = episodes
        assert episode is not None
        per_episode[(group.index, episode)].append(incident_id)
    doubled = missing = 0
    for group in groups:
        for ep in group.episodes:
            found = per_episode.get((group.index, ep.index), [])
            if len(found) > 1:
                doubled += 1
                problems.add(
                    "episode with several incidents",
                    f"{group.service} episode {ep.index}: {len(found)} incidents {sorted(found)}",
                )
            elif not found:
                missing += 1
                problems.add(
                    "episode with no incident", f"{group.service} episode {ep.index}: no incident"
                )
    for incident_id in open_ids:
        incident = state.incidents[incident_id]
        status = incident.get("status", "open")  # the JSON leaves defaults out
        problems.add(
            "incident stuck open",
            f"{incident_id} ({incident['labels'].get('service')}): stuck {status}, "
            f"{incident.get('alerts_firing')} of {incident.get('alerts_total')} alerts firing",
        )

    # -- Slack: one root per incident, each reply once, what the timeline tells
    messages = slack.messages(channel_id)
    roots = [m for m in messages if m.thread_ts is None]
    replies = [m for m in messages if m.thread_ts is not None]
    roots_of: dict[str, list[SlackMessage]] = defaultdict(list)
    for m in roots:
        key = _key(m)
        if key is None or key[1] != "root":
            problems.add(
                "slack top-level message not a root",
                f"slack: a top-level message that is no root: {key} {m.text[:80]!r}",
            )
            continue
        roots_of[key[0]].append(m)
    for incident_id in state.incidents:
        count = len(roots_of.get(incident_id, []))
        if count != 1:
            problems.add(
                "incident without one slack root"
                if count == 0
                else "incident with several slack roots",
                f"{incident_id}: {count} Slack root messages",
            )
    for incident_id, found in roots_of.items():
        if incident_id not in state.incidents:
            problems.add(
                "slack root of no incident",
                f"slack: {len(found)} root(s) of {incident_id}, no such incident",
            )
    by_thread: dict[str, list[SlackMessage]] = defaultdict(list)
    for m in replies:
        assert m.thread_ts is not None
        by_thread[m.thread_ts].append(m)
    root_by_ts = {m.ts: m for m in roots}
    doubled_replies = 0
    for ts, thread in by_thread.items():
        root = root_by_ts.get(ts)
        root_key = _key(root) if root is not None else None
        if root_key is None:
            problems.add(
                "slack replies under no root",
                f"slack: {len(thread)} replies in thread {ts} of no root",
            )
            continue
        texts = Counter(m.text for m in thread)
        keys = Counter(_key(m) for m in thread)
        for text, n in texts.items():
            if n > 1:
                doubled_replies += 1
                problems.add(
                    "slack reply text doubled",
                    f"slack: {root_key[0]}: reply posted {n} times: {text[:80]!r}",
                )
        for key, n in keys.items():
            if key is None or key[0] != root_key[0]:
                problems.add(
                    "slack reply in a wrong thread",
                    f"slack: thread of {root_key[0]} holds a reply keyed {key}",
                )
            elif n > 1:
                problems.add(
                    "slack reply step doubled",
                    f"slack: {root_key[0]}: step {key[1]} posted {n} times",
                )
    steps_of: dict[str, set[str]] = defaultdict(set)
    for thread_ts, thread in by_thread.items():
        root = root_by_ts.get(thread_ts)
        root_key = _key(root) if root is not None else None
        if root_key is not None:
            steps_of[root_key[0]] |= {k[1] for k in map(_key, thread) if k is not None}
    not_told = not_resolved_root = 0
    for incident_id, events in state.timelines.items():
        expected = {f"e{e['seq']}" for e in events if _tells(e)}
        missing_steps = expected - steps_of.get(incident_id, set())
        if missing_steps:
            not_told += 1
            problems.add(
                "slack replies missing",
                f"{incident_id}: Slack replies missing for {sorted(missing_steps)}",
            )
        extra = steps_of.get(incident_id, set()) - expected
        if extra:
            problems.add(
                "slack replies for untold events",
                f"{incident_id}: Slack replies for no told event: {sorted(extra)}",
            )
        incident_roots = roots_of.get(incident_id, [])
        if (
            state.incidents[incident_id].get("status") == "resolved"
            and len(incident_roots) == 1
            and "RESOLVED" not in incident_roots[0].text
        ):
            not_resolved_root += 1
            problems.add(
                "slack root not showing RESOLVED",
                f"{incident_id}: its Slack root does not say RESOLVED",
            )

    # -- the queue drained, nothing dead-lettered
    if state.queue_len != 0:
        problems.add("queue not empty", f"queue: XLEN {state.queue_len}, not 0")
    if state.pending != 0:
        problems.add(
            "queue entries pending", f"queue: {state.pending} entries pending in the group, not 0"
        )
    if state.lag != 0:
        problems.add(
            "queue group lag", f"queue: group lag {state.lag}, not 0 (entries never delivered)"
        )
    if state.dead_letters != 0:
        problems.add("dead letters", f"dead letters: {state.dead_letters}")
    if stats.failures:
        problems.add(
            "notifications lost by the sender",
            f"sender: {len(stats.failures)} notifications lost: {stats.failures[:5]}",
        )

    expected_incidents = sum(len(g.episodes) for g in groups)
    figures: dict[str, Any] = {
        "groups": len(groups),
        "notifications": stats.notifications,
        "copies_sent": stats.copies,
        "sent_to_both": stats.to_both,
        "http_attempts": stats.attempts,
        "retries": stats.retries,
        "answers": dict(sorted(stats.statuses.items())),
        "lost_by_sender": len(stats.failures),
        "incidents_expected": expected_incidents,
        "incidents": len(state.incidents),
        "episodes_doubled": doubled,
        "episodes_missing": missing,
        "open": len(open_ids),
        "slack_roots": len(roots),
        "slack_replies": len(replies),
        "slack_edits": sum(len(m.edits) for m in roots),
        "slack_messages": len(messages),
        "slack_requests": len(slack.requests),
        "replies_doubled": doubled_replies,
        "incidents_not_fully_told": not_told,
        "roots_not_resolved": not_resolved_root,
        "queue_len": state.queue_len,
        "pending": state.pending,
        "lag": state.lag,
        "dead_letters": state.dead_letters,
        "timers": state.timers,
    }
    return Outcome(figures, problems)


# ------------------------------------------------------------------------------- the run

Chaos = Callable[[StormSender], Awaitable[dict[str, Any]]]
ClientFactory = Callable[[], aioredis.Redis]


@dataclass
class StormWorld:
    slack: FakeSlack
    channel_id: str
    prefix: str
    replicas: list[Replica]


@contextlib.asynccontextmanager
async def storm_world(
    redis_env: dict[str, str], workdir: Path, *, replicas: int = 2
) -> AsyncIterator[StormWorld]:
    """The fake Slack in this event loop, and ``replicas`` serve processes on one prefix.
    The processes start off the loop (the fake must answer while they start)."""
    async with FakeSlack() as slack:
        channel_id = slack.add_channel(CHANNEL)
        prefix = f"storm-{uuid.uuid4().hex[:10]}"
        env = replica_env(slack, channel_id, prefix, redis_env)
        procs = [Replica(f"replica{i}", env, workdir) for i in range(replicas)]
        try:
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
            yield StormWorld(slack, channel_id, prefix, procs)
        finally:
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


async def run_storm(
    world: StormWorld,
    shape: StormShape,
    client: ClientFactory,
    *,
    name: str,
    chaos: Chaos | None = None,
    converge_timeout_s: float | None = None,
    quiet_s: float = 15.0,
) -> Outcome:
    """Send the storm (with ``chaos`` alongside, started at once), then wait until every
    check holds, or until nothing has moved for ``quiet_s`` with the queue and the timers
    empty, or ``converge_timeout_s``; the outcome of the last look."""
    groups = build_groups(shape)
    sender = StormSender([r.url for r in world.replicas], shape)
    started = time.monotonic()
    chaos_task = asyncio.create_task(chaos(sender)) if chaos is not None else None
    await sender.run(groups)
    sent_s = time.monotonic() - started
    chaos_figures = await chaos_task if chaos_task is not None else {}

    timeout_s = converge_timeout_s or (90.0 + shape.total * 0.01)
    deadline = time.monotonic() + timeout_s
    quiet_since, signature = time.monotonic(), None
    while True:
        c = client()
        try:
            state = await read_redis(c, world.prefix)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            state = None
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            await c.aclose()
        now = time.monotonic()
        if state is not None:
            outcome = check(groups, state, world.slack, world.channel_id, sender.stats)
            if outcome.ok:
                break
            settled = state.queue_len == 0 and not state.pending and state.timers == 0
            if not settled or outcome.settled_signature() != signature:
                quiet_since, signature = now, outcome.settled_signature()
            elif now - quiet_since > quiet_s:
                break
        elif now > deadline:
            raise AssertionError(f"{name}: Redis unreadable at the end: {reason}")
        if now > deadline:
            break
        await asyncio.sleep(1.0)

    total_s = time.monotonic() - started
    outcome.figures = {
        "scenario": name,
        **outcome.figures,
        **chaos_figures,
        "replica_starts": sum(r.starts for r in world.replicas),
        "seconds_sending": round(sent_s, 1),
        "seconds_to_converge": round(total_s - sent_s, 1),
        "seconds_total": round(total_s, 1),
    }
    if not outcome.ok:
        if state is not None:
            c = client()
            try:
                for incident_id in _untold(outcome, state)[:3]:
                    outcome.problems.add(
                        "diagnosis: an incident with Slack problems, as Redis holds it",
                        await explain(c, world.prefix, incident_id),
                    )
            finally:
                await c.aclose()
            named = _groups_named(outcome, by_service={g.service: g for g in groups})
            if named:
                c = client()
                try:
                    for group in named[:3]:
                        outcome.problems.add(
                            "diagnosis: a group's ordering and signals, as Redis holds them",
                            await explain_group(c, world.prefix, group),
                        )
                finally:
                    await c.aclose()
            if state.pending or state.queue_len:
                c = client()
                try:
                    outcome.problems.add(
                        "diagnosis: the queue, as Redis holds it",
                        await explain_queue(c, world.prefix),
                    )
                finally:
                    await c.aclose()
        for r in world.replicas:
            logs = r.stderr_tail(6, only_problems=True)
            if logs:
                outcome.problems.add("diagnosis: the replicas' last warnings and errors", logs)
    print(f"\n[storm {name}] " + outcome.summary().replace("\n", f"\n[storm {name}] "))
    return outcome


def _untold(outcome: Outcome, state: RedisState) -> list[str]:
    """Incidents the Slack problems name, first seen first."""
    named = []
    for kind, detail in outcome.problems:
        incident_id = detail.split(":", 1)[0]
        if (
            kind.startswith(("slack", "incident without"))
            and incident_id in state.incidents
            and incident_id not in named
        ):
            named.append(incident_id)
    return named


async def explain(client: aioredis.Redis, prefix: str, incident_id: str) -> str:
    """What Redis holds of one incident's Slack delivery: its cursor and refs, its
    processed cursor, the (incident, sink) lock, each effect record."""
    base = "{" + prefix + "}"
    key = f"{base}:incident:{incident_id}"
    ledger = await client.hgetall(f"{key}:ledger")
    delivery = ledger.pop("delivery:slack", None)
    processed = await client.get(f"{key}:processed")
    events = await client.llen(f"{key}:timeline")
    lock = f"{base}:lock:notify:{incident_id}:slack"
    lock_value, lock_ttl = await client.get(lock), await client.pttl(lock)
    lines = [
        f"{incident_id}: timeline {events} events, processed cursor {processed}, "
        f"delivery:slack {delivery}, lock {lock_value!r} (pttl {lock_ttl})"
    ]
    for name, record in sorted(ledger.items()):
        if not name.startswith("delivery:"):
            lines.append(f"    {incident_id}:{name}: {record[:120]}")
    return "\n".join(lines)


def _groups_named(outcome: Outcome, *, by_service: dict[str, Group]) -> list[Group]:
    """Groups an incident or episode problem names (``storm-00042``), first seen first."""
    found: dict[str, Group] = {}
    for kind, detail in outcome.problems:
        if kind.startswith("diagnosis"):
            continue
        for word in detail.replace("(", " ").replace(")", " ").split():
            if word in by_service:
                found.setdefault(word, by_service[word])
    return list(found.values())


async def explain_group(client: aioredis.Redis, prefix: str, group: Group) -> str:
    """A group's ordering record (the last number intake gave, the cursor the workers
    moved, the numbers skipped) and its two alerts' signal records."""
    keys = RedisKeys(prefix)
    order_key = f'{{alertname="{ALERTNAME}",service="{group.service}"}}'
    order = await client.hgetall(keys.order(order_key))
    skipped = await client.smembers(keys.order_skipped(order_key))
    lines = [f"{group.service}: order {order} skipped {sorted(skipped)}"]
    for name, fp in (("A", group.fingerprint_a), ("B", group.fingerprint_b)):
        record = await client.hgetall(keys.signal(alertmanager_dedupe_key(fp)))
        lines.append(f"    {name} {fp}: {record}")
    return "\n".join(lines)


async def explain_queue(client: aioredis.Redis, prefix: str, *, entries: int = 4) -> str:
    """The consumers of the queue's group, and the first pending entries: who holds them,
    for how long, how often delivered, their signal and where their ordering key is."""
    base = "{" + prefix + "}"
    queue = f"{base}:queue"
    lines = ["consumers:"]
    for consumer in await client.xinfo_consumers(queue, "workers"):
        lines.append(f"    {consumer}")
    pending = await client.xpending_range(queue, "workers", min="-", max="+", count=entries)
    for p in pending:
        entry_id = p["message_id"]
        found = await client.xrange(queue, min=entry_id, max=entry_id)
        fields = found[0][1] if found else {}
        signal = json.loads(fields.get("signal", "{}"))
        order_key = fields.get("order")
        order = {}
        if order_key:
            digest = hashlib.sha256(order_key.encode()).hexdigest()[:32]
            order = await client.hgetall(f"{base}:order:{digest}")
        lines.append(
            f"  {entry_id}: consumer {p['consumer']}, idle {p['time_since_delivered']} ms, "
            f"delivered {p['times_delivered']}x; signal {signal.get('status')} "
            f"{signal.get('labels', {}).get('service')}/{signal.get('labels', {}).get('instance')} "
            f"startsAt {signal.get('starts_at')}; order seq {fields.get('seq')} of "
            f"{order_key!r}: {order}"
        )
    return "\n".join(lines)


def direct_client(port: int) -> ClientFactory:
    return lambda: aioredis.Redis(port=port, decode_responses=True, socket_timeout=10)


def sentinel_client(sentinel: SentinelServer) -> ClientFactory:
    """A client of whichever server the sentinel calls master now."""

    def make() -> aioredis.Redis:
        host, port = current_master(sentinel)
        return aioredis.Redis(host=host, port=port, decode_responses=True, socket_timeout=10)

    return make


def current_master(sentinel: SentinelServer) -> tuple[str, int]:
    client = sentinel.client()
    try:
        host, port = client.sentinel_get_master_addr_by_name(sentinel.master_name)
        return str(host), int(port)
    finally:
        client.close()
