"""The runbook's debug bundle: everything the incident knows, as one ``.tar.gz``.

Pure apart from building bytes: the incident's own records (timeline, alerts, facts,
triage evidence, actions with their before and after state, the rendered messages, the
postmortem draft) plus whatever the window collector brought (pod logs, Prometheus range
queries). Every text file goes through the redactor before it is hashed and packed, and
``manifest.json`` lists each file with its sha256, so a bundle attached to a ticket can be
checked later.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from responder.domain.timeline import EventKind
from responder.ports import IncidentView

MANIFEST = "manifest.json"
# The incident's window for outside evidence (metrics, logs): from this long before it
# opened to this long after it resolved. The bundle written at resolve is written again
# once the window has passed (report/stage.py), so its metrics cover all of it.
EVIDENCE_WINDOW = timedelta(minutes=30)
# what a report file's stem may be made of: it names a file in RESPONDER_REPORTS_DIR
_FILE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", re.ASCII)


def report_stem(incident_id: str, resolved_seq: int) -> str | None:
    """``<incident>-<seq>``: the name, without suffix, of the postmortem draft and the
    bundle written at the resolve event ``resolved_seq``; None for an id that cannot name
    a file of the reports directory (a ``/``, ``..``, a control character)."""
    stem = f"{incident_id}-{resolved_seq}"
    return stem if _FILE_STEM.fullmatch(stem) and ".." not in stem else None


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(text: str) -> str:
    """A part of a path inside the bundle, from outside text (a pod's, a query's name)."""
    return _UNSAFE_IN_NAME.sub("_", text).strip("_")[:80] or "x"


@dataclass(frozen=True)
class ErroringPod:
    """A pod whose log (of ``container``) had matching (error) lines when triage read it:
    its lines then."""

    namespace: str
    pod: str
    container: str | None
    lines: tuple[str, ...]
    # the pod-logs probe's key: the pod, or pod/container when it read several of its
    # containers (each has its own file in the bundle)
    key: str = ""

    @property
    def stem(self) -> str:
        """The name of this log's files in the bundle."""
        return file_name((self.key or self.pod).replace("/", "."))


def erroring_pods(view: IncidentView) -> list[ErroringPod]:
    """The pods that logged the errors, as the triages' ``pod_logs`` probes found them:
    the pods to read for the bundle, whatever pods a rollout since put in their place."""
    found: dict[tuple[str, str], ErroringPod] = {}
    for event in view.timeline:
        if event.kind != EventKind.TRIAGE_COMPLETED:
            continue
        probes = event.data.get("probes")
        for probe in probes if isinstance(probes, list) else []:
            if not isinstance(probe, dict) or probe.get("probe") != "pod_logs":
                continue
            evidence = probe.get("evidence")
            if not isinstance(evidence, dict) or not isinstance(evidence.get("lines"), dict):
                continue
            namespace = evidence.get("namespace")
            if not isinstance(namespace, str):
                continue
            for key, lines in evidence["lines"].items():  # type: ignore[union-attr]
                if isinstance(lines, list) and lines:
                    pod, container = _pod_and_container(evidence, str(key))
                    found[(namespace, str(key))] = ErroringPod(
                        namespace=namespace,
                        pod=pod,
                        container=container,
                        lines=tuple(str(line) for line in lines),
                        key=str(key),
                    )
    return list(found.values())


def _pod_and_container(evidence: Mapping[str, Any], key: str) -> tuple[str, str | None]:
    """Which pod and container a probe's ``lines`` key is: ``pod/container``, or the pod
    with the container it says it read (``containers``), else the rule's."""
    if "/" in key:
        pod, container = key.split("/", 1)
        return pod, container
    read = evidence.get("containers")
    named = read.get(key) if isinstance(read, dict) else None
    if isinstance(named, list) and len(named) == 1 and isinstance(named[0], str):
        return key, named[0]
    rules = evidence.get("container")
    return key, rules if isinstance(rules, str) else None


def incident_files(
    view: IncidentView, *, messages: Mapping[str, str], postmortem: str | None
) -> dict[str, bytes]:
    """The bundle's files from the incident's own records, by path inside the bundle."""
    incident = view.incident
    timeline = [e.model_dump(mode="json") for e in view.timeline]
    triage = [e for e in timeline if e["kind"] == EventKind.TRIAGE_COMPLETED]
    files = {
        "incident.json": _json(incident.model_dump(mode="json")),
        "timeline.json": _json(timeline),
        "signals.json": _json([a.model_dump(mode="json") for a in view.alerts]),
        "facts.json": _json(incident.facts),
        "triage-evidence.json": _json([e["data"] for e in triage]),
        "actions.json": _json([a.model_dump(mode="json") for a in incident.actions]),
    }
    # the error lines as triage read them: the pods may be gone by now (our own rollout)
    for pod in erroring_pods(view):
        path = f"logs/{file_name(pod.namespace)}/{pod.stem}.at-triage.log"
        files[path] = ("\n".join(pod.lines) + "\n").encode()
    for name, text in messages.items():
        files[f"messages/{name}.txt"] = text.encode()
    if postmortem is not None:
        files["postmortem.md"] = postmortem.encode()
    return files


def pack(
    files: Mapping[str, bytes],
    *,
    incident_id: str,
    created_at: datetime,
    redact: Callable[[str], str],
) -> bytes:
    """The gzipped tar of ``files`` (redacted) under ``<incident_id>/``, with its manifest.

    Deterministic for the same input (fixed mtimes, sorted names), so that writing the
    bundle again after a crash gives the same bytes."""
    cleaned = {
        name: redact(content.decode("utf-8", errors="replace")).encode()
        for name, content in sorted(files.items())
    }
    manifest = {
        "incident": incident_id,
        "created_at": created_at.isoformat(),
        "redacted": True,
        "files": [
            {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in cleaned.items()
        ],
    }
    cleaned[MANIFEST] = _json(manifest)
    raw = io.BytesIO()
    # gzip's own header carries a time too: fix it
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=int(created_at.timestamp())) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in cleaned.items():
            info = tarfile.TarInfo(f"{incident_id}/{name}")
            info.size = len(data)
            info.mtime = int(created_at.timestamp())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()
