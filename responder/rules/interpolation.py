"""Filling a probe's or an action's templates with an alert's values, each value checked by
where it lands.

Whoever can push an alert into Alertmanager writes its labels, and a label printed into a
URL, a namespace or a selector must not steer our calls: ``namespace=x@127.0.0.1:9/p?``
in ``http://svc.{{ labels.namespace }}.svc.cluster.local/`` would send the health probe
to any host and port. So every value a template prints (whatever it comes from, the
integration's configured name too) is checked against the part of the field it lands in:

- a URL's host: a DNS label; its scheme or user information: never; its port: digits;
  its path, query or fragment: percent-escaped (a ``/`` or ``?`` stays inside the value);
- a Kubernetes namespace, container, Deployment or Secret name: the whole field must be a
  Kubernetes name;
- a label selector: each value a Kubernetes label value, the whole a valid selector;
- a Prometheus query: no quote, backslash, brace or control character (a value cannot
  leave the string it is in);
- a regular expression (``pattern``): escaped, matched literally.

Any other field is text. A value that fails raises ``PlanProblem``: the probe or action is
not planned, and the engine says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from responder.domain.names import (
    dns_label_problem,
    k8s_name_problem,
    label_value_problem,
    selector_problem,
    url_problem,
)
from responder.render.interpolation import Piece, render_pieces
from responder.render.templates import Template


class PlanProblem(ValueError):
    """A filled field that must not be used; the message says which value and why."""


# Field name (dotted from the spec's root; ``*`` any key) → what it is.
_KINDS: dict[str, str] = {
    "url": "url",
    "namespace": "namespace",
    "container": "container",
    "deployment": "deployment",
    "secret": "secret",
    "selector": "selector",
    "pattern": "regex",
    "queries.*": "promql",
    "verify.query": "promql",
}
_PROMQL_UNSAFE = re.compile(r"[\"'`\\{}\x00-\x1f\x7f]")


def _kind(path: tuple[str, ...]) -> str:
    dotted = ".".join(path)
    if dotted in _KINDS:
        return _KINDS[dotted]
    if len(path) >= 2:
        return _KINDS.get(".".join((*path[:-1], "*")), "text")
    return "text"


def fill_spec(
    spec: Mapping[str, Any], templates: Mapping[str, Template], ctx: Mapping[str, Any]
) -> dict[str, Any]:
    """A dumped probe or action spec with its templates filled; ``PlanProblem`` when a
    value must not land where its template puts it, or the URL goes out of
    ``allow_hosts``."""
    filled = {k: _fill(v, (k,), templates, ctx) for k, v in spec.items()}
    url = filled.get("url")
    if isinstance(url, str) and "allow_hosts" in filled:
        problem = url_problem(url, tuple(filled.get("allow_hosts") or ()))
        if problem:
            raise PlanProblem(f"url {url!r}: {problem}")
    return filled


def _fill(
    value: Any, path: tuple[str, ...], templates: Mapping[str, Template], ctx: Mapping[str, Any]
) -> Any:
    if isinstance(value, str):
        template = templates.get(value)
        if template is None:
            return value
        kind = _kind(path)
        if kind == "text":
            return template.render(ctx)
        return _placed(kind, ".".join(path), render_pieces(template.source, ctx))
    if isinstance(value, dict):
        return {k: _fill(v, (*path, str(k)), templates, ctx) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(v, path, templates, ctx) for v in value]
    return value


def _placed(kind: str, field: str, pieces: list[Piece]) -> str:
    if kind == "url":
        return _url(field, pieces)
    if kind == "regex":
        return "".join(re.escape(p.text) if p.interpolated else p.text for p in pieces)
    for piece in pieces:
        if not piece.interpolated:
            continue
        if kind == "promql" and _PROMQL_UNSAFE.search(piece.text):
            raise PlanProblem(
                f"{field}: value {piece.text!r} holds a quote, backslash, brace or control "
                "character: not put into a query"
            )
        if kind == "selector":
            problem = label_value_problem(piece.text)
            if problem:
                raise PlanProblem(f"{field}: {problem}")
    whole = "".join(p.text for p in pieces)
    if kind == "selector":
        problem = selector_problem(whole)
        if problem:
            raise PlanProblem(f"{field}: {problem}")
    elif kind in ("namespace", "container", "deployment", "secret"):
        problem = k8s_name_problem(whole, kind=kind)
        if problem:
            raise PlanProblem(problem if field == kind else f"{field}: {problem}")
    return whole


# Where the URL's own text has got to, read character by character: the part a value
# printed there lands in.
_SCHEME, _AUTHORITY, _PORT, _PATH, _QUERY, _FRAGMENT = range(6)


def _url(field: str, pieces: list[Piece]) -> str:
    out: list[str] = []
    part = _SCHEME
    for piece in pieces:
        if not piece.interpolated:
            for char in piece.text:
                out.append(char)
                part = _advance(part, "".join(out[-3:]), char)
            continue
        value = piece.text
        if part == _SCHEME:
            raise PlanProblem(
                f"{field}: value {value!r} would make the URL's scheme or host: refused"
            )
        if part == _AUTHORITY:
            problem = dns_label_problem(value)
            if problem:
                raise PlanProblem(f"{field}: in the host, {problem}")
            out.append(value)
        elif part == _PORT:
            if not value.isascii() or not value.isdigit():
                raise PlanProblem(f"{field}: value {value!r} in the port is not a number")
            out.append(value)
        else:
            out.append(quote(value, safe=""))
    return "".join(out)


def _advance(part: int, tail: str, char: str) -> int:
    if part == _SCHEME:
        return _AUTHORITY if tail == "://" else _SCHEME
    if part in (_AUTHORITY, _PORT):
        if char == ":":
            return _PORT
        if char == "/":
            return _PATH
    if char == "?" and part in (_AUTHORITY, _PORT, _PATH):
        return _QUERY
    if char == "#" and part != _SCHEME:
        return _FRAGMENT
    return part
