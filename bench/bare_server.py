"""The baseline for bench/intake.py: an aiohttp server that does nothing but parse JSON.

One route, ``POST /v1/webhooks/alertmanager`` (the service's intake path, so the same load
script fits both): it reads the body, parses it with ``orjson.loads`` and answers 200 with
a small JSON body. It runs on uvloop with no access log, as ``responder serve`` does, so the
difference between the two is the service's own work (validation, dedupe in Redis, queueing,
metrics), not the HTTP stack.

    .venv/bin/python bench/bare_server.py --port 8099
"""

from __future__ import annotations

import argparse

import orjson
import uvloop
from aiohttp import web

INTAKE_PATH = "/v1/webhooks/alertmanager"
_ANSWER = orjson.dumps({"accepted": 1, "changed": 0, "repeated": 0, "truncated_alerts": 0})


async def intake(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="malformed JSON") from None
    return web.Response(body=_ANSWER, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post(INTAKE_PATH, intake)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare aiohttp JSON intake: the baseline.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
