"""Command line: ``responder serve | replay | incidents | render | pause | resume | rules |
triage``.

Errors are one line on standard error, starting with ``error:``, and a non-zero exit:
1 when the work failed, 2 when the command or the configuration is wrong.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from responder.cli_rules import rules_cli

if TYPE_CHECKING:
    from aiohttp import web

    from responder.settings import Settings
    from responder.triage.quick import QuickTriage

# Every command but `serve` starts in well under 300 ms (bench/cli_startup.py): this module
# imports typer and the standard library only, and each command imports what it needs
# (aiohttp, pydantic and the settings, the app) when it runs.
ENV_PREFIX = "RESPONDER_"  # as responder.settings.ENV_PREFIX, without importing pydantic

T = TypeVar("T")

cli = typer.Typer(
    name="responder",
    help="Automated first responder for production alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
incidents_cli = typer.Typer(help="Read incidents from a running service.", no_args_is_help=True)
cli.add_typer(incidents_cli, name="incidents")
cli.add_typer(rules_cli, name="rules")

DEFAULT_URL = "http://127.0.0.1:8080"
UrlOption = Annotated[
    str, typer.Option("--url", envvar=f"{ENV_PREFIX}URL", help="Base URL of the service.")
]
# The read API's token: the read token, else the admin token (it reads too); not needed
# where the service reads without one (loopback, no read token set).
ReadToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=[f"{ENV_PREFIX}READ_TOKEN", f"{ENV_PREFIX}ADMIN_TOKEN"],
        help="The read token (RESPONDER_READ_TOKEN; RESPONDER_ADMIN_TOKEN works too).",
        show_envvar=False,
    ),
]


def fail(message: str, *, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"responder {version('responder')}")
        raise typer.Exit()


@cli.callback()
def _main(
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Automated first responder for production alerts."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and RESPONDER_CONFIG), or a one-line error."""
    from pydantic import ValidationError

    from responder.settings import ConfigError, Settings, explain

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(explain(exc), code=2)
    except ConfigError as exc:
        fail(str(exc), code=2)


def writable(path: Path) -> Path:
    """``path`` whose directory exists, else a one-line usage error: checked before any
    work, so a long download or a demo run does not end in a traceback."""
    parent = path.parent
    if not parent.is_dir():
        fail(f"{path}: no such directory: {parent}", code=2)
    return path


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


def build_app(settings: Settings, *, handle_signals: bool = False) -> web.Application:
    """The app, or every problem of the rule packs and exit 2."""
    from responder.app import create_app
    from responder.rules.loader import RuleLoadError
    from responder.settings import ConfigError

    try:
        return create_app(settings, handle_signals=handle_signals)
    except RuleLoadError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        fail(
            "the rule packs have problems (responder rules lint shows them); nothing started",
            code=2,
        )
    except ConfigError as exc:
        fail(f"{exc}; nothing started", code=2)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (RESPONDER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (RESPONDER_PORT).")] = None,
) -> None:
    """Run the service: webhook intake, workers and the HTTP API."""
    import asyncio
    import gc

    from aiohttp import web

    from responder import logs
    from responder.settings import ConfigError

    settings = load_settings(host=host, port=port)
    logs.configure(
        level=settings.log_level,
        secrets=settings.secret_values(),
        redis_address=settings.redis_address() if settings.uses_redis else None,
    )
    try:
        settings.check_bind(settings.host)
    except ConfigError as exc:
        fail(str(exc), code=2)
    app = build_app(settings, handle_signals=True)
    if settings.redis_sentinels:
        store = f"redis (sentinels, master {settings.redis_sentinel_master})"
    else:
        store = "redis" if settings.redis_url else "memory (embedded; nothing survives a restart)"
    if settings.uses_redis:
        store += f", intake durability {settings.intake_durability}"
    typer.echo(
        f"responder starting on http://{settings.host}:{settings.port}  "
        f"store: {store}  workers: {settings.workers}",
        err=True,
    )
    # what is in force, in the words `responder check` uses
    from responder.check.in_force import summary_line

    typer.echo(summary_line(settings), err=True)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    # Garbage-collection pauses made the p99 of the intake benchmark: move what start-up
    # built out of the collector's sight, and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            access_log=None,
            print=None,
            loop=loop,
        )
    except ConfigError as exc:  # a start-up check of the store (intake durability)
        fail(f"{exc}; nothing started", code=2)
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")


