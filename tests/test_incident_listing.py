"""Listing incidents a page at a time: newest first, filters, cursors that hold while
incidents open, on both stores; over HTTP with its 400s; and ``responder incidents list``."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from typer.testing import CliRunner

from responder.adapters import redis_store
from responder.cli import cli
from responder.domain.incident import (
    Incident,
    IncidentChange,
    IncidentLookup,
    IncidentStatus,
)
from responder.domain.severity import Severity
from responder.domain.signal import epoch_ms
from responder.domain.timeline import TimelineEvent
from responder.ports import (
    IncidentCursor,
    IncidentMutator,
    IncidentState,
    IncidentView,
    MutationItem,
    Store,
    WorkQueue,
)
from tests.support.service import Service, example

OPEN, ACKED, RESOLVED = IncidentStatus.OPEN, IncidentStatus.ACKED, IncidentStatus.RESOLVED
SEVERITIES: tuple[Severity | None, ...] = (*Severity, None)


@dataclass(frozen=True)
class Made:
    """An incident written for a test, with what the listing orders and filters by."""

    id: str
    opened_at: datetime
    status: IncidentStatus
    severity: Severity | None

    @property
    def key(self) -> tuple[int, str]:
        return (epoch_ms(self.opened_at), self.id)


def _opener(made: Made) -> IncidentMutator:
    def mutate(state: IncidentState) -> IncidentChange | None:
        if state.incident is not None:
            return None
        at = made.opened_at
        incident = Incident(
            id=made.id,
            status=made.status,
            group_key=f"listing:{made.id}",
            title=f"listing test {made.id}",
            severity=made.severity,
            opened_at=at,
            updated_at=at,
            acked_at=at if made.status is not OPEN else None,
            resolved_at=at if made.status is RESOLVED else None,
            events_count=1,
        )
        opened = TimelineEvent(seq=0, at=at, kind="incident.opened", detail="opened")
        return IncidentChange(incident=incident, events=(opened,), opened=True)

    return mutate


async def open_incidents(
    store: Store, count: int, *, base: datetime, rng: random.Random, every_ms: int = 7
) -> list[Made]:
    """``count`` incidents, opened from ``base`` on; three at a time share a millisecond
    (their ids, random, decide their order), each at its own microsecond within it."""
    made = [
        Made(
            id=f"inc-{rng.getrandbits(48):012x}",
            opened_at=base
            + timedelta(milliseconds=(i // 3) * every_ms, microseconds=rng.randrange(1000)),
            status=(OPEN, ACKED, RESOLVED)[(i // 2) % 3],
            severity=SEVERITIES[i % len(SEVERITIES)],
        )
        for i in range(count)
    ]
    for start in range(0, count, 500):
        await store.mutate_incidents(
            [
                MutationItem(
                    lookups=(IncidentLookup(kind="group", key=f"listing:{m.id}"),),
                    mutators=(_opener(m),),
                )
                for m in made[start : start + 500]
            ]
        )
    return made


def newest_first(made: Sequence[Made]) -> list[str]:
    return [m.id for m in sorted(made, key=lambda m: m.key, reverse=True)]


def _base() -> datetime:
    # recent (resolved incidents are kept 90 days), on a whole millisecond
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


async def every_page(
    store: Store, *, limit: int, after: IncidentCursor | None = None, **filters: Any
) -> list[list[IncidentView]]:
    pages = []
    for _ in range(10_000):
        page = await store.list_incidents(after=after, limit=limit, **filters)
        pages.append(page.incidents)
        if page.next is None:
            return pages
        after = page.next
    raise AssertionError("the cursor never ended")


def ids(pages: Sequence[Sequence[IncidentView]]) -> list[str]:
    return [v.incident.id for page in pages for v in page]


# ------------------------------------------------------------------------------ the cursor


def test_a_cursor_is_opaque_and_round_trips() -> None:
    cursor = IncidentCursor(1764386486007, "inc-019acdb1f2f7a1b2c3")
    token = cursor.encode()
    assert "inc-" not in token
    assert "=" not in token
    assert IncidentCursor.decode(token) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "***",
        "bm90IGEgY3Vyc29y",
        IncidentCursor(5, "x").encode() + "!",
        "x" * 1000,
        # "-5:inc", ":inc", "12:"
        "LTU6aW5j",
        "OmluYw",
        "MTI6",
    ],
)
def test_anything_else_is_not_a_cursor(token: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        IncidentCursor.decode(token)


# ---------------------------------------------------------------------------- both stores


async def test_pages_hold_every_incident_once_newest_first(
    backend: tuple[Store, WorkQueue],
) -> None:
    store, _ = backend
    made = await open_incidents(store, 2_500, base=_base(), rng=random.Random(1))
    pages = await every_page(store, limit=1000)
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert ids(pages) == newest_first(made)
    # the views are whole: the incident with its timeline
    first = pages[0][0]
    assert [e.kind for e in first.timeline] == ["incident.opened"]


async def test_filters_page_like_the_whole_list(backend: tuple[Store, WorkQueue]) -> None:
    store, _ = backend
    made = await open_incidents(store, 700, base=_base(), rng=random.Random(2))
    since = sorted(m.opened_at for m in made)[400]  # within a millisecond shared by others
    cases: list[tuple[dict[str, Any], list[Made]]] = [
        ({"status": OPEN}, [m for m in made if m.status is OPEN]),
        ({"status": [OPEN, ACKED]}, [m for m in made if m.status in (OPEN, ACKED)]),
        ({"status": list(IncidentStatus)}, made),
        ({"severity": [Severity.P1, Severity.P3]}, [m for m in made if m.severity in ("P1", "P3")]),
        ({"since": since}, [m for m in made if m.opened_at >= since]),
        (
            {"status": [RESOLVED, ACKED], "severity": Severity.P2, "since": since},
            [
                m
                for m in made
                if m.status in (RESOLVED, ACKED) and m.severity == "P2" and m.opened_at >= since
            ],
        ),
        ({"since": datetime.now(UTC)}, []),
    ]
    for filters, expected in cases:
        pages = await every_page(store, limit=37, **filters)
        assert ids(pages) == newest_first(expected), filters
        assert all(len(p) <= 37 for p in pages)
    [only] = await every_page(store, limit=1000, status=ACKED, severity=Severity.P4)
    assert {v.incident.status for v in only} == {ACKED}
    assert {v.incident.severity for v in only} == {Severity.P4}


async def test_a_bounded_look_gives_short_pages_and_loses_nothing(
    backend: tuple[Store, WorkQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis looks at so many incidents per call at most: a selective filter then answers
    # short (even empty) pages with a cursor; paging on still finds every match once.
    monkeypatch.setattr(redis_store, "_LIST_EXAMINED_MAX", 40)
    monkeypatch.setattr(redis_store, "_LIST_CHUNK_MIN", 16)
    store, _ = backend
    made = await open_incidents(store, 400, base=_base(), rng=random.Random(3))
    pages = await every_page(store, limit=25, severity=Severity.P2, status=OPEN)
    expected = newest_first([m for m in made if m.severity == "P2" and m.status is OPEN])
    assert ids(pages) == expected
    assert all(len(p) <= 25 for p in pages)


async def test_a_cursor_holds_while_incidents_open(backend: tuple[Store, WorkQueue]) -> None:
    store, _ = backend
    rng = random.Random(4)
    base = _base()
    made = await open_incidents(store, 300, base=base, rng=rng)
    first = await store.list_incidents(limit=100)
    assert first.next is not None
    # newer incidents open between pages; and some incidents change status
    newer = await open_incidents(store, 60, base=base + timedelta(hours=1), rng=rng)
    second = await store.list_incidents(after=first.next, limit=100)
    newer += await open_incidents(store, 60, base=base + timedelta(hours=2), rng=rng)
    rest = await every_page(store, after=second.next, limit=100) if second.next else []
    seen = ids([first.incidents, second.incidents, *rest])
    assert seen == newest_first(made)  # nothing new, nothing skipped, nothing twice
    assert not {m.id for m in newer} & set(seen)
    # a new listing starts with the newest
    again = await store.list_incidents(limit=120)
    assert [v.incident.id for v in again.incidents] == newest_first(newer)


async def test_a_cursor_past_since_or_past_the_end_is_the_end(
    backend: tuple[Store, WorkQueue],
) -> None:
    store, _ = backend
    base = _base()
    made = await open_incidents(store, 10, base=base, rng=random.Random(5))
    oldest = min(made, key=lambda m: m.key)
    end = IncidentCursor(*oldest.key)
    page = await store.list_incidents(after=end)
    assert (page.incidents, page.next) == ([], None)
    page = await store.list_incidents(after=end, since=base + timedelta(seconds=1))
    assert (page.incidents, page.next) == ([], None)
    # a page that ends exactly at the last incident says so
    page = await store.list_incidents(limit=10)
    assert (len(page.incidents), page.next) == (10, None)


# -------------------------------------------------------------------------------- HTTP


async def get_pages(service: Service, query: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    cursor = None
    while True:
        params = query | ({"cursor": cursor} if cursor else {})
        resp = await service.client.get("/v1/incidents?" + urllib.parse.urlencode(params))
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        docs.append(doc)
        cursor = doc["next_cursor"]
        if cursor is None:
            return docs
        assert len(docs) < 1000


async def test_http_pages_through_every_incident(service: Service) -> None:
    store = service.runtime.store
    made = await open_incidents(store, 2_500, base=_base(), rng=random.Random(6))
    docs = await get_pages(service, {"limit": "1000"})
    assert [len(d["incidents"]) for d in docs] == [1000, 1000, 500]
    listed = [i["id"] for d in docs for i in d["incidents"]]
    assert listed == newest_first(made)
    assert docs[-1]["next_cursor"] is None
    # without a limit: 100 a page
    resp = await service.client.get("/v1/incidents")
    doc = await resp.json()
    assert [i["id"] for i in doc["incidents"]] == listed[:100]
    assert doc["next_cursor"]


async def test_http_filters_are_comma_separated(service: Service) -> None:
    made = await open_incidents(service.runtime.store, 300, base=_base(), rng=random.Random(7))
    since = sorted(m.opened_at for m in made)[150]
    query = {
        "status": "open,resolved",
        "severity": "P1, P4",
        "since": since.isoformat().replace("+00:00", "Z"),
        "limit": "9",
    }
    docs = await get_pages(service, query)
    expected = [
        m
        for m in made
        if m.status in (OPEN, RESOLVED) and m.severity in ("P1", "P4") and m.opened_at >= since
    ]
    assert [i["id"] for d in docs for i in d["incidents"]] == newest_first(expected)
    # an offset's "+" sent unencoded arrives as a space: still understood
    later = since.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert "+02:00" in later
    resp = await service.client.get(f"/v1/incidents?limit=1000&since={later}")
    assert resp.status == 200, await resp.text()
    got = [i["id"] for i in (await resp.json())["incidents"]]
    assert got == newest_first([m for m in made if m.opened_at >= since])


async def test_http_cursor_holds_while_webhooks_open_incidents(service: Service) -> None:
    made = await open_incidents(service.runtime.store, 250, base=_base(), rng=random.Random(8))
    resp = await service.client.get("/v1/incidents?limit=100")
    first = await resp.json()
    # a webhook opens an incident between pages, through the workers
    resp = await service.post_alertmanager(example("alertmanager/posthog-upstream-503-firing.json"))
    assert resp.status == 200
    await service.idle()
    rest = await get_pages(service, {"limit": "100", "cursor": first["next_cursor"]})
    listed = [i["id"] for d in [first, *rest] for i in d["incidents"]]
    assert listed == newest_first(made)
    [newest] = (await (await service.client.get("/v1/incidents?limit=1")).json())["incidents"]
    assert newest["rule"] == "upstream-errors"
    assert newest["id"] not in listed


BAD_QUERIES = [
    ("status=sleeping", "status"),
    ("status=open,sleeping", "status"),
    ("status=open&status=acked", "status"),
    ("severity=P5", "severity"),
    ("severity=p1", "severity"),
    ("since=yesterday", "since"),
    ("since=2026-11-29T03:00:00", "since"),  # no offset
    ("since=2026-11-29", "since"),
    ("since=2026-13-29T03:00:00Z", "since"),
    ("since=1764386486", "since"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("limit=1_000", "limit"),
    ("limit=5&limit=6", "limit"),
    ("cursor=", "cursor"),
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=" + IncidentCursor(1, "inc-1").encode() + "&cursor=x", "cursor"),
]


async def test_http_bad_values_are_400_naming_the_parameter(service: Service) -> None:
    for query, field in BAD_QUERIES:
        resp = await service.client.get("/v1/incidents?" + query)
        assert resp.status == 400, query
        body = await resp.json()
        assert body["error"] == "invalid query"
        assert body["field"] == field, query
        assert field in body["detail"]


async def test_openapi_describes_the_listing(service: Service) -> None:
    doc = await (await service.client.get("/openapi.json")).json()
    get = doc["paths"]["/v1/incidents"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert set(params) == {"status", "severity", "since", "limit", "cursor"}
    assert params["status"]["schema"]["items"]["enum"] == ["open", "acked", "resolved"]
    assert params["severity"]["schema"]["items"]["enum"] == ["P1", "P2", "P3", "P4"]
    assert params["status"]["explode"] is False
    assert params["since"]["schema"]["format"] == "date-time"
    assert set(get["responses"]) >= {"200", "400", "503"}
    listing = doc["components"]["schemas"]["IncidentList"]
    assert {"incidents", "next_cursor"} <= set(listing["properties"])


# ---------------------------------------------------------------------------------- CLI


async def run_cli(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def test_cli_lists_every_page_with_all(service: Service) -> None:
    made = await open_incidents(service.runtime.store, 1_205, base=_base(), rng=random.Random(9))
    url = service.base_url
    every = await run_cli("incidents", "list", "--url", url, "--all", "--json")
    assert every.exit_code == 0, every.output
    doc = json.loads(every.stdout)
    assert [i["id"] for i in doc["incidents"]] == newest_first(made)
    assert doc["next_cursor"] is None

    some = await run_cli("incidents", "list", "--url", url, "--limit", "5")
    assert some.exit_code == 0, some.output
    lines = some.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == newest_first(made)[:5]
    assert "--all" in some.stderr

    since = sorted(m.opened_at for m in made)[1_000]
    filtered = await run_cli(
        "incidents",
        "list",
        "--url",
        url,
        "--all",
        "--json",
        "--limit",
        "50",
        "--status",
        "acked,resolved",
        "--severity",
        "P2",
        "--since",
        since.isoformat(),
    )
    assert filtered.exit_code == 0, filtered.output
    expected = [
        m
        for m in made
        if m.status in (ACKED, RESOLVED) and m.severity == "P2" and m.opened_at >= since
    ]
    assert [i["id"] for i in json.loads(filtered.stdout)["incidents"]] == newest_first(expected)

    bad = await run_cli("incidents", "list", "--url", url, "--since", "last week")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: 400 from ")
    assert "since must be an RFC 3339 time" in bad.stderr
