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

import functools
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
    return SpecFiller(spec, templates).fill(ctx)


# A node of a spec compiled for filling: a value as it is, a template with where it lands
# (its kind and field), or a dict or list of nodes.
_VALUE, _TEMPLATE, _DICT, _LIST = range(4)


class SpecFiller:
    """A dumped spec compiled once for every alert it is filled for: each template
    string's kind (where it lands, so which check its values get) found when compiled, not
    per alert, and a spec without templates (``constant``) checked once. Filling gives
    what ``fill_spec`` gives, the same checks in the same order."""

    def __init__(self, spec: Mapping[str, Any], templates: Mapping[str, Template]) -> None:
        self._templated = False
        self._root = tuple((k, self._compile(v, (k,), templates)) for k, v in spec.items())
        self.constant = not self._templated
        # a spec without templates fills to the same URL for every alert: checked here
        self._fixed_url: str | None = None  # what is wrong with it
        if self.constant:
            try:
                self._check_url(self._build_root({}))
            except PlanProblem as exc:
                self._fixed_url = str(exc)

    def _compile(
        self, value: Any, path: tuple[str, ...], templates: Mapping[str, Template]
    ) -> tuple[Any, ...]:
        if isinstance(value, str):
            template = templates.get(value)
            if template is None:
                return (_VALUE, value)
            self._templated = True
            return (_TEMPLATE, _kind(path), ".".join(path), template)
        if isinstance(value, dict):
            return (
                _DICT,
                tuple((k, self._compile(v, (*path, str(k)), templates)) for k, v in value.items()),
            )
        if isinstance(value, list | tuple):
            return (_LIST, tuple(self._compile(v, path, templates) for v in value))
        return (_VALUE, value)

    def fill(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        if self._fixed_url is not None:
            raise PlanProblem(self._fixed_url)
        filled = self._build_root(ctx)
        if not self.constant:
            self._check_url(filled)
        return filled

    def _build_root(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _build(node, ctx) for k, node in self._root}

    @staticmethod
    def _check_url(filled: Mapping[str, Any]) -> None:
        url = filled.get("url")
        if isinstance(url, str) and "allow_hosts" in filled:
            problem = url_problem(url, tuple(filled.get("allow_hosts") or ()))
            if problem:
                raise PlanProblem(f"url {url!r}: {problem}")


def _build(node: tuple[Any, ...], ctx: Mapping[str, Any]) -> Any:
    tag = node[0]
    if tag == _VALUE:
        return node[1]
    if tag == _TEMPLATE:
        _, kind, field, template = node
        if kind == "text":
            return template.render(ctx)
        return _placed(kind, field, render_pieces(template.source, ctx))
    if tag == _DICT:
        return {k: _build(v, ctx) for k, v in node[1]}
    return [_build(v, ctx) for v in node[1]]


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
    parts = iter(_url_layout(tuple(None if p.interpolated else p.text for p in pieces)))
    for piece in pieces:
        if not piece.interpolated:
            out.append(piece.text)
            continue
        value = piece.text
        part = next(parts)
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


@functools.lru_cache(maxsize=1024)
def _url_layout(skeleton: tuple[str | None, ...]) -> tuple[int, ...]:
    """The part of the URL each printed value (``None`` in ``skeleton``, the URL's own
    text in order) lands in: only the template's own text moves from part to part (a
    value never does: in the scheme it is refused, and after it only the URL's own ``:``,
    ``/``, ``?`` and ``#`` count), so a template's layout is read once, not per alert."""
    layout: list[int] = []
    fixed: list[str] = []  # the URL's own text so far
    part = _SCHEME
    for text in skeleton:
        if text is None:
            layout.append(part)
            if part == _SCHEME:
                break  # refused there: nothing after it is read
            continue
        for char in text:
            fixed.append(char)
            part = _advance(part, "".join(fixed[-3:]), char)
    return tuple(layout)


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
