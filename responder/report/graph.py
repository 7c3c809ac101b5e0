"""The error-rate graph of an incident's window (pure: no I/O).

Built from the Prometheus range data the evidence bundle collects (``adapters/evidence.py``)
and the incident's timeline: the series of the incident's error ratio, with the alert, each
action (applied, dry-run, reverted) and the resolve marked, and the threshold the rules
compare it with when they say one. Drawn as one self-contained ``<svg>`` (the incident
page, the postmortem, the bundle) and as a PNG (Pillow, for Slack, which shows no SVG).

Where Prometheus had no sample the line stops: a gap is drawn as a gap, never as zero. No
sample at all gives no graph (``None``), and whoever would show it says so.

Every text in the graph comes from outside (a query, an action's target, a label value): it
is made one line without control characters (``render.inert``), cut short and escaped.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from responder.domain.incident import Incident
from responder.domain.plans import PrometheusProbe
from responder.domain.timeline import EventKind
from responder.ports import IncidentView
from responder.render.inert import one_line
from responder.rules.engine import RuleSet

MarkerKind = Literal["alert", "applied", "dry_run", "reverted", "resolved"]
# the query of the triage probe the graph prefers: the runbook's "check the error rate"
ERROR_RATIO = "error_ratio"
MAX_SERIES = 5  # lines drawn; an answer with more series is said to have them
MAX_MARKERS = 12  # listed under the plot; the rest counted
_LABEL_CHARS = 80
# a `when` condition on the graphed fact: ``prometheus.error_ratio > 0.05``
_CONDITION = re.compile(r"^\s*prometheus\.([A-Za-z0-9_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Series:
    """One series of the answer: its labels as text, and its samples (epoch s, value);
    ``None``: Prometheus answered NaN or ±Inf there (a gap, as no sample is)."""

    name: str
    points: tuple[tuple[float, float | None], ...]


@dataclass(frozen=True)
class Marker:
    at_s: float  # epoch seconds
    kind: MarkerKind
    label: str


@dataclass(frozen=True)
class Graph:
    title: str
    query: str
    start_s: float
    end_s: float
    step_s: float
    series: tuple[Series, ...]
    markers: tuple[Marker, ...]
    threshold: float | None = None
    threshold_label: str = ""
    more_series: int = 0  # series in the answer beyond MAX_SERIES, not drawn

    def texts_mapped(self, fn: Callable[[str], str]) -> Graph:
        """The same graph with every text through ``fn`` (the redactor: the graph is
        shared as widely as the postmortem)."""
        return replace(
            self,
            title=fn(self.title),
            query=fn(self.query),
            threshold_label=fn(self.threshold_label),
            series=tuple(replace(s, name=fn(s.name)) for s in self.series),
            markers=tuple(replace(m, label=fn(m.label)) for m in self.markers),
        )


def graph_query(incident: Incident) -> tuple[str, str] | None:
    """The query of the incident's error ratio, by its name: the triage Prometheus
    probe's ``error_ratio``, else its first query, else the first action's verification
    query; ``None`` when the rules query nothing."""
    first: tuple[str, str] | None = None
    for probe in incident.planned_probes:
        if isinstance(probe.spec, PrometheusProbe):
            for name, query in probe.spec.queries.items():
                if name == ERROR_RATIO:
                    return name, query
                first = first or (name, query)
    if first is not None:
        return first
    for spec in _action_specs(incident):
        verify = getattr(spec, "verify", None)
        if verify is not None:
            return f"verify {getattr(spec, 'type', 'action')}", verify.query
    return None


def branch_conditions(rules: RuleSet, incident: Incident) -> tuple[str, ...]:
    """The ``when`` of the incident's branch, while its rule is in force: where the
    decision's threshold on the graphed fact is said."""
    rule = rules.rule(incident.pack, incident.branch)
    return rule.spec.when if rule is not None else ()


def _action_specs(incident: Incident) -> list[Any]:
    return [a.planned.spec for a in incident.actions if a.planned is not None] + [
        a.spec for a in incident.planned_actions
    ]


