"""Who may call what: the intake's credentials (Alertmanager's bearer token or basic auth),
the read token and the admin token, each compared in constant time."""

from __future__ import annotations

import base64
import hmac

from aiohttp import web
from pydantic import SecretStr

from responder.settings import ASCII_WHITESPACE, Settings
from responder.web.common import ApiError


def unauthorized(detail: str, challenge: str) -> ApiError:
    return ApiError(
        401, "unauthorized", detail, outcome="unauthorized", headers={"WWW-Authenticate": challenge}
    )


def check_alertmanager_auth(request: web.Request, settings: Settings) -> None:
    """Bearer token and/or basic auth, as Alertmanager's http_config sends them."""
    if not settings.intake_has_credentials:
        return  # open intake: allowed only on loopback or explicitly (checked at start-up)
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    # ASCII whitespace only: "Bearer \u00a0token" is not "Bearer token"
    credentials = credentials.strip(ASCII_WHITESPACE)
    challenge = (
        'Bearer realm="responder"' if settings.alertmanager_token else ('Basic realm="responder"')
    )
    if not credentials:
        raise unauthorized("send the configured bearer token or basic-auth credentials", challenge)
    scheme = scheme.lower()
    ok = False
    if scheme == "bearer" and settings.alertmanager_token is not None:
        ok = _one_matches(
            credentials.encode("utf-8", "surrogateescape"), [settings.alertmanager_token]
        )
    elif (
        scheme == "basic"
        and settings.alertmanager_username is not None
        and settings.alertmanager_password is not None
    ):
        try:
            user, _, password = (
                base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
            )
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 inside
            user, password = "", ""
        user_ok = hmac.compare_digest(user.encode(), settings.alertmanager_username.encode())
        password_ok = hmac.compare_digest(
            password.encode(), settings.alertmanager_password.get_secret_value().encode()
        )
        ok = user_ok and password_ok
    if not ok:
        raise ApiError(
            403,
            "forbidden",
            "the credentials sent are not the configured ones",
            outcome="forbidden",
        )


def _bearer(request: web.Request) -> bytes | None:
    """The bearer token presented, as bytes, stripped of ASCII whitespace only; None when
    there is none. (Header bytes that are not UTF-8 come as surrogates: kept, not fatal.)"""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip(ASCII_WHITESPACE)
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def _one_matches(presented: bytes, configured: list[SecretStr]) -> bool:
    ok = False
    for secret in configured:  # no early exit: the time does not tell which one matched
        ok |= hmac.compare_digest(presented, secret.get_secret_value().encode())
    return ok


def check_admin(request: web.Request, settings: Settings) -> None:
    if settings.admin_token is None:
        raise ApiError(
            403, "forbidden", "the admin API is off: set RESPONDER_ADMIN_TOKEN", outcome="forbidden"
        )
    token = _bearer(request)
    if token is None:
        raise unauthorized("send the admin bearer token", 'Bearer realm="responder-admin"')
    if not _one_matches(token, [settings.admin_token]):
        raise ApiError(403, "forbidden", "wrong admin token", outcome="forbidden")


def check_read(request: web.Request, settings: Settings) -> None:
    """The read API: the read or the admin token, unless reads are open (no read token, and
    a loopback bind or RESPONDER_ALLOW_UNAUTHENTICATED_READS)."""
    if not settings.reads_need_token(settings.host):
        return
    accepted = [t for t in (settings.read_token, settings.admin_token) if t is not None]
    if not accepted:
        raise ApiError(
            403,
            "forbidden",
            "the read API needs RESPONDER_READ_TOKEN on a non-loopback address (or "
            "RESPONDER_ALLOW_UNAUTHENTICATED_READS=true on a trusted network)",
            outcome="forbidden",
        )
    token = _bearer(request)
    if token is None:
        raise unauthorized("send the read (or admin) bearer token", 'Bearer realm="responder"')
    if not _one_matches(token, accepted):
        raise ApiError(403, "forbidden", "wrong token", outcome="forbidden")
