"""Who may call what: the intake's credentials (Alertmanager's bearer token or basic auth),
the read token and the admin token, each compared in constant time; the incident pages'
login cookie, which reads as the read token does."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

from aiohttp import web
from pydantic import SecretStr

from responder.settings import ASCII_WHITESPACE, Settings
from responder.web.common import CONTEXT, ApiError


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


# The incident pages' login (``web/pages.py``): a browser cannot send a bearer header from
# a link, so the login form sets this cookie. It holds an expiry and an HMAC of it keyed
# with the token presented, never the token itself: a copied cookie opens the read routes
# until it expires, and stops working once that token is rotated.
PAGE_COOKIE = "responder_read"
PAGE_LOGIN_TTL_S = 12 * 3600
_COOKIE_PURPOSE = b"responder incident pages v1:"

ReadAccess = Literal["open", "granted", "missing", "wrong", "off"]


def _read_tokens(settings: Settings) -> list[SecretStr]:
    return [t for t in (settings.read_token, settings.admin_token) if t is not None]


def _cookie_mac(token: bytes, expires_s: int) -> str:
    return hmac.new(token, _COOKIE_PURPOSE + str(expires_s).encode(), hashlib.sha256).hexdigest()


def page_cookie(token: str, *, now_s: float) -> tuple[str, int]:
    """The login cookie's value for a token found right (``login_token_ok``), and its
    lifetime in seconds."""
    expires_s = int(now_s) + PAGE_LOGIN_TTL_S
    presented = token.strip(ASCII_WHITESPACE).encode("utf-8", "surrogateescape")
    return f"{expires_s}.{_cookie_mac(presented, expires_s)}", PAGE_LOGIN_TTL_S


def _cookie_ok(value: str, accepted: list[SecretStr], now_s: float) -> bool:
    expires, _, mac = value.partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or not mac.isascii():
        return False
    expires_s = int(expires)
    ok = False
    for secret in accepted:  # no early exit: the time does not tell which one matched
        wanted = _cookie_mac(secret.get_secret_value().encode(), expires_s)
        ok |= hmac.compare_digest(mac.encode(), wanted.encode())
    return ok and now_s < expires_s


def login_token_ok(presented: str, settings: Settings) -> bool:
    """The login form's token: the read or the admin token, compared in constant time."""
    token = presented.strip(ASCII_WHITESPACE).encode("utf-8", "surrogateescape")
    accepted = _read_tokens(settings)
    return bool(token) and bool(accepted) and _one_matches(token, accepted)


def read_access(request: web.Request, settings: Settings, *, now_s: float) -> ReadAccess:
    """Whether ``request`` may read: ``open`` (reads need no token here), ``granted`` (the
    read or admin bearer token; for a GET, the login cookie too), ``missing`` (no
    credentials), ``wrong`` (credentials that are not right, or a cookie that expired),
    ``off`` (reads need a token here and none is configured)."""
    if not settings.reads_need_token(settings.host):
        return "open"
    accepted = _read_tokens(settings)
    if not accepted:
        return "off"
    token = _bearer(request)
    if token is not None:
        return "granted" if _one_matches(token, accepted) else "wrong"
    cookie = request.cookies.get(PAGE_COOKIE)
    # the cookie reads only: it is sent by the browser on its own, so it never stands in
    # for a header on a request that changes something
    if cookie is None or request.method not in ("GET", "HEAD"):
        return "missing"
    return "granted" if _cookie_ok(cookie, accepted, now_s) else "wrong"


def check_read(request: web.Request, settings: Settings) -> None:
    """The read API: the read or the admin token (or, for a GET, the incident pages'
    login cookie), unless reads are open (no read token, and a loopback bind or
    RESPONDER_ALLOW_UNAUTHENTICATED_READS)."""
    access = read_access(request, settings, now_s=request.app[CONTEXT].clock.now().timestamp())
    if access == "off":
        raise ApiError(
            403,
            "forbidden",
            "the read API needs RESPONDER_READ_TOKEN on a non-loopback address (or "
            "RESPONDER_ALLOW_UNAUTHENTICATED_READS=true on a trusted network)",
            outcome="forbidden",
        )
    if access == "missing":
        raise unauthorized("send the read (or admin) bearer token", 'Bearer realm="responder"')
    if access == "wrong":
        raise ApiError(403, "forbidden", "wrong token", outcome="forbidden")