def _threshold(
    incident: Incident, name: str, query: str, conditions: Sequence[str]
) -> tuple[float | None, str]:
    """What the rules compare the graphed query with: the decision's condition on its
    fact (``prometheus.<name> > x``), else an action's verification of the same query
    (``below``/``above``); the first found, said as it is."""
    for condition in conditions:
        found = _CONDITION.match(condition)
        if found and found.group(1) == name:
            try:
                return float(
                    found.group(3)
                ), f"rule: {found.group(1)} {found.group(2)} {found.group(3)}"
            except ValueError:
                continue
    for spec in _action_specs(incident):
        verify = getattr(spec, "verify", None)
        if verify is not None and verify.query == query:
            bound = verify.below if verify.below is not None else verify.above
            word = "below" if verify.below is not None else "above"
            if bound is not None:
                return float(bound), f"verified {word} {bound:g}"
    return None, ""


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _series_name(metric: Any) -> str:
    if not isinstance(metric, Mapping) or not metric:
        return "value"
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def parse_range(data: Mapping[str, Any]) -> list[Series]:
    """A range query's ``data`` (``matrix``) as series, ordered by name; anything else
    (a scalar, a malformed answer) as none."""
    result = data.get("result") if data.get("resultType") == "matrix" else None
    found: list[Series] = []
    for item in result if isinstance(result, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("values"), list):
            continue
        points: list[tuple[float, float | None]] = []
        for sample in item["values"]:
            if isinstance(sample, list | tuple) and len(sample) == 2:
                at = _number(sample[0])
                if at is not None:
                    points.append((at, _number(sample[1])))
        if points:
            found.append(Series(_series_name(item.get("metric")), tuple(sorted(points))))
    return sorted(found, key=lambda s: s.name)


# not characters of XML 1.0, even escaped (one_line drops the control characters)
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def _label(text: Any) -> str:
    said = _NOT_XML.sub("", one_line(str(text)))
    return said if len(said) <= _LABEL_CHARS else said[: _LABEL_CHARS - 1] + "…"


def _markers(view: IncidentView) -> list[Marker]:
    incident = view.incident
    found = [Marker(incident.opened_at.timestamp(), "alert", "alert: incident opened")]
    for event in view.timeline:
        data = event.data
        what = f"{data.get('action', 'action')} on {data.get('target', '?')}"
        if event.kind == EventKind.ACTION_APPLIED:
            found.append(Marker(event.at.timestamp(), "applied", f"applied: {what}"))
        elif event.kind == EventKind.ACTION_DRY_RUN:
            revert = " revert" if data.get("revert_of") else ""
            found.append(Marker(event.at.timestamp(), "dry_run", f"dry-run{revert}: {what}"))
        elif event.kind == EventKind.ACTION_REVERTED:
            found.append(Marker(event.at.timestamp(), "reverted", f"reverted: {what}"))
        elif event.kind == EventKind.INCIDENT_RESOLVED:
            found.append(Marker(event.at.timestamp(), "resolved", "resolved"))
    return [replace(m, label=_label(m.label)) for m in sorted(found, key=lambda m: m.at_s)]


def error_rate_graph(
    view: IncidentView,
    data: Mapping[str, Any],
    *,
    query: str,
    name: str,
    start: datetime,
    end: datetime,
    step_s: float,
    conditions: Sequence[str] = (),
) -> Graph | None:
    """The graph of ``query`` (named ``name`` in the rules) over the window, from its range
    answer ``data``; ``None`` when the answer has no sample. ``conditions``: the ``when``
    of the incident's branch (the threshold, when one names the query's fact)."""
    series = parse_range(data)
    if not any(v is not None for s in series for _, v in s.points):
        return None
    threshold, threshold_label = _threshold(view.incident, name, query, conditions)
    return Graph(
        title=_label(f"Error rate: {view.incident.title}"),
        query=_label(query),
        start_s=start.timestamp(),
        end_s=end.timestamp(),
        step_s=step_s,
        series=tuple(replace(s, name=_label(s.name)) for s in series[:MAX_SERIES]),
        markers=tuple(m for m in _markers(view) if start.timestamp() <= m.at_s <= end.timestamp()),
        threshold=threshold,
        threshold_label=threshold_label,
        more_series=max(0, len(series) - MAX_SERIES),
    )


