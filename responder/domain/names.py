"""What a value from an alert may be where it lands: a DNS label in a host, a Kubernetes
name, a label selector; and which hosts a probe's URL may reach (``allow_hosts``).

Pure checks, each returning ``None`` when the value is fine or the problem in words. The
rule engine runs them when it plans a probe or an action (a value that fails means the
probe or action is not planned), the probe adapters and the guards run them again before
any call: whoever can push an alert must not steer where our requests go.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import SplitResult, urlsplit

# RFC 1123 label: what a Kubernetes namespace, a container name and each part of a host is.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63
# RFC 1123 subdomain: what a Deployment's or a Secret's name is.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_SUBDOMAIN_MAX = 253
# A label's key (optional DNS subdomain prefix, then a name) and value, as Kubernetes has them.
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_LABEL_VALUE_MAX = 63
_SELECTOR_TERM = re.compile(
    r"\s*(?P<key>[^\s=!,()]+)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[^\s=!,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?\s*"
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def dns_label_problem(value: str) -> str | None:
    if len(value) > DNS_LABEL_MAX or not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a DNS label (a-z, 0-9 and '-', at most {DNS_LABEL_MAX}, "
            "starting and ending with a letter or digit)"
        )
    return None


def k8s_name_problem(value: str, *, kind: str) -> str | None:
    """``kind``: ``namespace`` and ``container`` are DNS labels; the rest (deployment,
    secret) DNS subdomains."""
    if kind in ("namespace", "container"):
        problem = dns_label_problem(value)
        return f"{kind} {problem}" if problem else None
    if len(value) > DNS_SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.fullmatch(value):
        return f"{kind} {value!r} is not a Kubernetes name (RFC 1123 subdomain)"
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > _LABEL_VALUE_MAX or not _LABEL_NAME.fullmatch(value):
        return f"{value!r} is not a Kubernetes label value"
    return None


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > DNS_SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"{key!r} is not a label key"
    if not name or len(name) > _LABEL_VALUE_MAX or not _LABEL_NAME.fullmatch(name):
        return f"{key!r} is not a label key"
    return None


def selector_problem(selector: str) -> str | None:
    """A label selector (``app=x,tier!=web,env in (a,b),!gone``), its keys and values
    checked by Kubernetes' rules."""
    for term in _split_terms(selector):
        negated = term.strip().startswith("!")
        text = term.strip()[1:] if negated else term
        hit = _SELECTOR_TERM.fullmatch(text)
        if hit is None or (negated and (hit["op"] or hit["setop"])):
            return f"selector term {term.strip()!r} is not label selector syntax"
        problem = _label_key_problem(hit["key"])
        if problem:
            return f"selector {problem}"
        values = [hit["value"]] if hit["op"] else []
        if hit["setop"]:
            values = [v.strip() for v in hit["values"].split(",")]
        for value in values:
            problem = label_value_problem(value)
            if problem:
                return f"selector value {problem}"
    return None


def _split_terms(selector: str) -> list[str]:
    """Commas split terms, except inside ``in (...)``."""
    terms, depth, current = [], 0, ""
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
    return terms


# ------------------------------------------------------------------------- allow_hosts
#
# An entry is ``host-glob`` or ``host-glob:port``. The glob is matched label by label: it
# has as many dot-separated labels as the host, and ``*`` in one matches within that label
# only (never a dot), so ``*.svc.cluster.local`` allows ``a.svc.cluster.local`` but not
# ``a.b.svc.cluster.local``. Without a port, the scheme's default port (80, 443).


@functools.lru_cache(maxsize=1024)
def _host_glob(glob: str) -> re.Pattern[str]:
    """``glob`` as one expression over a whole host, compiled once per entry: label by
    label (a ``*`` matches within its label only, never a dot), as many labels as it has."""
    return re.compile(
        r"\.".join(
            "".join("[a-z0-9-]*" if c == "*" else re.escape(c) for c in label)
            for label in glob.lower().split(".")
        )
    )


