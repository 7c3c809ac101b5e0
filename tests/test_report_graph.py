"""The error-rate graph of an incident's window: the series drawn as a line that stops
where Prometheus had no sample, the alert, each action and the resolve marked, hostile text
escaped; an SVG for the page and the postmortem, a PNG for Slack."""

from __future__ import annotations

import io
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from responder.domain.decision import PlannedAction, PlannedProbe
from responder.domain.incident import Incident, IncidentStatus
from responder.domain.plans import PrometheusProbe, SetEnv
from responder.domain.timeline import TimelineEvent
from responder.notify.planners import Renderer
from responder.notify.recap import Recap
from responder.ports import IncidentView
from responder.redaction import Redactor
from responder.render.templates import Templates
from responder.report.graph import (
    error_rate_graph,
    graph_from_files,
    graph_png,
    graph_query,
    graph_svg,
)
from responder.report.reports import Reports
from responder.rules.engine import RuleSet

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
DEFAULTS = Path(__file__).resolve().parents[1] / "responder" / "render" / "defaults"
START = T0 - timedelta(minutes=30)
END = T0 + timedelta(minutes=60)
STEP_S = 60.0
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = 'prod/<script>alert("x")</script>&\x1b[31m\u202e'
RATIO = "sum(rate(errors[5m])) / sum(rate(requests[5m]))"


def event(seq: int, minutes: float, kind: str, detail: str = "", **data: Any) -> TimelineEvent:
    return TimelineEvent(
        seq=seq, at=T0 + timedelta(minutes=minutes), kind=kind, detail=detail, data=data
    )


def view(target: str = "production/posthog-integration") -> IncidentView:
    probe = PrometheusProbe(
        type="prometheus",
        queries={"errors_per_second": "sum(rate(errors[5m]))", "error_ratio": RATIO},
    )
    action = SetEnv.model_validate(
        {
            "type": "set_env",
            "namespace": "production",
            "deployment": "posthog-integration",
            "env": {"MODE": "queue"},
            "verify": {"query": RATIO, "below": 0.05},
        }
    )
    incident = Incident(
        id="inc-1",
        group_key="g",
        title="PostHog errors",
        status=IncidentStatus.RESOLVED,
        opened_at=T0,
        updated_at=T0,
        resolved_at=T0 + timedelta(minutes=40),
        planned_probes=(PlannedProbe(rule="r", spec=probe),),
        planned_actions=(PlannedAction(rule="r", spec=action, dry_run=False),),
    )
    timeline = (
        event(0, 0, "incident.opened"),
        event(1, 5, "action.applied", action="set_env", target=target),
        event(2, 10, "action.dry_run", action="scale", target="production/other"),
        event(3, 40, "incident.resolved"),
        event(4, 40, "action.reverted", action="set_env", target=target),
    )
    return IncidentView(incident=incident, timeline=timeline)


def matrix(*values: tuple[float, str], metric: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "resultType": "matrix",
        "result": [{"metric": metric or {}, "values": [[t, v] for t, v in values]}],
    }


def samples(minutes: range, value: str = "0.2") -> list[tuple[float, str]]:
    return [((START + timedelta(minutes=m)).timestamp(), value) for m in minutes]


def graph_of(data: dict[str, Any], v: IncidentView | None = None, **kw: Any) -> Any:
    return error_rate_graph(
        v or view(),
        data,
        query=RATIO,
        name="error_ratio",
        start=START,
        end=END,
        step_s=STEP_S,
        **kw,
    )


def test_graph_is_of_the_triage_error_ratio_query() -> None:
    assert graph_query(view().incident) == ("error_ratio", RATIO)


def test_svg_has_the_line_the_markers_and_says_what_it_shows() -> None:
    graph = graph_of(matrix(*samples(range(0, 90))))
    svg = graph_svg(graph)
    root = ET.fromstring(svg)  # noqa: S314 - our own output: it must be well-formed XML
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.find(f"{SVG}title") is not None
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert RATIO in (desc.text or "")
    [line] = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "series"]
    assert len(line.get("points", "").split()) == 90
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    # the alert, each action (applied, dry-run, reverted) and the resolve, each at its time
    assert any("03:00" in t and "alert" in t for t in texts)
    assert any(
        "03:05" in t and "applied: set_env on production/posthog-integration" in t for t in texts
    )
    assert any("03:10" in t and "dry-run: scale on production/other" in t for t in texts)
    assert any("03:40" in t and "resolved" in t for t in texts)
    assert any("03:40" in t and "reverted: set_env" in t for t in texts)
    # times on the axis in UTC, and the verification's threshold
    assert "02:30" in texts
    assert "UTC, 2026-11-29" in texts
    assert any("verified below 0.05" in t for t in texts)