def graph_from_files(
    view: IncidentView, files: Mapping[str, bytes], *, conditions: Sequence[str] = ()
) -> tuple[Graph | None, str]:
    """The graph from the range data the evidence collector brought (``prometheus/*.json``
    of ``files``: no second query), or ``None`` and why there is none."""
    found = graph_query(view.incident)
    if found is None:
        return None, "No error-rate graph: the rules query no Prometheus metric."
    name, query = found
    for path, raw in sorted(files.items()):
        if not (path.startswith("prometheus/") and path.endswith(".json")):
            continue
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or body.get("query") != query:
                continue
            start = datetime.fromisoformat(str(body["start"]))
            end = datetime.fromisoformat(str(body["end"]))
            step_s = float(body["step_s"])
            data = body["data"]
        except (ValueError, KeyError, TypeError):
            continue
        graph = error_rate_graph(
            view,
            data if isinstance(data, dict) else {},
            query=query,
            name=name,
            start=start,
            end=end,
            step_s=step_s,
            conditions=conditions,
        )
        if graph is None:
            return None, "No error-rate graph: Prometheus had no data for it in the window."
        return graph, ""
    return None, "No error-rate graph: Prometheus could not be asked (see `errors.json`)."


# ----------------------------------------------------------------------------- layout
# One layout in the SVG's own units, drawn by both renderers: the PNG is the SVG's
# picture at another scale.

WIDTH = 560  # viewBox units; at 390 px wide, a 16-unit font is 11 px
_PLOT_TOP = 52
_PLOT_HEIGHT = 200
_LEFT = 62
_RIGHT = 28
_FONT = 16
_SMALL = 14
_ROW = 22
_COLOURS = ("#c0392b", "#2c6fbb", "#7d3c98", "#1e8449", "#b9770e")
_MARKER_COLOURS: dict[MarkerKind, str] = {
    "alert": "#d35400",
    "applied": "#1e8449",
    "dry_run": "#7f8c8d",
    "reverted": "#2c6fbb",
    "resolved": "#117a65",
}
_DASHED: frozenset[MarkerKind] = frozenset({"dry_run", "reverted"})
_NICE_SPANS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class _Text:
    x: float
    y: float
    text: str
    size: int
    anchor: Literal["start", "middle", "end"] = "start"
    colour: str = "#222"


@dataclass(frozen=True)
class _Line:
    points: tuple[tuple[float, float], ...]
    colour: str
    width: float = 1.0
    dashed: bool = False


@dataclass(frozen=True)
class _Layout:
    height: float
    texts: tuple[_Text, ...]
    lines: tuple[_Line, ...]  # grid, axes, threshold, markers
    series: tuple[_Line, ...]  # the data, one polyline per run of samples without a gap
    dots: tuple[tuple[float, float, str], ...]  # a lone sample between gaps


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _y_ticks(top: float) -> list[float]:
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


def _x_ticks(start_s: float, end_s: float) -> list[float]:
    span = max(end_s - start_s, 1)
    step = next((s for s in _NICE_SPANS_S if span / s <= 6), _NICE_SPANS_S[-1])
    first = math.ceil(start_s / step) * step
    return [t for t in range(int(first), int(end_s) + 1, step)]


