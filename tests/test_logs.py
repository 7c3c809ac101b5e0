"""JSON logs: one object per line, context ids merged in, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from responder import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure(level="INFO", secrets=["tok-ABCDEF-123"], stream=stream)
    yield stream
    logs.reset()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_are_json_with_context(captured: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1", incident_id="inc-9")
    structlog.get_logger("t").info("incident event", kind="incident.opened")
    [record] = lines(captured)
    assert record["event"] == "incident event"
    assert (record["request_id"], record["incident_id"]) == ("r-1", "inc-9")
    assert record["level"] == "info"
    assert record["timestamp"].endswith("Z")


def test_known_secrets_are_redacted_everywhere(captured: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.warning("bad header", header="Bearer tok-ABCDEF-123", nested={"t": "tok-ABCDEF-123"})
    try:
        raise ValueError("connect failed with tok-ABCDEF-123")
    except ValueError:
        log.exception("failure")
    logging.getLogger("some.library").warning("library says tok-ABCDEF-123")
    text = captured.getvalue()
    assert "tok-ABCDEF-123" not in text
    assert text.count(logs.REDACTED) >= 4


def test_level_filters(captured: io.StringIO) -> None:
    structlog.get_logger("t").debug("noise")
    assert captured.getvalue() == ""


def test_a_new_configuration_reaches_loggers_that_cached_the_old_one(
    captured: io.StringIO,
) -> None:
    # The service's module loggers cache their logger on first use (a call below the level
    # then costs next to nothing); configuring again must still redirect them.
    from responder import worker

    worker.log.warning("first")
    assert [r["event"] for r in lines(captured)] == ["first"]
    again = io.StringIO()
    logs.configure(level="WARNING", secrets=[], stream=again)
    worker.log.warning("second")
    worker.log.info("below the level")
    assert [r["event"] for r in lines(again)] == ["second"]
    assert [r["event"] for r in lines(captured)] == ["first"]


def test_module_loggers_are_bound_once_configured_and_lazy_again_after_reset(
    captured: io.StringIO,
) -> None:
    # A module's logger is swapped for the logger its lazy proxy binds (a call through
    # the proxy costs ~2 µs more, several times per webhook); reset puts the proxy back.
    from structlog._config import BoundLoggerLazyProxy

    from responder.web import intake

    assert not isinstance(intake.log, BoundLoggerLazyProxy)
    structlog.contextvars.bind_contextvars(request_id="r-2")
    intake.log.info("webhook accepted", header="Bearer tok-ABCDEF-123")
    [record] = lines(captured)
    assert record["request_id"] == "r-2"
    assert record["header"] == f"Bearer {logs.REDACTED}"
    logs.reset()
    assert isinstance(intake.log, BoundLoggerLazyProxy)
    again = io.StringIO()
    logs.configure(level="INFO", secrets=[], stream=again)
    assert not isinstance(intake.log, BoundLoggerLazyProxy)
    intake.log.info("after a reset")
    assert [r["event"] for r in lines(again)] == ["after a reset"]