def test_threshold_of_the_decisions_condition_wins() -> None:
    graph = graph_of(matrix(*samples(range(0, 90))), conditions=["prometheus.error_ratio > 0.5"])
    assert graph.threshold == 0.5
    assert "error_ratio > 0.5" in graph.threshold_label


def test_hostile_labels_are_escaped_and_inert() -> None:
    graph = graph_of(matrix(*samples(range(0, 90))), view(target=HOSTILE))
    svg = graph_svg(graph)
    root = ET.fromstring(svg)  # noqa: S314 - our own output, under test
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "\x1b" not in svg
    assert "\u202e" not in svg
    assert any("<script>" in (t.text or "") for t in root.iter(f"{SVG}text"))  # shown as text


def test_gaps_are_drawn_as_gaps_not_zeros() -> None:
    data = matrix(*samples(range(0, 20)), *samples(range(30, 50)), *samples(range(50, 51), "NaN"))
    svg = graph_svg(graph_of(data))
    runs = re.findall(r'<polyline class="series" points="([^"]*)"', svg)
    assert [len(r.split()) for r in runs] == [20, 20]
    # a lone sample between two gaps is a dot
    lone = matrix(*samples(range(0, 10)), *samples(range(20, 21)))
    assert svg.count("<circle") == 0
    assert graph_svg(graph_of(lone)).count('<circle class="series"') == 1


def test_no_sample_at_all_is_no_graph() -> None:
    assert graph_of({"resultType": "matrix", "result": []}) is None
    assert graph_of(matrix(*samples(range(0, 5), "NaN"))) is None
    graph, note = graph_from_files(view(), {})
    assert graph is None
    assert "could not be asked" in note


def test_png_decodes_and_has_the_width_asked() -> None:
    graph = graph_of(matrix(*samples(range(0, 90))), view(target=HOSTILE))
    png = graph_png(graph, width_px=800)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.width == 800
    assert 300 < image.height < 800
    assert png == graph_png(graph, width_px=800)  # the same bytes each time


class RecordedWindow:
    """The ``WindowCollector`` port answering as the evidence collector did: the range
    answer of the rules' query, filed as the bundle files it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def collect(
        self, incident: Incident, now: datetime, *, pods: Any = ()
    ) -> dict[str, bytes]:
        return dict(self.files)


def reports_with(files: dict[str, bytes]) -> Reports:
    templates = Templates([DEFAULTS])
    return Reports(
        templates=templates,
        recap=Recap(renderer=Renderer(templates=templates)),
        rules=RuleSet,
        redact=Redactor(),
        collector=RecordedWindow(files),
    )


def ranged(data: dict[str, Any]) -> dict[str, bytes]:
    body = {"query": RATIO, "start": START.isoformat(), "end": END.isoformat(), "step_s": STEP_S}
    return {"prometheus/error_ratio.json": json.dumps({**body, "data": data}).encode()}


async def test_the_draft_and_the_bundle_show_the_graph_of_the_bundles_own_ranges() -> None:
    now = END
    written = await reports_with(ranged(matrix(*samples(range(0, 90))))).report(
        view(), now, stem="inc-1-3"
    )
    assert written.graph is not None
    assert "](inc-1-3.svg)" in written.draft
    with tarfile.open(fileobj=io.BytesIO(written.bundle), mode="r:gz") as tar:
        inside = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert inside["inc-1/graph.svg"] == graph_svg(written.graph).encode()
    assert b"](graph.svg)" in inside["inc-1/postmortem.md"]


async def test_a_window_without_samples_has_no_graph_and_the_draft_says_so() -> None:
    written = await reports_with(ranged({"resultType": "matrix", "result": []})).report(
        view(), END, stem="inc-1-3"
    )
    assert written.graph is None
    assert "No error-rate graph: Prometheus had no data for it in the window." in written.draft
    assert ".svg" not in written.draft
    with tarfile.open(fileobj=io.BytesIO(written.bundle), mode="r:gz") as tar:
        assert "inc-1/graph.svg" not in tar.getnames()