def host_allowed(host: str, port: int, allow_hosts: tuple[str, ...], *, scheme: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in allow_hosts:
        glob, want_port = split_host_port(entry)
        if (want_port if want_port is not None else DEFAULT_PORTS.get(scheme)) != port:
            continue
        if _host_glob(glob).fullmatch(host) is not None:
            return True
    return False


def split_host_port(entry: str) -> tuple[str, int | None]:
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host, int(port)
    return entry, None


_GLOB_LABEL = re.compile(r"[a-z0-9*-]+")


@functools.lru_cache(maxsize=1024)
def allow_hosts_problem(entry: str) -> str | None:
    """An entry of ``allow_hosts`` as written in a pack (checked each time a probe is
    planned, hence cached: a pack has a few)."""
    glob, port = split_host_port(entry)
    if port is not None and not 0 < port < 65536:
        return f"allow_hosts {entry!r}: the port is out of range"
    labels = glob.lower().split(".")
    if not glob or any(not _GLOB_LABEL.fullmatch(label) for label in labels):
        return f"allow_hosts {entry!r} is not host[:port] (labels of a-z, 0-9, '-', '*')"
    if all(label == "*" for label in labels):
        return f"allow_hosts {entry!r} allows any host: name at least one part of it"
    return None


def url_problem(url: str, allow_hosts: tuple[str, ...]) -> str | None:
    """Whether ``url`` may be requested: http or https, no user information, a host (and
    port) ``allow_hosts`` names."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL does not parse"
    if parts.scheme not in DEFAULT_PORTS:
        return f"the URL's scheme {parts.scheme!r} is not http or https"
    if "@" in parts.netloc or parts.username is not None:
        return "the URL carries user information (user@host): refused"
    host = parts.hostname or ""
    if not host:
        return "the URL has no host"
    effective = port if port is not None else DEFAULT_PORTS[parts.scheme]
    if not allow_hosts:
        return (
            "no host is allowed: the URL's fixed part does not name one (a fixed http:// or "
            "https://, a fixed port, a fixed part of the host); say allow_hosts"
        )
    if not host_allowed(host, effective, allow_hosts, scheme=parts.scheme):
        return f"host {host}:{effective} is not in allow_hosts ({', '.join(allow_hosts)})"
    return None


# Where jinja2 expressions and statements sit in a template string.
_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_HOLE = "\x00"


def derive_allow_hosts(url: str) -> tuple[str, ...]:
    """``allow_hosts`` from a URL template's fixed part: each host label with a template in
    it becomes a glob (``{{ x }}-api`` → ``*-api``), the port is the template's (or the
    scheme's). ``ValueError`` when the fixed part does not say enough: a template in the
    scheme or the port, user information, or no fixed label in the host."""
    holed = _TEMPLATE_PART.sub(_HOLE, url)
    scheme, sep, rest = holed.partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"url {url!r}: its scheme must be a fixed http:// or https:// (or say allow_hosts)"
        )
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise ValueError(f"url {url!r}: user information (user@host) is not allowed")
    parts: SplitResult = urlsplit(f"{scheme}://{authority.replace(_HOLE, 'x')}")
    host_text, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if _HOLE in port_text:
        raise ValueError(f"url {url!r}: a template in the port needs allow_hosts")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"url {url!r}: the port is not a number") from None
    labels = [
        _HOLE_GLOB.sub("*", raw.lower()) if _HOLE in raw else raw.lower()
        for raw in host_text.split(".")
    ]
    if not host_text or all(set(label) <= {"*"} for label in labels):
        raise ValueError(
            f"url {url!r}: the host is all template; say which hosts it may be (allow_hosts)"
        )
    entry = ".".join(labels)
    if port is not None:
        entry += f":{port}"
    problem = allow_hosts_problem(entry)
    if problem:
        raise ValueError(f"url {url!r}: {problem}")
    return (entry,)


_HOLE_GLOB = re.compile(re.escape(_HOLE) + "+")
