"""A fake Kubernetes API server on loopback, for tests that drive the real kubernetes-asyncio
client. An aiohttp server in the test's event loop, on 127.0.0.1 and a port the OS picks::

    async with running_fake_kube() as kube:
        kube.add_pod("prod", "web-1", {"app": "web"}, ["app"], started_at=t0,
                     logs=[(t0 + timedelta(seconds=5), "ERROR boom")])
        kube.add_deployment("prod", "web", [{"name": "app", "env": {"A": "1"}}], replicas=3)
        kube.set_secret("prod", "web-creds", {"token": "s3cret"}, changed_at=t1)
        kube.fail("PATCH", r"/apis/apps/v1/namespaces/prod/deployments/web", 409)
        async with kube.api_client() as api:      # client.ApiClient, Bearer token set
            pods = await client.CoreV1Api(api).list_namespaced_pod("prod", label_selector="app=web")
        assert kube.calls() == [("GET", "/api/v1/namespaces/prod/pods")]

It speaks the REST protocol of the real API server for what the responder uses, with real
object shapes and real ``Status`` error bodies:

- ``GET /api/v1/namespaces/{ns}/pods`` (and ``/api/v1/pods``): ``labelSelector`` (``k=v``,
  ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``), ``fieldSelector``
  (``=``/``==``/``!=`` on the fields the real server supports for pods), ``limit`` and
  ``continue``. ``GET .../pods/{name}``.
- ``GET .../pods/{name}/log``: ``container`` (required when the pod has several, 400 like the
  kubelet otherwise), ``sinceSeconds``/``sinceTime`` (relative to the fake's clock),
  ``tailLines``, ``limitBytes``, ``timestamps`` (RFC 3339 nano prefix); ``text/plain``.
  Lines are kept in time order per container (a log file is), so "since, then tail" and the
  kubelet's "tail, then since" give the same lines.
- ``GET/PATCH/PUT /apis/apps/v1/namespaces/{ns}/deployments/{name}`` and the ``/scale``
  subresource (a ``autoscaling/v1`` Scale kept in sync with ``spec.replicas``); list with
  selectors. PATCH honours the content type: ``application/strategic-merge-patch+json``
  (maps merged recursively, ``null`` deletes a key, lists with a patch merge key merged by it:
  containers/initContainers/volumes/env by ``name``, ports by ``containerPort``,
  volumeMounts by ``mountPath``...; ``$patch: delete|replace|merge``, ``$retainKeys``,
  ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``; other lists replaced),
  ``application/merge-patch+json`` (RFC 7386) and ``application/json-patch+json``
  (RFC 6902: add, remove, replace, move, copy, test). Anything else, ``application/json``
  included, is 415 as on a real server (server-side apply is not implemented: 415 too).
  ``dryRun=All`` returns the would-be object and stores nothing; ``fieldManager`` names the
  ``managedFields`` entry (default: the User-Agent's product, ``OpenAPI-Generator`` for this
  client). A ``metadata.resourceVersion`` in the patch (or PUT body) is a precondition: 409
  when stale. The result is validated (422 ``Invalid`` with causes): replicas >= 0, at
  least one container, containers named and with an image, unique container names, env
  entries named, selector matching the template labels and immutable. ``status`` cannot be
  changed through the main resource (as on a real server).
- Versioning as on a real server: one global, increasing ``resourceVersion`` (a string);
  any change bumps the object's; ``metadata.generation`` is bumped only when ``spec``
  changes (a label or annotation edit does not; a ``restartedAt`` annotation on the pod
  template is in ``spec``, so it does); a patch that changes nothing bumps nothing and
  returns the object as stored.
- Deployments roll out instantly (``auto_rollout = True``): on each change the status
  follows the spec (observedGeneration, replicas, updated/ready/available, conditions) and a
  pod-template change bumps the ``deployment.kubernetes.io/revision`` annotation. Set
  ``auto_rollout = False`` to keep the status where it was; ``complete_rollout`` catches up.
- ``GET /api/v1/namespaces/{ns}/secrets/{name}`` (and the list): ``data`` base64.
  A secret's last change time is in ``metadata.managedFields[*].time`` (operation
  ``Update``), as the real server records it: there is no "updated at" field. All
  timestamps are RFC 3339 with second precision (as the server serialises them), so compare
  a secret's change with a pod's ``status.startTime`` at that precision.
- ``GET /version``.
- Authentication: ``Authorization: Bearer <token>``, else 401 ``Unauthorized`` (with
  ``anonymous=True``: no header is user ``system:anonymous``, 403 on resources, like a
  cluster with anonymous auth on; a wrong token is still 401).
- Unknown paths: 404 Status; a known path with another method: 405 Status.
- Injected faults (``fail``, ``slow``, ``hang``, ``gate``: held until the test lets them
  through) match a method and a path regex (``re.fullmatch`` on the path, no query); they
  apply after authentication, before routing, to the next ``times`` matching requests
  (``None``: every one), with real Status bodies (403 names the user, verb and resource
  like the RBAC authorizer does).

Every request is recorded in ``requests`` (method, path, query, content type, body, headers
and the status answered). A bug in the fake answers 500 and is raised again when the fake
closes, so it cannot pass for an injected failure.

Not implemented: watch (400), ``follow`` (answers what is there and ends), server-side apply,
create/delete, other resources, unknown-field pruning (unknown fields are kept).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from aiohttp import web
from kubernetes_asyncio import client
from multidict import CIMultiDict

from tests.support.loopback import LoopbackServer

DEFAULT_TOKEN = "test-token"
DEFAULT_USER = "system:serviceaccount:responder:responder"
ANONYMOUS_USER = "system:anonymous"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_APPLY_PATCH = ("application/apply-patch+yaml", "application/apply-patch+cbor")
_ACCEPTED_PATCH_TYPES = (
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
    "application/strategic-merge-patch+json, application/apply-patch+cbor"
)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}

LogLines = Sequence[tuple[datetime, str]]


# --------------------------------------------------------------------------------- time


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: give the fake timezone-aware datetimes")
    return at.astimezone(UTC)


def rfc3339(at: datetime) -> str:
    """How the API server writes object timestamps: UTC, seconds, ``Z``."""
    return _utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(at: datetime) -> str:
    """Go's RFC3339Nano (trailing zeros of the fraction dropped): the log timestamps."""
    at = _utc(at)
    fraction = f"{at.microsecond:06d}".rstrip("0")
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


# ------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An answer with a Status body (raised inside the fake, turned into the response)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.message, reason=self.reason, details=self.details)


