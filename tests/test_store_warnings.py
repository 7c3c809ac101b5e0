"""With Redis unreachable, the repeated warnings name the address (never the password) and
back off, in the real service and in the log processor that does it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import structlog

from responder.logs import StoreWarnings
from tests.support.procs import env_without_responder, free_port

TIMERS = "store unreachable; timers waits"


def test_serve_with_redis_down_names_the_address_and_backs_off() -> None:
    port = free_port()  # nothing listens there
    proc = subprocess.Popen(
        [sys.executable, "-m", "responder", "serve", "--port", str(free_port())],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={
            **env_without_responder(),
            "RESPONDER_REDIS_URL": f"redis://:hunter2-pw@127.0.0.1:{port}/0",
        },
    )
    assert proc.stderr is not None
    warnings: list[dict[str, Any]] = []
    raw: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            raw.append(line)
            if line.startswith("{"):
                warnings.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    # the timers loop retries every half second: three lines written take at least 1+2 s
    # (the backoff's whole schedule is tested with a controlled clock below)
    while time.monotonic() < deadline and sum(w["event"] == TIMERS for w in warnings) < 3:
        time.sleep(0.2)
    proc.terminate()
    proc.wait(timeout=30)
    reader.join(timeout=10)
    proc.stderr.close()
    assert "hunter2" not in "".join(raw)
    store = [w for w in warnings if w["event"].startswith("store unreachable")]
    assert store, raw
    assert {w["redis"] for w in store} == {f"127.0.0.1:{port}"}
    timers = [w for w in store if w["event"] == TIMERS]
    assert len(timers) >= 3, raw
    # every line after the first says how many it stands for, and the gaps grow
    assert all(w.get("repeated", 0) >= 1 for w in timers[1:])
    assert sum(w["repeated"] for w in timers[1:]) >= 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _log(warnings: StoreWarnings, event: str) -> dict[str, Any] | None:
    try:
        return dict(warnings(None, "warning", {"event": event}))
    except structlog.DropEvent:
        return None


def test_one_warning_repeated_is_written_after_1_2_4_s_then_every_cap() -> None:
    clock = FakeClock()
    warnings = StoreWarnings("redis:6379", cap_s=8, clock=clock)
    written = []
    for _ in range(80):  # one every half second for 40 s
        line = _log(warnings, TIMERS)
        if line is not None:
            written.append((clock.now - 1000.0, line.get("repeated", 0)))
        clock.now += 0.5
    assert [at for at, _ in written][:6] == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    assert [n for _, n in written][:6] == [0, 1, 3, 7, 15, 15]
    assert _log(StoreWarnings("redis:6379"), TIMERS) == {"event": TIMERS, "redis": "redis:6379"}


def test_an_outage_over_starts_again_at_one_second_and_other_events_pass() -> None:
    clock = FakeClock()
    warnings = StoreWarnings(None, cap_s=8, clock=clock)
    assert _log(warnings, TIMERS) is not None
    assert _log(warnings, "store unreachable; housekeeping waits") is not None  # its own
    assert _log(warnings, TIMERS) is None
    assert _log(warnings, "incident opened") == {"event": "incident opened"}
    assert _log(warnings, "incident opened") is not None
    clock.now += 30  # quiet longer than the cap: the outage was over
    line = _log(warnings, TIMERS)
    assert line == {"event": TIMERS}  # no address configured, no count carried over
    clock.now += 0.5
    assert _log(warnings, TIMERS) is None


@pytest.mark.parametrize("event", ["store unreachable at start-up", TIMERS])
def test_the_address_is_added_to_each_store_warning(event: str) -> None:
    line = _log(StoreWarnings("redis-main:6380"), event)
    assert line is not None
    assert line["redis"] == "redis-main:6380"