# ------------------------------------------------------------------------------------ replay


@dataclass
class _Payload:
    path: Path
    body: bytes
    route: str


def _read_payload(path: Path) -> _Payload:
    try:
        body = path.read_bytes()
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        fail(f"{path}: not JSON ({exc})")
    if isinstance(doc, dict) and "alerts" in doc:
        return _Payload(path, body, "/v1/webhooks/alertmanager")
    if isinstance(doc, dict) and "event" in doc:
        return _Payload(path, body, "/v1/webhooks/pagerduty")
    fail(f"{path}: neither an Alertmanager payload (alerts) nor a PagerDuty one (event)")


def _headers_for(payload: _Payload, settings: Settings) -> dict[str, str]:
    import base64

    from responder.ingest.pagerduty import sign

    headers = {"Content-Type": "application/json"}
    if payload.route.endswith("alertmanager"):
        if settings.alertmanager_token is not None:
            headers["Authorization"] = f"Bearer {settings.alertmanager_token.get_secret_value()}"
        elif settings.alertmanager_username and settings.alertmanager_password:
            pair = f"{settings.alertmanager_username}:"
            pair += settings.alertmanager_password.get_secret_value()
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif settings.pagerduty_webhook_secrets:
        secret = settings.pagerduty_webhook_secrets[0].get_secret_value()
        headers["X-PagerDuty-Signature"] = sign(payload.body, secret)
    return headers


async def _post_all(base_url: str, payloads: list[_Payload], settings: Settings) -> int:
    import aiohttp

    failures = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for p in payloads:
            try:
                async with session.post(
                    base_url.rstrip("/") + p.route, data=p.body, headers=_headers_for(p, settings)
                ) as resp:
                    text = await resp.text()
            except aiohttp.ClientError as exc:
                fail(f"cannot reach {base_url}: {exc}")
            failures += resp.status != 200
            typer.echo(f"{p.path}: {resp.status} {text.strip()}")
    return failures


async def _replay_in_process(payloads: list[_Payload], settings: Settings, wait_s: float) -> int:
    import asyncio

    from aiohttp import web

    from responder.app import RUNTIME

    app = build_app(settings.model_copy(update={"host": "127.0.0.1", "port": 0}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        runtime = app[RUNTIME]
        # the store is asked once before anything is posted: down, the answer is one line
        # naming it, not a 503 per payload and a traceback
        await runtime.queue.stats()
        port = runner.addresses[0][1]
        failures = await _post_all(f"http://127.0.0.1:{port}", payloads, settings)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            stats = await runtime.queue.stats()
            if stats.depth == 0 and stats.pending == 0:
                break
            await asyncio.sleep(0.05)
        page = await runtime.store.list_incidents(limit=1000)
        views = list(page.incidents)
        while page.next is not None:
            page = await runtime.store.list_incidents(after=page.next, limit=1000)
            views += page.incidents
        typer.echo("")
        for view in reversed(views):
            _print_incident_line(view.incident.model_dump(mode="json"))
        return failures
    finally:
        await runner.cleanup()


@cli.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="Saved webhook payloads (JSON).")],
    url: Annotated[
        str | None,
        typer.Option(
            help="Post to this running service; without it an in-process service "
            "on embedded defaults takes them."
        ),
    ] = None,
    wait_s: Annotated[
        float, typer.Option("--wait-s", help="In-process: how long to wait for the workers.")
    ] = 10.0,
) -> None:
    """Post saved Alertmanager or PagerDuty payloads, signed and authenticated as configured."""
    from responder import logs

    settings = load_settings()
    payloads = [_read_payload(f) for f in files]
    if url:
        failures = _run(_post_all(url, payloads, settings))
    else:
        from responder.domain.errors import StoreUnavailableError

        # errors only: an unreachable store is this command's one error line, not a
        # warning from every loop that met it too
        logs.configure(level="ERROR", secrets=settings.secret_values())
        try:
            failures = _run(_replay_in_process(payloads, settings, wait_s))
        except StoreUnavailableError:
            fail(
                f"cannot reach Redis at {settings.redis_address()}: nothing was replayed "
                f"(start it, or unset {ENV_PREFIX}REDIS_URL for the embedded store)"
            )
    if failures:
        fail(f"{failures} of {len(payloads)} payloads were not accepted")