def status_body(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` object as the API server sends it with an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _bad_request(message: str) -> NoReturn:
    raise ApiError(400, message)


# ------------------------------------------------------------------------------ routing


@dataclass(frozen=True)
class Target:
    """What a request path names: ``resource`` in ``group`` (``""``: core), maybe in a
    namespace, maybe one object by name, maybe a subresource."""

    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def qualified(self) -> str:
        """``deployments.apps``, ``pods``: how the server names a resource in messages."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        details["kind"] = self.resource
        return details

    def verb(self, method: str, query: Mapping[str, str]) -> str:
        if method == "GET" and self.name is None:
            return "watch" if _parse_bool(query.get("watch"), "watch") else "list"
        return _VERBS.get(method, method.lower())


Handler = Callable[["_Call"], web.StreamResponse]


@dataclass
class _Route:
    pattern: re.Pattern[str]
    group: str
    resource: str
    subresource: str | None
    handlers: dict[str, Handler]


@dataclass
class _Call:
    """One request, parsed: the handlers' argument."""

    method: str
    target: Target
    query: Mapping[str, str]
    content_type: str
    body: bytes
    user_agent: str


# --------------------------------------------------------------------------- requests


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # the last value of a repeated parameter
    content_type: str | None  # without parameters (``; charset=...``)
    body: Any  # parsed JSON when it is JSON, else the text; None when empty
    headers: CIMultiDict[str]
    status: int | None = None  # what the fake answered (None: no answer yet / hung)


class Gate:
    """Holds the requests of a ``FakeKube.gate`` until the test lets them through: one at a
    time (``admit``) or all from now on (``open``). ``held``: how many wait now;
    ``max_held``: the most that ever waited at once; ``passed``: how many went through."""

    def __init__(self) -> None:
        self.held = 0
        self.max_held = 0
        self.passed = 0
        self._permits = 0
        self._open = False
        self._moved = asyncio.Event()

    def admit(self, n: int = 1) -> None:
        self._permits += n
        self._moved.set()

    def open(self) -> None:
        self._open = True
        self._moved.set()

    async def through(self, closing: asyncio.Event) -> None:
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        try:
            while not (self._open or self._permits or closing.is_set()):
                self._moved.clear()
                moved = asyncio.ensure_future(self._moved.wait())
                closed = asyncio.ensure_future(closing.wait())
                try:
                    await asyncio.wait({moved, closed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    moved.cancel()
                    closed.cancel()
            if not self._open and self._permits:
                self._permits -= 1
            self.passed += 1
        finally:
            self.held -= 1


@dataclass
class Fault:
    """An injected failure: see ``FakeKube.fail``."""

    method: str
    path_regex: re.Pattern[str]
    status: int | None
    remaining: int | None
    delay_s: float = 0.0
    hang: bool = False
    message: str | None = None
    reason: str | None = None
    retry_after_s: int | None = None
    hang_after_apply: bool = False  # carry the request out, then never answer
    hits: int = 0
    gate: Gate | None = None  # held there first (``FakeKube.gate``)

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method not in ("*", method):
            return False
        return self.path_regex.fullmatch(path) is not None


# ---------------------------------------------------------------------------- selectors

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})")
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)")
_EXISTS = re.compile(rf"(!?)\s*({_KEY})")

Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms]


def parse_label_selector(selector: str) -> list[Requirement]:
    """Kubernetes label selector syntax; a bad one raises a 400 ApiError."""
    if not selector.strip():
        return []
    requirements: list[Requirement] = []
    for term in _split_terms(selector):
        if m := _EQUALITY.fullmatch(term):
            operator = "!=" if m.group(2) == "!=" else "="
            requirements.append((m.group(1), operator, frozenset([m.group(3)])))
        elif m := _SET.fullmatch(term):
            values = [v.strip() for v in m.group(3).split(",")]
            if not all(re.fullmatch(_VALUE, v) for v in values):
                _bad_request(f"unable to parse requirement: invalid label value in {term!r}")
            requirements.append((m.group(1), m.group(2), frozenset(values)))
        elif m := _EXISTS.fullmatch(term):
            requirements.append((m.group(2), "!" if m.group(1) else "exists", frozenset()))
        else:
            _bad_request(
                f"unable to parse requirement: found {term!r}, expected: "
                "key, !key, key=value, key!=value, key in (...), key notin (...)"
            )
    return requirements


def labels_match(requirements: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "in": present and value in values,
            "!=": not present or value not in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[operator]
        if not ok:
            return False
    return True


_FIELD_TERM = re.compile(r"([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)")
_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.restartPolicy": lambda o: o["spec"].get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o["spec"].get("hostNetwork"))).lower(),
        "status.phase": lambda o: o["status"].get("phase", ""),
        "status.podIP": lambda o: o["status"].get("podIP", ""),
        "status.nominatedNodeName": lambda o: o["status"].get("nominatedNodeName", ""),
    },
    "secrets": {"type": lambda o: o.get("type", "")},
    "deployments": {},
}


def _field_filter(resource: str, selector: str | None) -> Callable[[dict[str, Any]], bool]:
    if not selector or not selector.strip():
        return lambda _: True
    fields: dict[str, Callable[[dict[str, Any]], str]] = {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"]["namespace"],
        **_FIELDS[resource],
    }
    terms: list[tuple[Callable[[dict[str, Any]], str], bool, str]] = []
    for term in _split_terms(selector):
        m = _FIELD_TERM.fullmatch(term)
        if m is None:
            _bad_request(f"invalid selector: {selector!r}; can't understand {term!r}")
        if m.group(1) not in fields:
            _bad_request(f"field label not supported: {m.group(1)}")
        terms.append((fields[m.group(1)], m.group(2) != "!=", m.group(3).strip()))
    return lambda o: all((get(o) == value) == equal for get, equal, value in terms)


# ------------------------------------------------------------------------------- params


def _parse_bool(text: str | None, name: str) -> bool:
    """Go's strconv.ParseBool (the client sends Python's ``True``/``False``)."""
    if text is None:
        return False
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    _bad_request(f'invalid boolean value "{text}" for parameter {name}')


def _parse_int(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        _bad_request(f'invalid value "{text}" for parameter {name}: not an integer')


def _dry_run(query: Mapping[str, str]) -> bool:
    value = query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        _bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return True


# ------------------------------------------------------------------------------ patches


@dataclass(frozen=True)
class _MergeList:
    """A list field with a patch merge key (``None``: a primitive list merged as a set)."""

    key: str | None
    item: Mapping[str, Any] = field(default_factory=dict)


_CONTAINER = {
    "env": _MergeList("name"),
    "ports": _MergeList("containerPort"),
    "volumeMounts": _MergeList("mountPath"),
    "volumeDevices": _MergeList("devicePath"),
    "resizePolicy": _MergeList("resourceName"),
}
_OBJECT_META = {"finalizers": _MergeList(None), "ownerReferences": _MergeList("uid")}
_POD_SPEC = {
    "containers": _MergeList("name", _CONTAINER),
    "initContainers": _MergeList("name", _CONTAINER),
    "ephemeralContainers": _MergeList("name", _CONTAINER),
    "volumes": _MergeList("name"),
    "imagePullSecrets": _MergeList("name"),
    "hostAliases": _MergeList("ip"),
    "topologySpreadConstraints": _MergeList("topologyKey"),
    "resourceClaims": _MergeList("name"),
    "schedulingGates": _MergeList("name"),
}
DEPLOYMENT_SCHEMA: Mapping[str, Any] = {
    "metadata": _OBJECT_META,
    "spec": {"template": {"metadata": _OBJECT_META, "spec": _POD_SPEC}},
    "status": {"conditions": _MergeList("type")},
}
SCALE_SCHEMA: Mapping[str, Any] = {"metadata": _OBJECT_META}

_DELETE = object()  # what a map with ``$patch: delete`` merges to


def _patch_error(message: str) -> NoReturn:
    raise ApiError(422, message)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [
            _strip_directives(v)
            for v in value
            if not (isinstance(v, dict) and set(v) == {"$patch"})
        ]
    return copy.deepcopy(value)


def strategic_merge(original: Any, patch: Any, schema: Mapping[str, Any]) -> Any:
    """A strategic merge patch applied to ``original`` (not modified); ``schema`` says which
    lists merge by which key (every other list is replaced)."""
    if not isinstance(patch, dict):
        _bad_request("strategic merge patch: the patch is not a JSON object")
    merged = _merge_map(original if isinstance(original, dict) else {}, patch, schema)
    return {} if merged is _DELETE else merged


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Mapping[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip_directives(patch)
    if directive not in (None, "merge"):
        _bad_request(f"unknown patch type: {directive!r} in map")
    result = copy.deepcopy(original)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            _bad_request("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    orders: dict[str, list[Any]] = {}
    deletes: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletes[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$"):
            _bad_request(f"unknown patch directive {key!r}")
        if value is None:
            result.pop(key, None)
            continue
        sub = schema.get(key)
        if isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(
                current if isinstance(current, dict) else {},
                value,
                sub if isinstance(sub, Mapping) else {},
            )
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(sub, _MergeList):
            current = result.get(key)
            result[key] = _merge_list(current if isinstance(current, list) else [], value, sub)
        else:
            result[key] = _strip_directives(value)
    for key, values in deletes.items():
        if key in result and isinstance(result[key], list):
            result[key] = [v for v in result[key] if v not in values]
    for key, order in orders.items():
        sub = schema.get(key)
        if key in result and isinstance(result[key], list) and isinstance(order, list):
            result[key] = _ordered(
                result[key], order, sub.key if isinstance(sub, _MergeList) else None
            )
    return result


def _merge_list(original: list[Any], patch: list[Any], spec: _MergeList) -> list[Any]:
    if spec.key is None:  # a set of primitives
        result = copy.deepcopy(original)
        for item in patch:
            if isinstance(item, dict) and item.get("$patch") == "replace":
                return [_strip_directives(v) for v in patch if v is not item]
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    if any(
        isinstance(i, dict) and i.get("$patch") == "replace" and spec.key not in i for i in patch
    ):
        return [
            _strip_directives(i) for i in patch if not (isinstance(i, dict) and spec.key not in i)
        ]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict):
            _bad_request(f"strategic merge patch: a list merged by {spec.key!r} holds {item!r}")
        if spec.key not in item:
            _bad_request(f"map: {item!r} does not contain declared merge key: {spec.key}")
        key = item[spec.key]
        positions = [
            i for i, o in enumerate(result) if isinstance(o, dict) and o.get(spec.key) == key
        ]
        if item.get("$patch") == "delete":
            result = [o for i, o in enumerate(result) if i not in positions]
            continue
        if positions:
            merged = _merge_map(result[positions[0]], item, spec.item)
            if merged is _DELETE:
                result.pop(positions[0])
            else:
                result[positions[0]] = merged
        else:
            merged = _merge_map({}, item, spec.item)
            if merged is not _DELETE:
                result.append(merged)
    return result


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        if key is None:
            return item
        return item.get(key) if isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    first = [i for w in wanted for i in items if ident(i) == w]
    rest = [i for i in items if ident(i) not in wanted]
    return first + rest


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merged recursively, ``null`` deletes, lists replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        _bad_request(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            _patch_error(f"doc is missing path: {path!r}")
        return node[token]
    if isinstance(node, list):
        index = _index(node, token, path, allow_end=False)
        return node[index]
    _patch_error(f"doc is missing path: {path!r}")


def _index(node: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(node)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        _patch_error(f"invalid array index {token!r} in {path!r}")
    index = int(token)
    if index > len(node) or (index == len(node) and not allow_end):
        _patch_error(f"array index out of bounds in {path!r}")
    return index


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = _child(node, token, path)
    return node


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), copy.deepcopy(value))
    else:
        _patch_error(f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        _patch_error("cannot remove the whole document")
    parent, last = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if last not in parent:
            _patch_error(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False))
    _patch_error(f"doc is missing path: {path!r}")


def json_patch(original: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch."""
    if not isinstance(operations, list):
        _bad_request("json patch: the patch is not a JSON array of operations")
    doc = copy.deepcopy(original)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            _bad_request(f"json patch: invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            _bad_request(f"json patch: {kind} operation without a value")
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if not _pointer(path):
                doc = copy.deepcopy(op["value"])
            else:
                _get(doc, path)  # must exist
                _remove(doc, path)
                doc = _add(doc, path, op["value"])
        elif kind in ("move", "copy"):
            source = op.get("from")
            if source is None:
                _bad_request(f"json patch: {kind} operation without from")
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                _patch_error(f"testing value {path} failed: test failed")
        else:
            _bad_request(f"json patch: unexpected operation {kind!r}")
    return doc


def apply_patch(
    original: dict[str, Any], content_type: str, body: bytes, schema: Mapping[str, Any]
) -> Any:
    """``body`` (of ``content_type``) applied to ``original``; raises 400/415/422."""
    if content_type in _APPLY_PATCH:
        raise ApiError(415, "fake_kube: server-side apply is not implemented")
    if content_type not in (STRATEGIC_MERGE_PATCH, MERGE_PATCH, JSON_PATCH):
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + _ACCEPTED_PATCH_TYPES,
        )
    if not body.strip():
        _bad_request("the body of the request was empty")
    try:
        patch = json.loads(body)
    except ValueError as exc:
        _bad_request(f"error decoding patch: {exc}")
    if content_type == JSON_PATCH:
        return json_patch(original, patch)
    if not isinstance(patch, dict):
        _bad_request("the patch is not a JSON object")
    if content_type == MERGE_PATCH:
        return merge_patch(original, patch)
    return strategic_merge(original, patch, schema)


# ------------------------------------------------------------------------------ objects


def _encode(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def _container(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """A container from a name or a partial spec (``env`` may be a ``{name: value}`` map)."""
    container: dict[str, Any] = (
        {"name": spec} if isinstance(spec, str) else copy.deepcopy(dict(spec))
    )
    name = container.setdefault("name", "app")
    container.setdefault("image", f"registry.example/{name}:1.0")
    env = container.get("env")
    if isinstance(env, Mapping):
        container["env"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", "IfNotPresent")
    return container


def _template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def selector_string(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def _managed_entry(
    manager: str, api_version: str, at: datetime, subresource: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": rfc3339(at),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _touch_managed_fields(
    meta: dict[str, Any],
    manager: str,
    api_version: str,
    at: datetime,
    subresource: str | None = None,
) -> None:
    """Record that ``manager`` changed the object at ``at`` (one entry per manager, operation
    and subresource, as the server keeps them)."""
    entries = [
        e
        for e in meta.get("managedFields") or []
        if not (
            e.get("manager") == manager
            and e.get("operation") == "Update"
            and e.get("subresource") == subresource
        )
    ]
    entries.append(_managed_entry(manager, api_version, at, subresource))
    meta["managedFields"] = entries


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """What decides whether an update changed anything (server-maintained fields aside)."""
    shown = copy.deepcopy(obj)
    meta = shown.get("metadata") or {}
    for key in ("managedFields", "resourceVersion", "generation"):
        meta.pop(key, None)
    shown.pop("status", None)
    return shown


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# ------------------------------------------------------------------------------- server


class FakeKube(LoopbackServer):
    """The fake API server and its state. See the module docstring."""

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        user: str = DEFAULT_USER,
        anonymous: bool = False,
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        git_version: str = "v1.31.2",
    ) -> None:
        super().__init__(host=host)
        self.token = token
        self.user = user
        self.anonymous = anonymous
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.git_version = git_version
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.internal_errors: list[BaseException] = []
        self.auto_rollout = True
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._logs: dict[tuple[str, str, str], list[tuple[datetime, str]]] = {}
        self._rolled_out: dict[tuple[str, str], Any] = {}  # the last pod template rolled out
        self._revision = 1000
        self.access_reviews = AccessReviews()  # SelfSubjectAccessReview: see the end
        self._routes = self._build_routes()

    # -- lifecycle

    def configuration(self, token: str | None = DEFAULT_TOKEN) -> client.Configuration:
        """A client configuration for this server with ``token`` (None: no credentials)."""
        cfg = client.Configuration(host=self.url)
        if token is not None:
            cfg.api_key = {"BearerToken": f"Bearer {token}"}
        return cfg

    def api_client(self, token: str | None = DEFAULT_TOKEN) -> client.ApiClient:
        """A new ``ApiClient`` (use ``async with`` so its session is closed)."""
        return client.ApiClient(configuration=self.configuration(token))

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.close()
        if self.internal_errors and exc_type is None:
            raise AssertionError(f"fake_kube failed internally: {self.internal_errors!r}") from (
                self.internal_errors[0]
            )

    # -- requests and faults

    def calls(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request so far, in order."""
        return [(r.method, r.path) for r in self.requests]

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if method in ("*", r.method) and pattern.fullmatch(r.path)]

    def clear_requests(self) -> None:
        self.requests.clear()

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int | None = 500,
        *,
        times: int | None = 1,
        delay_s: float = 0.0,
        message: str | None = None,
        reason: str | None = None,
        retry_after_s: int | None = None,
    ) -> Fault:
        """The next ``times`` requests (``None``: all) with ``method`` (``"*"``: any) whose
        path fully matches ``path_regex`` answer ``status`` with a real Status body (the
        message the server would write unless ``message``), after ``delay_s``.
        ``status=None``: only the delay, then the normal answer. Earlier faults win."""
        fault = Fault(
            method=method.upper(),
            path_regex=re.compile(path_regex),
            status=status,
            remaining=times,
            delay_s=delay_s,
            message=message,
            reason=reason,
            retry_after_s=retry_after_s,
        )
        self.faults.append(fault)
        return fault

    def hang_after_apply(self, method: str, path_regex: str, *, times: int | None = 1) -> Fault:
        """Carry the request out (the change is stored), then never answer: what a client
        sees when the API server applied its patch and the connection died."""
        fault = self.fail(method, path_regex, None, times=times)
        fault.hang_after_apply = True
        return fault

    def slow(self, method: str, path_regex: str, delay_s: float, *, times: int | None = 1) -> Fault:
        """Answer normally, after ``delay_s`` seconds."""
        return self.fail(method, path_regex, None, times=times, delay_s=delay_s)

    def hang(self, method: str, path_regex: str, *, times: int | None = 1) -> Fault:
        """Never answer (until the client gives up or the fake closes)."""
        fault = self.fail(method, path_regex, None, times=times)
        fault.hang = True
        return fault

    def gate(self, method: str, path_regex: str, *, times: int | None = None) -> Gate:
        """Hold the matching requests (recorded on arrival) until the returned gate lets
        them through (``Gate.admit``, ``Gate.open``) or the fake closes; then the normal
        answer."""
        fault = self.fail(method, path_regex, None, times=times)
        fault.gate = Gate()
        return fault.gate

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- state

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _now(self) -> datetime:
        return _utc(self.clock())

    def _meta(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None,
        annotations: Mapping[str, str] | None,
        created_at: datetime,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self._next_revision(),
            "creationTimestamp": rfc3339(created_at),
        }
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta

    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str] | None = None,
        containers: Sequence[str | Mapping[str, Any]] = ("app",),
        started_at: datetime | None = None,
        logs: LogLines | Mapping[str, LogLines] | None = None,
        *,
        phase: str = "Running",
        node_name: str = "node-1",
        annotations: Mapping[str, str] | None = None,
        restart_count: int = 0,
    ) -> dict[str, Any]:
        """Add (or replace) a pod. ``containers``: names or partial container specs.
        ``logs``: ``[(when, line), ...]`` for the first container, or ``{container: [...]}``.
        A ``Pending`` pod has no ``startTime`` and its log cannot be read."""
        if not containers:
            raise ValueError("a pod has at least one container")
        started = _utc(started_at) if started_at is not None else self._now()
        specs = [_container(c) for c in containers]
        running = phase != "Pending"
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if phase == "Running" else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": rfc3339(started),
                },
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": rfc3339(started),
                },
            ],
            "hostIP": "10.0.0.10",
            "podIP": f"10.244.0.{len(self._objects) % 250 + 2}",
            "qosClass": "BestEffort",
        }
        if running:
            status["startTime"] = rfc3339(started)
            status["containerStatuses"] = [
                {
                    "name": c["name"],
                    "ready": phase == "Running",
                    "restartCount": restart_count,
                    "started": phase == "Running",
                    "image": c["image"],
                    "imageID": f"{c['image']}@sha256:{'0' * 64}",
                    "containerID": f"containerd://{uuid.uuid4().hex}",
                    "state": {"running": {"startedAt": rfc3339(started)}},
                }
                for c in specs
            ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self._meta(
                namespace, name, labels=labels, annotations=annotations, created_at=started
            ),
            "spec": {
                "containers": specs,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "nodeName": node_name,
                "schedulerName": "default-scheduler",
            },
            "status": status,
        }
        self._objects[("pods", namespace, name)] = pod
        for container in specs:
            self._logs[(namespace, name, container["name"])] = []
        if logs is not None:
            per_container = logs if isinstance(logs, Mapping) else {specs[0]["name"]: logs}
            for container_name, lines in per_container.items():
                for at, line in lines:
                    self.add_log(namespace, name, line, at=at, container=container_name)
        return copy.deepcopy(pod)

    def add_log(
        self,
        namespace: str,
        pod: str,
        line: str,
        *,
        at: datetime | None = None,
        container: str | None = None,
    ) -> None:
        """Append a log line (``at``: its timestamp, default now) to a container of a pod
        (default: its first). Lines stay in time order."""
        obj = self._require("pods", namespace, pod)
        names = [c["name"] for c in obj["spec"]["containers"]]
        name = container or names[0]
        if name not in names:
            raise KeyError(f"pod {namespace}/{pod} has no container {name!r}; it has {names}")
        when = _utc(at) if at is not None else self._now()
        lines = self._logs.setdefault((namespace, pod, name), [])
        for text in line.removesuffix("\n").split("\n"):
            position = len(lines)
            while position > 0 and lines[position - 1][0] > when:
                position -= 1
            lines.insert(position, (when, text))

    def restart_container(
        self, namespace: str, pod: str, container: str, *, at: datetime | None = None
    ) -> dict[str, Any]:
        """What the kubelet records when one container of a pod restarts (a sidecar
        crash-looping, say): its ``restartCount`` up by one and ``state.running.startedAt``
        the restart time (default now); the pod's ``startTime`` stays."""
        obj = self._require("pods", namespace, pod)
        statuses = obj["status"].get("containerStatuses") or []
        [status] = [s for s in statuses if s["name"] == container] or [None]
        if status is None:
            raise KeyError(f"pod {namespace}/{pod} has no running container {container!r}")
        status["restartCount"] += 1
        status["containerID"] = f"containerd://{uuid.uuid4().hex}"
        status["state"] = {"running": {"startedAt": rfc3339(_utc(at) if at else self._now())}}
        obj["metadata"]["resourceVersion"] = self._next_revision()
        return copy.deepcopy(obj)

    def remove_pod(self, namespace: str, name: str) -> None:
        self._require("pods", namespace, name)
        del self._objects[("pods", namespace, name)]
        for key in [k for k in self._logs if k[:2] == (namespace, name)]:
            del self._logs[key]

    def add_deployment(
        self,
        namespace: str,
        name: str,
        containers: Sequence[str | Mapping[str, Any]] = ("app",),
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        *,
        selector: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) an apps/v1 Deployment, rolled out. ``containers``: names or
        partial specs; ``env`` as a list of ``{name, value}`` or a ``{name: value}`` map.
        ``labels`` (default ``{"app": name}``) go on the Deployment; ``selector`` (default:
        ``labels``) is the selector and the pod template's labels."""
        labels = dict(labels) if labels is not None else {"app": name}
        match_labels = dict(selector) if selector is not None else dict(labels)
        created = _utc(created_at) if created_at is not None else self._now()
        meta = self._meta(
            namespace,
            name,
            labels=labels,
            annotations={REVISION_ANNOTATION: "1", **(annotations or {})},
            created_at=created,
        )
        meta["generation"] = 1
        _touch_managed_fields(meta, "kubectl-client-side-apply", "apps/v1", created)
        template_meta: dict[str, Any] = {"labels": dict(match_labels)}
        if pod_annotations:
            template_meta["annotations"] = dict(pod_annotations)
        deployment: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": match_labels},
                "template": {
                    "metadata": template_meta,
                    "spec": {
                        "containers": [_container(c) for c in containers],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "schedulerName": "default-scheduler",
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }
        self._validate_deployment(deployment, None)
        self._rolled_out.pop((namespace, name), None)
        self._roll_out(deployment)
        self._objects[("deployments", namespace, name)] = deployment
        return copy.deepcopy(deployment)

    def complete_rollout(self, namespace: str, name: str) -> dict[str, Any]:
        """What the deployment controller does once a rollout finishes (with
        ``auto_rollout = False``)."""
        deployment = self._require("deployments", namespace, name)
        self._roll_out(deployment)
        deployment["metadata"]["resourceVersion"] = self._next_revision()
        return copy.deepcopy(deployment)

    def set_deployment_status(self, namespace: str, name: str, **status: Any) -> dict[str, Any]:
        """Overwrite fields of a deployment's status (as its controller would)."""
        deployment = self._require("deployments", namespace, name)
        deployment["status"].update(copy.deepcopy(status))
        deployment["metadata"]["resourceVersion"] = self._next_revision()
        return copy.deepcopy(deployment)

    def set_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str | bytes],
        changed_at: datetime | None = None,
        *,
        manager: str = "kubectl-edit",
        secret_type: str = "Opaque",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create the secret, or replace its data; either way it changed at ``changed_at``
        (default now): ``manager``'s ``managedFields`` entry gets that time and
        ``resourceVersion`` moves on."""
        at = _utc(changed_at) if changed_at is not None else self._now()
        key = ("secrets", namespace, name)
        secret = self._objects.get(key)
        if secret is None:
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": self._meta(
                    namespace, name, labels=labels, annotations=None, created_at=at
                ),
                "type": secret_type,
            }
            self._objects[key] = secret
        else:
            secret["metadata"]["resourceVersion"] = self._next_revision()
            if labels is not None:
                secret["metadata"]["labels"] = dict(labels)
        secret["data"] = {k: _encode(v) for k, v in data.items()}
        _touch_managed_fields(secret["metadata"], manager, "v1", at)
        return copy.deepcopy(secret)

    def remove_secret(self, namespace: str, name: str) -> None:
        self._require("secrets", namespace, name)
        del self._objects[("secrets", namespace, name)]

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._require("pods", namespace, name))

    def edit_deployment(
        self, namespace: str, name: str, edit: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change the stored deployment in place, as another client would (a test's way to
        set up a state; no request is recorded)."""
        edit(self._require("deployments", namespace, name))

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """The deployment as stored now (a copy)."""
        return copy.deepcopy(self._require("deployments", namespace, name))

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._require("secrets", namespace, name))

    def scale(self, namespace: str, name: str) -> dict[str, Any]:
        return self._scale_of(self._require("deployments", namespace, name))

    def logs(self, namespace: str, pod: str, container: str) -> list[tuple[datetime, str]]:
        return list(self._logs.get((namespace, pod, container), []))

    def _require(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._objects[(resource, namespace, name)]
        except KeyError:
            raise KeyError(f"no {resource} {namespace}/{name} in the fake") from None

    # -- the deployment controller and validation

    def _roll_out(self, deployment: dict[str, Any]) -> None:
        meta = deployment["metadata"]
        spec = deployment["spec"]
        key = (meta["namespace"], meta["name"])
        previous = self._rolled_out.get(key)
        self._rolled_out[key] = copy.deepcopy(spec.get("template"))
        if previous is not None and previous != spec.get("template"):
            annotations = meta.setdefault("annotations", {})
            revision = int(annotations.get(REVISION_ANNOTATION, "0")) + 1
            annotations[REVISION_ANNOTATION] = str(revision)
        replicas = int(spec.get("replicas", 1))
        at = rfc3339(self._now())
        rs_name = f"{meta['name']}-{_template_hash(spec.get('template'))}"
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1)}
        if replicas:
            status.update(
                replicas=replicas,
                updatedReplicas=replicas,
                readyReplicas=replicas,
                availableReplicas=replicas,
            )
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True",
                "lastUpdateTime": at,
                "lastTransitionTime": at,
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": at,
                "lastTransitionTime": at,
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
            },
        ]
        deployment["status"] = status

    def _validate_deployment(self, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        causes: list[tuple[str, str]] = []  # (field, message)

        def invalid(path: str, message: str) -> None:
            causes.append((path, message))

        meta = new.get("metadata")
        for key in ("labels", "annotations"):
            values = meta.get(key) if isinstance(meta, dict) else None
            if values is not None and (
                not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
            ):
                invalid(f"metadata.{key}", f"Invalid value: {values!r}: values must be strings")
        spec = new.get("spec")
        if not isinstance(spec, dict):
            invalid("spec", "Required value")
            spec = {}
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            invalid("spec.replicas", f"Invalid value: {replicas!r}: must be an integer")
        elif replicas < 0:
            invalid(
                "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
            )
        selector = spec.get("selector")
        match_labels = selector.get("matchLabels") if isinstance(selector, dict) else None
        if not isinstance(match_labels, dict) or not match_labels:
            invalid("spec.selector", "Required value")
            match_labels = {}
        elif old is not None and selector != old["spec"].get("selector"):
            invalid("spec.selector", f"Invalid value: {selector!r}: field is immutable")
        template = _dict(spec.get("template"))
        template_meta = _dict(template.get("metadata"))
        template_labels = template_meta.get("labels") or {}
        if match_labels and not labels_match(
            [(k, "=", frozenset([v])) for k, v in match_labels.items()],
            template_labels if isinstance(template_labels, dict) else {},
        ):
            invalid(
                "spec.template.metadata.labels",
                f"Invalid value: {template_labels!r}: `selector` does not match template `labels`",
            )
        for key in ("labels", "annotations"):
            values = template_meta.get(key)
            if values is not None and (
                not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
            ):
                invalid(
                    f"spec.template.metadata.{key}",
                    f"Invalid value: {values!r}: values must be strings",
                )
        pod_spec = _dict(template.get("spec"))
        containers = pod_spec.get("containers")
        if not isinstance(containers, list) or not containers:
            invalid("spec.template.spec.containers", "Required value")
            containers = []
        seen: set[str] = set()
        for i, container in enumerate(containers):
            where = f"spec.template.spec.containers[{i}]"
            if not isinstance(container, dict):
                invalid(where, f"Invalid value: {container!r}: must be an object")
                continue
            name = container.get("name")
            if not isinstance(name, str) or not name:
                invalid(f"{where}.name", "Required value")
            elif not _DNS_LABEL.fullmatch(name):
                invalid(f"{where}.name", f"Invalid value: {name!r}: must be a DNS label")
            elif name in seen:
                invalid(f"{where}.name", f"Duplicate value: {name!r}")
            else:
                seen.add(name)
            image = container.get("image")
            if not isinstance(image, str) or not image.strip():
                invalid(f"{where}.image", "Required value")
            env = container.get("env", [])
            if not isinstance(env, list):
                invalid(f"{where}.env", f"Invalid value: {env!r}: must be a list")
                env = []
            for j, var in enumerate(env):
                if (
                    not isinstance(var, dict)
                    or not isinstance(var.get("name"), str)
                    or not var["name"]
                ):
                    invalid(f"{where}.env[{j}].name", "Required value")
                elif "value" in var and not isinstance(var["value"], str):
                    invalid(
                        f"{where}.env[{j}].value",
                        f"Invalid value: {var['value']!r}: must be a string",
                    )
        if causes:
            name = meta.get("name", "") if isinstance(meta, dict) else ""
            message = f'Deployment.apps "{name}" is invalid: ' + ", ".join(
                f"{path}: {text}" for path, text in causes
            )
            raise ApiError(
                422,
                message,
                details={
                    "name": name,
                    "group": "apps",
                    "kind": "Deployment",
                    "causes": [
                        {"reason": "FieldValueInvalid", "message": text, "field": path}
                        for path, text in causes
                    ],
                },
            )

    def _commit_deployment(
        self,
        old: dict[str, Any],
        new: Any,
        *,
        target: Target,
        manager: str,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` as the server would; return what it answers."""
        if not isinstance(new, dict):
            raise ApiError(422, "the patched object is not a JSON object")
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        old_meta = old["metadata"]
        if meta.get("name", old_meta["name"]) != old_meta["name"]:
            _bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({old_meta['name']})"
            )
        if meta.get("namespace", old_meta["namespace"]) != old_meta["namespace"]:
            _bad_request("the namespace of the object does not match the namespace on the URL")
        rv = meta.get("resourceVersion")
        if rv is not None and rv != old_meta["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {target.qualified} "{old_meta["name"]}": the '
                "object has been modified; please apply your changes to the latest version and "
                "try again",
                details=target.details(),
            )
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
        meta["managedFields"] = copy.deepcopy(old_meta.get("managedFields", []))
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        new["status"] = copy.deepcopy(old.get("status", {}))
        self._validate_deployment(new, old)
        if _comparable(new) == _comparable(old):
            return copy.deepcopy(old)
        if new.get("spec") != old.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        _touch_managed_fields(meta, manager, "apps/v1", self._now(), target.subresource)
        if dry_run:
            return new
        meta["resourceVersion"] = self._next_revision()
        if self.auto_rollout:
            self._roll_out(new)
        self._objects[("deployments", old_meta["namespace"], old_meta["name"])] = new
        return copy.deepcopy(new)

    def _scale_of(self, deployment: dict[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        status: dict[str, Any] = {"replicas": deployment["status"].get("replicas", 0)}
        match_labels = deployment["spec"]["selector"].get("matchLabels") or {}
        if match_labels:
            status["selector"] = selector_string(match_labels)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": deployment["spec"].get("replicas", 1)},
            "status": status,
        }

    # -- HTTP

    def _build_routes(self) -> list[_Route]:
        ns = r"(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
        name = r"(?P<name>[^/]+)"

        def route(
            pattern: str,
            group: str,
            resource: str,
            handlers: dict[str, Handler],
            subresource: str | None = None,
        ) -> _Route:
            return _Route(re.compile(pattern), group, resource, subresource, handlers)

        core = "/api/v1"
        apps = "/apis/apps/v1"
        return [
            route("/version/?", "", "version", {"GET": self._version}),
            route(f"{core}/pods", "", "pods", {"GET": self._list}),
            route(f"{core}/namespaces/{ns}/pods", "", "pods", {"GET": self._list}),
            route(f"{core}/namespaces/{ns}/pods/{name}", "", "pods", {"GET": self._get}),
            route(f"{core}/namespaces/{ns}/pods/{name}/log", "", "pods", {"GET": self._log}, "log"),
            route(f"{core}/secrets", "", "secrets", {"GET": self._list}),
            route(f"{core}/namespaces/{ns}/secrets", "", "secrets", {"GET": self._list}),
            route(f"{core}/namespaces/{ns}/secrets/{name}", "", "secrets", {"GET": self._get}),
            route(f"{apps}/deployments", "apps", "deployments", {"GET": self._list}),
            route(
                f"{apps}/namespaces/{ns}/deployments", "apps", "deployments", {"GET": self._list}
            ),
            route(
                f"{apps}/namespaces/{ns}/deployments/{name}",
                "apps",
                "deployments",
                {"GET": self._get, "PATCH": self._patch_deployment, "PUT": self._put_deployment},
            ),
            route(
                f"{apps}/namespaces/{ns}/deployments/{name}/scale",
                "apps",
                "deployments",
                {"GET": self._get_scale, "PATCH": self._patch_scale, "PUT": self._put_scale},
                "scale",
            ),
            self.access_reviews.route(),
        ]

    def target_of(self, path: str) -> Target | None:
        """What a recorded request's path names (for RBAC checks)."""
        resolved = self._resolve(path)
        return resolved[1] if resolved else None

    def _resolve(self, path: str) -> tuple[_Route, Target] | None:
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is not None:
                groups = m.groupdict()
                return route, Target(
                    route.group,
                    route.resource,
                    groups.get("namespace"),
                    groups.get("name"),
                    route.subresource,
                )
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        content_type = request.headers.get("Content-Type")
        media = content_type.split(";", 1)[0].strip().lower() if content_type else None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            content_type=media,
            body=_decode_body(raw),
            headers=CIMultiDict(request.headers),
        )
        self.requests.append(recorded)
        try:
            response = await self._respond(request, media or "", raw)
        except ApiError as err:
            response = web.json_response(err.body(), status=err.code, headers=err.headers)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake: answered, raised at close
            self.internal_errors.append(exc)
            body = status_body(500, f"fake_kube internal error: {exc!r}")
            response = web.json_response(body, status=500)
        response.headers["Audit-Id"] = str(uuid.uuid4())
        recorded.status = response.status
        return response

    def _user(self, request: web.Request) -> str:
        if self.token is None:
            return self.user
        header = request.headers.get("Authorization")
        if header is None and self.anonymous:
            return ANONYMOUS_USER
        if header != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")
        return self.user

    async def _respond(self, request: web.Request, media: str, raw: bytes) -> web.StreamResponse:
        user = self._user(request)
        method = request.method
        path = request.path
        resolved = self._resolve(path)
        fault = next((f for f in self.faults if f.matches(method, path)), None)
        if fault is not None:
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
            if fault.hang:
                await self._closing.wait()
                raise ApiError(503, "fake_kube is closing")
            if fault.gate is not None:
                await fault.gate.through(self._closing)
            if fault.delay_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=fault.delay_s)
            if fault.status is not None:
                raise self._injected(fault, method, request, resolved, user)
        if resolved is None:
            raise ApiError(404, "the server could not find the requested resource", details={})
        route, target = resolved
        if user == ANONYMOUS_USER and target.resource != "version":
            raise self._forbidden(target, method, request.query, user)
        handler = route.handlers.get(method)
        if handler is None:
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                details=target.details(),
            )
        call = _Call(
            method=method,
            target=target,
            query=dict(request.query),
            content_type=media,
            body=raw,
            user_agent=request.headers.get("User-Agent", ""),
        )
        response = handler(call)
        if fault is not None and fault.hang_after_apply:
            await self._closing.wait()
            raise ApiError(503, "fake_kube is closing")
        return response

    def _forbidden(
        self, target: Target, method: str, query: Mapping[str, str], user: str
    ) -> ApiError:
        verb = target.verb(method, query)
        subject = f'{target.qualified} "{target.name}"' if target.name else target.qualified
        where = (
            f' in the namespace "{target.namespace}"'
            if target.namespace
            else " at the cluster scope"
        )
        return ApiError(
            403,
            f'{subject} is forbidden: User "{user}" cannot {verb} resource '
            f'"{target.rbac_resource}" in API group "{target.group}"{where}',
            details=target.details(),
        )

    def _injected(
        self,
        fault: Fault,
        method: str,
        request: web.Request,
        resolved: tuple[_Route, Target] | None,
        user: str,
    ) -> ApiError:
        status = fault.status
        assert status is not None
        target = resolved[1] if resolved is not None else None
        headers: dict[str, str] = {}
        details: dict[str, Any] = target.details() if target is not None else {}
        if status == 403 and target is not None:
            error = self._forbidden(target, method, request.query, user)
        elif status == 404 and target is not None and target.name is not None:
            error = ApiError(404, f'{target.qualified} "{target.name}" not found', details=details)
        elif status == 409 and target is not None and target.name is not None:
            error = ApiError(
                409,
                f'Operation cannot be fulfilled on {target.qualified} "{target.name}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                details=details,
            )
        elif status == 429:
            retry = fault.retry_after_s or 1
            headers["Retry-After"] = str(retry)
            error = ApiError(
                429,
                "Too many requests, please try again later.",
                details={"retryAfterSeconds": retry},
            )
        elif status == 500:
            error = ApiError(
                500,
                "Internal error occurred: fake_kube: injected failure",
                details={"causes": [{"message": "fake_kube: injected failure"}]},
            )
        else:
            messages = {
                401: "Unauthorized",
                404: "the server could not find the requested resource",
                409: "Operation cannot be fulfilled: conflict",
                503: "the server is currently unable to handle the request",
                504: (
                    "the server was unable to return a response in the time allotted, but may "
                    "still be processing the request"
                ),
            }
            error = ApiError(status, messages.get(status, f"fake_kube: injected {status}"))
        if fault.message is not None:
            error.message = fault.message
        if fault.reason is not None:
            error.reason = fault.reason
        error.headers.update(headers)
        return error

    def _not_found(self, target: Target) -> ApiError:
        return ApiError(
            404, f'{target.qualified} "{target.name}" not found', details=target.details()
        )

    def _lookup(self, target: Target) -> dict[str, Any]:
        assert target.namespace is not None
        assert target.name is not None
        obj = self._objects.get((target.resource, target.namespace, target.name))
        if obj is None:
            raise self._not_found(target)
        return obj

    @staticmethod
    def _manager(call: _Call) -> str:
        manager = call.query.get("fieldManager")
        if manager is not None:
            if len(manager) > 128:
                raise ApiError(422, "fieldManager: Too long: may not be more than 128 bytes")
            return manager
        return call.user_agent.split("/", 1)[0] or "unknown"

    def _version(self, _: _Call) -> web.Response:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return web.json_response(
            {
                "major": major,
                "minor": minor,
                "gitVersion": self.git_version,
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-10-22T20:28:14Z",
                "goVersion": "go1.22.8",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    def _get(self, call: _Call) -> web.Response:
        return web.json_response(self._lookup(call.target))

    def _list(self, call: _Call) -> web.Response:
        target = call.target
        if _parse_bool(call.query.get("watch"), "watch"):
            _bad_request("fake_kube: watch is not implemented")
        requirements = parse_label_selector(call.query.get("labelSelector", ""))
        by_field = _field_filter(target.resource, call.query.get("fieldSelector"))
        items = [
            obj
            for (resource, namespace, _), obj in sorted(self._objects.items())
            if resource == target.resource
            and target.namespace in (None, namespace)
            and labels_match(requirements, obj["metadata"].get("labels") or {})
            and by_field(obj)
        ]
        list_meta: dict[str, Any] = {"resourceVersion": str(self._revision)}
        offset = 0
        token = call.query.get("continue")
        if token:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(token))["offset"])
            except (ValueError, KeyError, TypeError):
                _bad_request("continue key is not valid")
        limit = _parse_int(call.query.get("limit"), "limit") or 0
        if limit > 0 and offset + limit < len(items):
            next_token = json.dumps({"offset": offset + limit}).encode()
            list_meta["continue"] = base64.urlsafe_b64encode(next_token).decode()
            list_meta["remainingItemCount"] = len(items) - offset - limit
            items = items[offset : offset + limit]
        else:
            items = items[offset:]
        kinds = {"pods": ("v1", "PodList"), "secrets": ("v1", "SecretList")}
        api_version, kind = kinds.get(target.resource, ("apps/v1", "DeploymentList"))
        shown = []
        for obj in items:  # list items carry no apiVersion/kind
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)
            item.pop("kind", None)
            shown.append(item)
        return web.json_response(
            {"kind": kind, "apiVersion": api_version, "metadata": list_meta, "items": shown}
        )

    def _log(self, call: _Call) -> web.Response:
        target = call.target
        pod = self._lookup(target)
        query = call.query
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if container is None:
            if len(names) > 1:
                _bad_request(
                    f"a container name must be specified for pod {target.name}, "
                    f"choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        elif container not in names:
            _bad_request(f"container {container} is not valid for pod {target.name}")
        since_seconds = _parse_int(query.get("sinceSeconds"), "sinceSeconds")
        since_time = query.get("sinceTime")
        tail_lines = _parse_int(query.get("tailLines"), "tailLines")
        limit_bytes = _parse_int(query.get("limitBytes"), "limitBytes")
        problems = []
        if since_seconds is not None and since_time is not None:
            problems.append("at most one of `sinceTime` or `sinceSeconds` may be specified")
        if since_seconds is not None and since_seconds < 1:
            problems.append("sinceSeconds: Invalid value: must be greater than 0")
        if tail_lines is not None and tail_lines < 0:
            problems.append("tailLines: Invalid value: must be greater than or equal to 0")
        if limit_bytes is not None and limit_bytes < 1:
            problems.append("limitBytes: Invalid value: must be greater than 0")
        if problems:
            raise ApiError(422, f'PodLogOptions "{target.name}" is invalid: ' + ", ".join(problems))
        if _parse_bool(query.get("previous"), "previous"):
            _bad_request(
                f'previous terminated container "{container}" in pod "{target.name}" not found'
            )
        if pod["status"].get("phase") == "Pending":
            _bad_request(
                f'container "{container}" in pod "{target.name}" is waiting to start: '
                "ContainerCreating"
            )
        _parse_bool(query.get("follow"), "follow")
        timestamps = _parse_bool(query.get("timestamps"), "timestamps")
        lines = self._logs.get((target.namespace or "", target.name or "", container), [])
        if since_seconds is not None or since_time is not None:
            try:
                since = (
                    self._now() - timedelta(seconds=since_seconds)
                    if since_seconds is not None
                    else parse_time(since_time or "")
                )
            except ValueError:
                _bad_request(f"sinceTime: invalid time {since_time!r}")
            lines = [(at, text) for at, text in lines if at >= since]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines else []
        text = "".join(
            (f"{rfc3339_nano(at)} {line}\n" if timestamps else f"{line}\n") for at, line in lines
        )
        body = text.encode()
        if limit_bytes is not None:
            body = body[:limit_bytes]
        return web.Response(body=body, status=200, content_type="text/plain")

    def _patch_deployment(self, call: _Call) -> web.Response:
        dry_run = _dry_run(call.query)
        current = self._lookup(call.target)
        patched = apply_patch(current, call.content_type, call.body, DEPLOYMENT_SCHEMA)
        answer = self._commit_deployment(
            current, patched, target=call.target, manager=self._manager(call), dry_run=dry_run
        )
        return web.json_response(answer)

    def _put_deployment(self, call: _Call) -> web.Response:
        dry_run = _dry_run(call.query)
        current = self._lookup(call.target)
        body = _json_object(call, "Deployment", "apps/v1")
        answer = self._commit_deployment(
            current, body, target=call.target, manager=self._manager(call), dry_run=dry_run
        )
        return web.json_response(answer)

    def _get_scale(self, call: _Call) -> web.Response:
        return web.json_response(self._scale_of(self._lookup(call.target)))

    def _patch_scale(self, call: _Call) -> web.Response:
        dry_run = _dry_run(call.query)
        current = self._lookup(call.target)
        scale = self._scale_of(current)
        patched = apply_patch(scale, call.content_type, call.body, SCALE_SCHEMA)
        return self._scale_to(call, current, patched, dry_run)

    def _put_scale(self, call: _Call) -> web.Response:
        dry_run = _dry_run(call.query)
        current = self._lookup(call.target)
        return self._scale_to(call, current, _json_object(call, "Scale", "autoscaling/v1"), dry_run)

    def _scale_to(
        self, call: _Call, current: dict[str, Any], scale: Any, dry_run: bool
    ) -> web.Response:
        name = current["metadata"]["name"]
        spec = scale.get("spec") if isinstance(scale, dict) else None
        replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas!r}: must be greater than or equal to 0",
                details={
                    "name": name,
                    "group": "autoscaling",
                    "kind": "Scale",
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {replicas!r}: must be greater than or "
                            "equal to 0",
                            "field": "spec.replicas",
                        }
                    ],
                },
            )
        updated = copy.deepcopy(current)
        updated["spec"]["replicas"] = replicas
        meta = scale.get("metadata") if isinstance(scale, dict) else None
        if isinstance(meta, dict) and meta.get("resourceVersion") is not None:
            updated["metadata"]["resourceVersion"] = meta["resourceVersion"]
        answer = self._commit_deployment(
            current, updated, target=call.target, manager=self._manager(call), dry_run=dry_run
        )
        return web.json_response(self._scale_of(answer))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_object(call: _Call, kind: str, api_version: str) -> dict[str, Any]:
    if call.content_type not in ("application/json", ""):
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml, application/vnd.kubernetes.protobuf "
            f"(got {call.content_type})",
        )
    try:
        body = json.loads(call.body)
    except ValueError as exc:
        _bad_request(f"error decoding body: {exc}")
    if not isinstance(body, dict):
        _bad_request("the body is not a JSON object")
    if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
        _bad_request(f"the body is not a {api_version} {kind}")
    return body


