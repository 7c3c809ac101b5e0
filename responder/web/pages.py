"""The incident pages people read in a browser: the list (``GET /incidents``), one
incident (``GET /incidents/{id}``) and the login form (``/incidents/login``).

Server-rendered HTML, no JavaScript; behind the read API's rule (``auth.read_access``).
A browser cannot send a bearer header from a link, so the login form takes the read (or
admin) token once and sets an HttpOnly, SameSite=Strict cookie that reads as the token
does (the API's GETs take it too: the postmortem and evidence links work). The token is
never in a URL, a page or a log. Every page carries a CSP that allows no script, no
frame and forms posting only here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from responder.ports import IncidentGraphs, IncidentView
from responder.render.html import HtmlPages
from responder.render.templates import TemplateProblem
from responder.settings import ASCII_WHITESPACE
from responder.web.auth import PAGE_COOKIE, login_token_ok, page_cookie, read_access
from responder.web.common import CONTEXT, ApiError
from responder.web.page_model import next_page_query, sections
from responder.web.reads import incident_view, read_incident_page

log = structlog.get_logger("responder.web")

PAGES = web.AppKey("pages", HtmlPages)
LOGIN_PATH = "/incidents/login"
LIST_PATH = "/incidents"
LIST_PAGE_SIZE = 50
# the longest token the form takes: far above any real one, bounds the work of a guess
_MAX_TOKEN_CHARS = 4096

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # incident data is not to be kept in shared or browser caches
    "Cache-Control": "no-store",
}

PageHandler = Callable[[web.Request], Awaitable[web.Response]]


def _html(request: web.Request, name: str, *, status: int = 200, **context: object) -> web.Response:
    text = request.app[PAGES].render(name, **context)
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def _local_path(target: str | None) -> str:
    """Where to go after the login: a path of this service only (``/incidents...``),
    never another site (``//evil``, ``/\\evil``, ``https://...``)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return LIST_PATH
    if "\\" in target or not target.isprintable() or not target.isascii():
        return LIST_PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return LIST_PATH
    return target


def _login_form(
    request: web.Request, *, status: int, next_path: str, problem: str | None = None
) -> web.Response:
    response = _html(request, "login.html.j2", status=status, next_path=next_path, problem=problem)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="responder"'
    return response


def page(handler: PageHandler) -> PageHandler:
    """A page: the read rule first (without credentials: 401 and the login form), then
    the handler; its errors (a bad id, a bad query) as an HTML page with their status."""

    async def guarded(request: web.Request) -> web.Response:
        ctx = request.app[CONTEXT]
        access = read_access(request, ctx.settings, now_s=ctx.clock.now().timestamp())
        if access == "off":
            return _html(
                request,
                "error.html.j2",
                status=403,
                title="Reads are off",
                detail="The incident pages need RESPONDER_READ_TOKEN on a non-loopback "
                "address (or RESPONDER_ALLOW_UNAUTHENTICATED_READS=true on a trusted network).",
            )
        if access in ("missing", "wrong"):
            return _login_form(
                request,
                status=401,
                next_path=_local_path(request.path_qs),
                problem="That login has expired or is not valid: log in again."
                if access == "wrong"
                else None,
            )
        try:
            return await handler(request)
        except ApiError as exc:
            return _html(
                request,
                "error.html.j2",
                status=exc.status,
                title=exc.body.error,
                detail=exc.body.detail,
            )

    return guarded


async def incident_list(request: web.Request) -> web.Response:
    """Incidents newest first, a page at a time (the read API's query and store call)."""
    page_ = await read_incident_page(request, default_limit=LIST_PAGE_SIZE)
    following = next_page_query(dict(request.query), page_)
    return _html(
        request,
        "list.html.j2",
        incidents=[v.incident for v in page_.incidents],
        next_url=f"{LIST_PATH}?{following}" if following else None,
        first_page=LIST_PATH if "cursor" in request.query else None,
    )


async def incident(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    view = await incident_view(request)  # the id checked first (path_incident_id): 404
    now = ctx.clock.now()
    try:
        messages = ctx.reports.messages(view, now)
        messages_problem = None
    except TemplateProblem as exc:  # a broken template override: the page still shows
        messages, messages_problem = {}, str(exc)
    svg, no_graph = await _graph(ctx.graphs, view, prometheus=bool(ctx.settings.prometheus_url))
    incident_id = view.incident.id
    return _html(
        request,
        "incident.html.j2",
        s=sections(view, messages=messages),
        messages_problem=messages_problem,
        graph=svg or None,
        no_graph=no_graph,
        postmortem_url=f"/v1/incidents/{incident_id}/postmortem",
        evidence_url=f"/v1/incidents/{incident_id}/evidence",
        list_url=LIST_PATH,
    )


async def _graph(
    graphs: IncidentGraphs | None, view: IncidentView, *, prometheus: bool
) -> tuple[str | None, str]:
    """The error-rate graph, or none and the line that says why. A graph that cannot be
    drawn (Prometheus down) is said on the page, which shows all the rest."""
    if graphs is None or not prometheus:
        return None, "No error-rate graph: no Prometheus is configured (RESPONDER_PROMETHEUS_URL)."
    try:
        svg = await graphs.svg(view)
    except Exception as exc:  # noqa: BLE001 - the page is read in an incident: it shows
        log.warning("error-rate graph failed", incident_id=view.incident.id, error=str(exc))
        return None, "No error-rate graph: it could not be drawn (see the service's log)."
    if not svg:
        return None, "No error-rate graph: Prometheus has no data for this incident's window."
    return svg, ""


async def login_form(request: web.Request) -> web.Response:
    return _login_form(request, status=200, next_path=_local_path(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    """The form's token checked in constant time; right: the cookie, and back to the page
    asked for (a local path only); wrong: 401 and the form again."""
    ctx = request.app[CONTEXT]
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(
            415,
            "unsupported media type",
            "post the login form (application/x-www-form-urlencoded)",
            outcome="unsupported_media_type",
        )
    form = await request.post()
    token, target = form.get("token"), form.get("next")
    next_path = _local_path(target if isinstance(target, str) else None)
    settings = ctx.settings
    if not settings.reads_need_token(settings.host):
        return _see_other(next_path)  # reads are open here: nothing to log in to
    if (
        not isinstance(token, str)
        or len(token) > _MAX_TOKEN_CHARS
        or not token.strip(ASCII_WHITESPACE)
        or not login_token_ok(token, settings)
    ):
        return _login_form(request, status=401, next_path=next_path, problem="Wrong token.")
    value, max_age_s = page_cookie(token, now_s=ctx.clock.now().timestamp())
    response = _see_other(next_path)
    secure = request.secure or (settings.public_url or "").startswith("https://")
    response.set_cookie(
        PAGE_COOKIE,
        value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        secure=secure,
        samesite="Strict",
    )
    return response


def _see_other(path: str) -> web.Response:
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": path})


def add_page_routes(app: web.Application) -> None:
    """The pages' routes; their templates compiled now, before the first request."""
    app[PAGES] = HtmlPages()
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_get(LIST_PATH, page(incident_list))
    app.router.add_get(LIST_PATH + "/{incident_id}", page(incident))