# --------------------------------------------------------------------------------- incidents


def _request(
    method: str, url: str, *, body: Any = None, token: str | None = None, timeout: float
) -> tuple[int, bytes]:
    """One call to the service's API: (status, body), or a one-line error when it cannot be
    reached. The standard library's client: these commands make one or a few calls, and
    aiohttp alone would take half the 300 ms a command may take to start."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        fail(f"{url}: not an http:// or https:// URL (--url)", code=2)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    # the scheme is checked above: no file:// or custom scheme reaches urllib
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    # no proxy from the environment: the service's URL is reached as given
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        why = getattr(reason, "strerror", None) or str(reason)
        fail(f"cannot reach {url}: {why} (is `responder serve` running?)")


def _get_json(url: str, token: str | None = None) -> Any:
    return _call("GET", url, token=token)


def _call(method: str, url: str, *, body: Any = None, token: str | None = None) -> Any:
    return _call_status(method, url, body=body, token=token)[1]


def _call_status(
    method: str, url: str, *, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """``_call``, with the status it answered (200 applied, 202 queued)."""
    status, raw = _request(method, url, body=body, token=token, timeout=15)
    try:
        doc = json.loads(raw)
    except ValueError:
        if status not in (200, 202):
            fail(f"{status} from {url}: {raw[:200].decode(errors='replace')}")
        fail(f"{url} did not answer JSON")
    if status not in (200, 202):  # 202: accepted, applied later
        detail = doc.get("detail") or doc.get("error") if isinstance(doc, dict) else str(doc)
        fail(f"{status} from {url}: {detail}")
    return status, doc


def _print_incident_line(inc: dict[str, Any]) -> None:
    typer.echo(
        f"{inc['id']}  {inc['status']:<8}  {inc.get('severity') or '-':<3}  "
        f"{inc['opened_at'][:19]}  {inc['title']}"
    )


def _get_bytes(url: str, token: str | None = None) -> bytes:
    status, body = _request("GET", url, token=token, timeout=120)
    if status != 200:
        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            detail = body[:200].decode(errors="replace")
        fail(f"{status} from {url}: {detail}")
    return body


@cli.command()
def demo(
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Where the postmortems and bundles go.")
    ] = Path("demo-reports"),
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="Only this scenario (repeatable): unreachable, rate-limited, auth-rotated, "
            "upstream-5xx.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Each patch as its full JSON.")
    ] = False,
) -> None:
    """Show the product: the service in-process on embedded defaults replays the bundled
    scenarios (PostHog unreachable with a vendor incident, 429, 401 after a key rotation,
    5xx), each firing then resolved, with bundled evidence; actions are dry-run."""
    from responder import logs
    from responder.demo.run import DemoError, run

    writable(out)
    logs.configure(level="WARNING", secrets=[])
    try:
        run(out=out, names=scenario or None, echo=typer.echo, verbose=verbose)
    except DemoError as exc:
        fail(str(exc), code=1)


@cli.command()
def postmortem(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    url: UrlOption = DEFAULT_URL,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write it to this file.")
    ] = None,
    token: ReadToken = None,
) -> None:
    """The postmortem draft of an incident (markdown), from a running service."""
    if output is not None:
        writable(output)
    text = _get_bytes(url.rstrip("/") + f"/v1/incidents/{incident_id}/postmortem", token)
    if output is None:
        typer.echo(text.decode())
        return
    _write(output, text)
    typer.echo(f"wrote {output}")


@cli.command()
def evidence(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .tar.gz to write.")],
    url: UrlOption = DEFAULT_URL,
    token: ReadToken = None,
) -> None:
    """The evidence bundle of an incident: timeline, signals, facts, actions, messages,
    pod logs and Prometheus ranges of its window, with a sha256 manifest, redacted."""
    writable(output)
    bundle = _get_bytes(url.rstrip("/") + f"/v1/incidents/{incident_id}/evidence", token)
    _write(output, bundle)
    typer.echo(f"wrote {output} ({len(bundle)} bytes)")


def _list_pages(
    base: str, query: dict[str, str], *, follow: bool, token: str | None
) -> dict[str, Any]:
    """One page of ``GET /v1/incidents``, or with ``follow`` every page, in one document."""
    import urllib.parse

    doc = _get_json(base + "?" + urllib.parse.urlencode(query), token)
    incidents = list(doc["incidents"])
    while follow and doc.get("next_cursor"):
        cursor = {"cursor": doc["next_cursor"]}
        doc = _get_json(base + "?" + urllib.parse.urlencode(query | cursor), token)
        incidents += doc["incidents"]
    return {"incidents": incidents, "next_cursor": doc.get("next_cursor")}


@incidents_cli.command("list")
def incidents_list(
    url: UrlOption = DEFAULT_URL,
    status: Annotated[
        str | None, typer.Option(help="open, acked or resolved; several comma-separated")
    ] = None,
    severity: Annotated[
        str | None, typer.Option(help="P1, P2, P3 or P4; several comma-separated")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only incidents opened at or after this RFC 3339 time."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="Incidents per page [default: 50; 1000 with --all]"),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the cursors: every matching incident.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    token: ReadToken = None,
) -> None:
    """List incidents, newest first."""
    query = {"limit": str(limit or (1000 if every else 50))}
    for name, value in (("status", status), ("severity", severity), ("since", since)):
        if value:
            query[name] = value
    doc = _list_pages(url.rstrip("/") + "/v1/incidents", query, follow=every, token=token)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    for inc in doc["incidents"]:
        _print_incident_line(inc)
    if doc["next_cursor"]:
        typer.echo("(more incidents follow: --all lists every one)", err=True)


@incidents_cli.command("show")
def incidents_show(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    token: ReadToken = None,
) -> None:
    """Show one incident with its alerts and timeline."""
    inc = _get_json(url.rstrip("/") + f"/v1/incidents/{incident_id}", token)
    if as_json:
        typer.echo(json.dumps(inc, indent=2))
        return
    _print_incident_line(inc)
    typer.echo(f"  group: {inc['group_key']}")
    for alert in inc["alerts"]:
        typer.echo(
            f"  alert {alert['fingerprint']} {alert['status']}: "
            f"{alert['labels'].get('alertname', '')}"
        )
    for event in inc["timeline"]:
        typer.echo(f"  {event['at'][11:19]}  {event['kind']:<22} {event['detail']}")


@cli.command()
def render(
    template: Annotated[
        str, typer.Argument(help="Template name, e.g. slack_root, statuspage_body.")
    ],
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    url: UrlOption = DEFAULT_URL,
    event: Annotated[
        int | None, typer.Option(help="Timeline event (seq) for event and note templates.")
    ] = None,
    note: Annotated[
        str | None, typer.Option(help="pagerduty_note: triage, action, handoff or summary.")
    ] = None,
    token: ReadToken = None,
) -> None:
    """Preview a message template (the shipped one or RESPONDER_TEMPLATES_DIR's) on an
    incident of a running service."""
    from responder.cli_render import RenderProblem, render_incident
    from responder.render.templates import TemplateProblem
    from responder.rules.loader import RuleLoadError
    from responder.settings import ConfigError

    settings = load_settings()
    document = _get_json(url.rstrip("/") + f"/v1/incidents/{incident_id}", token)
    try:
        typer.echo(render_incident(settings, template, document, event=event, note=note))
    except RuleLoadError as exc:
        fail(f"the rule packs have problems: {exc.problems[0]}", code=2)
    except (RenderProblem, ConfigError, TemplateProblem) as exc:
        fail(str(exc), code=2)


async def _quick_triage(
    settings: Settings, pack: Path, labels: dict[str, str], annotations: dict[str, str]
) -> QuickTriage:
    from responder.adapters.http import SharedSession
    from responder.adapters.kube import ClusterGateway
    from responder.app import build_probes, build_prometheus
    from responder.redaction import Redactor
    from responder.rules.loader import RuleLoadError, load_rules
    from responder.triage.quick import NothingToProbe, quick_triage

    try:
        rules = load_rules([pack])
    except RuleLoadError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        fail("the pack has problems (responder rules lint shows them)", code=2)
    http = SharedSession()
    kube = ClusterGateway(settings.kubeconfig)
    redact = Redactor(settings.secret_values())
    probes = build_probes(
        settings,
        http=http,
        kube=kube,
        redact=redact,
        prometheus=build_prometheus(settings, http),
    )
    try:
        return await quick_triage(
            rules,
            labels,
            probes,
            budget_s=settings.triage_budget_s,
            redact=redact,
            annotations=annotations,
        )
    except NothingToProbe as exc:
        fail(str(exc), code=2)
    finally:
        await http.close()
        await kube.close()


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key:
            fail(f"--{what} {value!r}: write it as name=value", code=2)
        pairs[key] = text
    return pairs


@cli.command()
def triage(
    pack: Annotated[Path, typer.Option("--pack", help="The rule pack file to triage with.")],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="An alert label, name=value (repeat it)."),
    ] = None,
    annotation: Annotated[
        list[str] | None, typer.Option("--annotation", help="An alert annotation, name=value.")
    ] = None,
) -> None:
    """The one-line health check: run the pack's quick triage now for the labels given,
    print one line per probe and the branch it would take. Opens no incident, needs no
    Redis, changes nothing. Exit 0 healthy, 1 degraded, 2 down or error."""
    from responder import logs

    settings = load_settings()
    logs.configure(level="ERROR", secrets=settings.secret_values())
    if not pack.is_file():
        fail(f"{pack}: no such file", code=2)
    labels = _pairs(label, "label")
    if not labels:
        fail("give the alert's labels: --label service=<name> [--label k=v ...]", code=2)
    result = _run(_quick_triage(settings, pack, labels, _pairs(annotation, "annotation")))
    for line in result.lines():
        typer.echo(line)
    raise typer.Exit(int(result.health))


AdminToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=f"{ENV_PREFIX}ADMIN_TOKEN",
        help="The admin token (RESPONDER_ADMIN_TOKEN).",
    ),
]


def _admin(token: str | None) -> str:
    if not token:
        fail("the admin API needs a token: --token or RESPONDER_ADMIN_TOKEN", code=2)
    return token


def _print_automation(doc: dict[str, Any]) -> None:
    if doc["paused"]:
        typer.echo(f"automation PAUSED by {doc['paused_by']}: {doc['paused_reason']}")
    else:
        typer.echo("automation running")
    typer.echo(
        f"  budget {doc['budget_used']}/{doc['budget']} in {doc['budget_window_s']:g}s, "
        f"cooldown {doc['cooldown_s']:g}s, allowlist: "
        f"{', '.join(doc['allowlist']) or 'empty (no action allowed)'}"
    )


@cli.command()
def pause(
    reason: Annotated[str, typer.Option(help="Why (recorded, shown to others).")] = "by hand",
    by: Annotated[str, typer.Option(help="Who pauses.")] = "responder CLI",
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Stop every automatic action, on every replica, until `responder resume`."""
    doc = _call(
        "POST",
        url.rstrip("/") + "/v1/admin/pause",
        body={"by": by, "reason": reason},
        token=_admin(token),
    )
    _print_automation(doc)


@cli.command()
def resume(url: UrlOption = DEFAULT_URL, token: AdminToken = None) -> None:
    """Let automatic actions run again."""
    doc = _call("POST", url.rstrip("/") + "/v1/admin/resume", body={}, token=_admin(token))
    _print_automation(doc)


@incidents_cli.command("ack")
def incidents_ack(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    by: Annotated[str, typer.Option(help="Who takes the incident.")],
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Take an incident: from now on the automation only reports on it."""
    inc = _call(
        "POST",
        url.rstrip("/") + f"/v1/incidents/{incident_id}/ack",
        body={"by": by},
        token=_admin(token),
    )
    _print_incident_line(inc)
    if inc["status"] == "open":
        typer.echo("the ack is queued: a worker applies it (no worker took it within 5 s)")


def _incident_act(
    incident_id: str, path: str, *, by: str, url: str, token: str | None, done: str
) -> None:
    """One act on an incident through the admin API; says whether a worker applied it."""
    import urllib.parse

    status, inc = _call_status(
        "POST",
        url.rstrip("/") + f"/v1/incidents/{urllib.parse.quote(incident_id, safe='')}/{path}",
        body={"by": by},
        token=_admin(token),
    )
    _print_incident_line(inc)
    if status == 202:
        typer.echo("queued: a worker applies it (no worker took it within 5 s)")
    else:
        typer.echo(done)


@incidents_cli.command("pause")
def incidents_pause(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    by: Annotated[str, typer.Option(help="Who pauses it.")],
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Pause this incident's automatic actions (others' go on), until `incidents resume`."""
    _incident_act(incident_id, "pause", by=by, url=url, token=token, done="automation paused")


@incidents_cli.command("resume")
def incidents_resume(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    by: Annotated[str, typer.Option(help="Who resumes it.")],
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Let this incident's automatic actions run again."""
    _incident_act(incident_id, "resume", by=by, url=url, token=token, done="automation resumed")


@incidents_cli.command("approve")
def incidents_approve(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    step: Annotated[str, typer.Argument(help="The step waiting for approval.")],
    by: Annotated[str, typer.Option(help="Who approves it.")],
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Approve a step waiting for a person's yes: the automation may carry it out."""
    import urllib.parse

    path = f"approvals/{urllib.parse.quote(step, safe='')}/approve"
    _incident_act(incident_id, path, by=by, url=url, token=token, done=f"{step} approved")


@incidents_cli.command("reject")
def incidents_reject(
    incident_id: Annotated[str, typer.Argument(help="Incident id (inc-...).")],
    step: Annotated[str, typer.Argument(help="The step waiting for approval.")],
    by: Annotated[str, typer.Option(help="Who rejects it.")],
    url: UrlOption = DEFAULT_URL,
    token: AdminToken = None,
) -> None:
    """Reject a step waiting for approval: it does not run."""
    import urllib.parse

    path = f"approvals/{urllib.parse.quote(step, safe='')}/reject"
    _incident_act(incident_id, path, by=by, url=url, token=token, done=f"{step} rejected")


@cli.command()
def check(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document for machines.")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds each integration may take.")
    ] = 30.0,
) -> None:
    """Check the configuration before serving: the settings in force (secrets masked), then
    Redis, Slack, Statuspage, PagerDuty, Prometheus, Kubernetes, the rule packs and the
    templates, one line each with the fix when it fails. Exit 1 when any check fails."""
    # imported here: the checks pull in every client library, and other commands start fast
    from responder.check.output import as_json as json_report
    from responder.check.output import as_text
    from responder.check.runner import run_checks

    settings = load_settings()
    report = _run(run_checks(settings, limit_s=timeout_s))
    typer.echo(json_report(report) if as_json else as_text(report))
    raise typer.Exit(report.exit_code)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