def _runs(
    points: Sequence[tuple[float, float | None]], step_s: float
) -> list[list[tuple[float, float]]]:
    """The samples as runs without a gap: a run ends at a NaN or where the next sample is
    more than a step and a half later (Prometheus leaves out steps with no data)."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    last: float | None = None
    for at, value in points:
        if value is None or (last is not None and at - last > step_s * 1.5):
            if current:
                runs.append(current)
            current = []
        if value is not None:
            current.append((at, value))
        last = at
    if current:
        runs.append(current)
    return runs


def _clock(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).strftime("%H:%M")


def _layout(graph: Graph) -> _Layout:
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_bottom = _PLOT_TOP + _PLOT_HEIGHT
    span = max(graph.end_s - graph.start_s, 1.0)
    values = [v for s in graph.series for _, v in s.points if v is not None]
    top = max([*values, graph.threshold or 0.0, 0.0])
    bottom = min([*values, 0.0])
    top = top * 1.1 if top > 0 else 1.0
    ticks = _y_ticks(top - bottom) if bottom < 0 else _y_ticks(top)
    if bottom < 0:
        ticks = [bottom + t for t in ticks]
    top = max(top, ticks[-1])

    def x(at_s: float) -> float:
        return _LEFT + (at_s - graph.start_s) / span * plot_w

    def y(value: float) -> float:
        return plot_bottom - (value - bottom) / (top - bottom) * _PLOT_HEIGHT

    texts = [
        _Text(_LEFT, 22, graph.title, _FONT),
        _Text(_LEFT, 42, graph.query, _SMALL, colour="#555"),
    ]
    lines: list[_Line] = []
    for tick in ticks:
        lines.append(_Line(((_LEFT, y(tick)), (WIDTH - _RIGHT, y(tick))), "#e3e3e3"))
        texts.append(_Text(_LEFT - 6, y(tick) + 5, _fmt(tick), _SMALL, "end"))
    for tick in _x_ticks(graph.start_s, graph.end_s):
        lines.append(_Line(((x(tick), plot_bottom), (x(tick), plot_bottom + 5)), "#555"))
        texts.append(_Text(x(tick), plot_bottom + 20, _clock(tick), _SMALL, "middle"))
    lines.append(_Line(((_LEFT, _PLOT_TOP), (_LEFT, plot_bottom)), "#555"))
    lines.append(_Line(((_LEFT, plot_bottom), (WIDTH - _RIGHT, plot_bottom)), "#555"))
    day = datetime.fromtimestamp(graph.start_s, UTC).strftime("%Y-%m-%d")
    texts.append(_Text(WIDTH - _RIGHT, plot_bottom + 38, f"UTC, {day}", _SMALL, "end", "#555"))
    if graph.threshold is not None and bottom <= graph.threshold <= top:
        at = y(graph.threshold)
        lines.append(_Line(((_LEFT, at), (WIDTH - _RIGHT, at)), "#c0392b", 1.0, dashed=True))
        texts.append(
            _Text(WIDTH - _RIGHT - 2, at - 4, graph.threshold_label, _SMALL, "end", "#c0392b")
        )
    series: list[_Line] = []
    dots: list[tuple[float, float, str]] = []
    for i, s in enumerate(graph.series):
        colour = _COLOURS[i % len(_COLOURS)]
        for run in _runs(s.points, graph.step_s):
            if len(run) == 1:
                dots.append((x(run[0][0]), y(run[0][1]), colour))
            else:
                series.append(_Line(tuple((x(t), y(v)) for t, v in run), colour, 2.0))
    row = plot_bottom + 38
    shown = graph.markers[:MAX_MARKERS]
    numbered: list[tuple[float, list[str], str]] = []  # markers too close share a number label
    for n, marker in enumerate(shown, 1):
        colour = _MARKER_COLOURS[marker.kind]
        at = x(marker.at_s)
        lines.append(
            _Line(((at, _PLOT_TOP), (at, plot_bottom)), colour, 1.5, dashed=marker.kind in _DASHED)
        )
        if numbered and at - numbered[-1][0] < 14:
            numbered[-1][1].append(str(n))
        else:
            numbered.append((at, [str(n)], colour))
        row += _ROW
        texts.append(
            _Text(_LEFT, row, f"{n}  {_clock(marker.at_s)}  {marker.label}", _SMALL, colour=colour)
        )
    for at, numbers, colour in numbered:
        texts.append(_Text(at, _PLOT_TOP - 2, ",".join(numbers), _SMALL, "middle", colour))
    if len(graph.markers) > len(shown):
        row += _ROW
        texts.append(_Text(_LEFT, row, f"and {len(graph.markers) - len(shown)} more", _SMALL))
    if len(graph.series) > 1 or graph.more_series:
        for i, s in enumerate(graph.series):
            row += _ROW
            texts.append(
                _Text(_LEFT, row, f"— {s.name}", _SMALL, colour=_COLOURS[i % len(_COLOURS)])
            )
        if graph.more_series:
            row += _ROW
            texts.append(_Text(_LEFT, row, f"{graph.more_series} more series not drawn", _SMALL))
    return _Layout(row + 14, tuple(texts), tuple(lines), tuple(series), tuple(dots))


def _description(graph: Graph) -> str:
    values = [v for s in graph.series for _, v in s.points if v is not None]
    said = (
        f"{graph.query} from {_stamp(graph.start_s)} to {_stamp(graph.end_s)} UTC, "
        f"between {_fmt(min(values))} and {_fmt(max(values))}"
    )
    if graph.threshold is not None:
        said += f"; threshold {_fmt(graph.threshold)} ({graph.threshold_label})"
    marks = "; ".join(f"{_clock(m.at_s)} {m.label}" for m in graph.markers)
    return said + (f". Marked: {marks}." if marks else ".")


def _stamp(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%d %H:%M")


def _coords(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def graph_svg(graph: Graph) -> str:
    """One self-contained ``<svg>`` element (no script, no outside reference), scaled by
    its viewBox to the width it is given."""
    layout = _layout(graph)
    height = math.ceil(layout.height)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="graph-title graph-desc" '
        'font-family="sans-serif" style="max-width:100%;height:auto">',
        f'<title id="graph-title">{escape(graph.title)}</title>',
        f'<desc id="graph-desc">{escape(_description(graph))}</desc>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    for line in layout.lines:
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        out.append(
            f'<polyline points="{_coords(line.points)}" fill="none" stroke="{line.colour}" '
            f'stroke-width="{line.width:g}"{dash}/>'
        )
    for line in layout.series:
        out.append(
            f'<polyline class="series" points="{_coords(line.points)}" fill="none" '
            f'stroke="{line.colour}" stroke-width="{line.width:g}" stroke-linejoin="round"/>'
        )
    for cx, cy, colour in layout.dots:
        out.append(f'<circle class="series" cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{colour}"/>')
    for text in layout.texts:
        out.append(
            f'<text x="{text.x:.1f}" y="{text.y:.1f}" font-size="{text.size}" '
            f'fill={quoteattr(text.colour)} text-anchor="{text.anchor}">{escape(text.text)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def graph_png(graph: Graph, *, width_px: int = 1120) -> bytes:
    """The same picture as a PNG ``width_px`` wide (Slack shows no SVG inline)."""
    from PIL import Image, ImageDraw, ImageFont  # only the report stage draws PNGs

    layout = _layout(graph)
    scale = width_px / WIDTH
    height_px = math.ceil(layout.height * scale)
    image = Image.new("RGB", (width_px, height_px), "#ffffff")
    draw = ImageDraw.Draw(image)
    fonts: dict[int, Any] = {}

    def font(size: int) -> Any:
        if size not in fonts:
            fonts[size] = ImageFont.load_default(size=size * scale)
        return fonts[size]

    def scaled(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * scale, y * scale) for x, y in points]

    for line in layout.lines:
        if line.dashed:
            (x0, y0), (x1, y1) = line.points[0], line.points[-1]
            length = math.hypot(x1 - x0, y1 - y0) or 1
            for i in range(0, int(length), 9):
                a, b = i / length, min(i + 5, length) / length
                draw.line(
                    scaled(
                        [
                            (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                            (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b),
                        ]
                    ),
                    fill=line.colour,
                    width=max(1, round(line.width * scale)),
                )
        else:
            draw.line(
                scaled(line.points), fill=line.colour, width=max(1, round(line.width * scale))
            )
    for line in layout.series:
        draw.line(
            scaled(line.points),
            fill=line.colour,
            width=max(1, round(line.width * scale)),
            joint="curve",
        )
    for cx, cy, colour in layout.dots:
        r = 2.5 * scale
        draw.ellipse((cx * scale - r, cy * scale - r, cx * scale + r, cy * scale + r), fill=colour)
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for text in layout.texts:
        draw.text(
            (text.x * scale, text.y * scale),
            text.text,
            fill=text.colour,
            font=font(text.size),
            anchor=anchors[text.anchor],
        )
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