@asynccontextmanager
async def running_fake_kube(
    *,
    token: str | None = DEFAULT_TOKEN,
    user: str = DEFAULT_USER,
    anonymous: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[FakeKube]:
    """A started ``FakeKube`` (``.url``, the state, the helpers), closed at the end."""
    async with FakeKube(token=token, user=user, anonymous=anonymous, clock=clock) as kube:
        yield kube


# ----------------------------------------------------------------- access reviews (RBAC)


@dataclass(frozen=True)
class Denial:
    """Attributes a review must match to be denied; ``None`` matches any value.
    ``resource`` as RBAC writes it, with its subresource (``pods/log``): ``deployments``
    does not cover ``deployments/scale``."""

    namespace: str | None = None
    group: str | None = None
    resource: str | None = None
    verb: str | None = None
    name: str | None = None

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        resource = str(attributes.get("resource", ""))
        if attributes.get("subresource"):
            resource += f"/{attributes['subresource']}"
        given = {**attributes, "resource": resource}
        wanted = {
            "namespace": self.namespace,
            "group": self.group,
            "resource": self.resource,
            "verb": self.verb,
            "name": self.name,
        }
        return all(v is None or given.get(k, "") == v for k, v in wanted.items())


class AccessReviews:
    """``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``: everything is
    allowed unless a ``deny`` matches the review's ``resourceAttributes`` (how a Role that
    lacks a rule answers); the reviews asked are kept in ``asked``. 201 with the review and
    its ``status`` (``allowed``, ``reason``), 400 without ``resourceAttributes``, as the
    real server."""

    PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def __init__(self) -> None:
        self.denials: list[Denial] = []
        self.asked: list[dict[str, Any]] = []

    def deny(self, **attributes: str) -> Denial:
        """E.g. ``deny(namespace="prod", resource="deployments/scale", verb="patch")``."""
        denial = Denial(**attributes)
        self.denials.append(denial)
        return denial

    def route(self) -> _Route:
        return _Route(
            re.compile(self.PATH),
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            None,
            {"POST": self._review},
        )

    def _review(self, call: _Call) -> web.StreamResponse:
        body = _json_object(call, "SelfSubjectAccessReview", "authorization.k8s.io/v1")
        spec = body.get("spec")
        attributes = spec.get("resourceAttributes") if isinstance(spec, dict) else None
        if not isinstance(attributes, dict):
            raise ApiError(
                400,
                'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.'
                'resourceAttributes: Invalid value: "null": exactly one of '
                "nonResourceAttributes or resourceAttributes must be specified",
                reason="Invalid",
            )
        self.asked.append(copy.deepcopy(attributes))
        denied = any(d.matches(attributes) for d in self.denials)
        status: dict[str, Any] = {"allowed": not denied}
        if not denied:
            status["reason"] = 'RBAC: allowed by RoleBinding "responder" of Role "responder"'
        answer = {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return web.json_response(answer, status=201)
