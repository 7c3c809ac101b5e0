"""The evidence bundle's window: README promises metrics from 30 minutes before the
incident opened to 30 minutes after it resolved. The bundle written at resolve cannot
hold the half hour after it, so it is written again once that half hour has passed (a
durable timer), once; the test clock moves time on."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from responder.app import Overrides
from tests.support.clock import ShiftableClock
from tests.support.mitigation import DEPLOY, NS, alert, cluster, kinds, responder, settled
from tests.support.waiting import eventually
from tests.test_report import with_evidence_probes


def window_of(bundle: Path) -> dict[str, datetime]:
    with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes()), mode="r:gz") as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("/window.json")]
        raw = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    return {k: datetime.fromisoformat(v) for k, v in raw.items()}


async def test_the_bundle_is_written_again_when_its_window_after_resolve_has_passed(
    backend_settings, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    clock = ShiftableClock()
    async with (
        cluster(tmp_path) as c,
        responder(c, backend_settings, Overrides(clock=clock), reports_dir=reports) as svc,
    ):
        await svc.post_alertmanager(alert("SetEnv"))
        await settled(svc, "SetEnv", "action.applied")
        await svc.post_alertmanager(alert("SetEnv", status="resolved"))
        inc = await settled(svc, "SetEnv", "report.written")
        resolved_at = datetime.fromisoformat(inc["resolved_at"])
        [first] = [e for e in inc["timeline"] if e["kind"] == "report.written"]
        bundle = Path(first["data"]["evidence"])
        # at resolve, the window can only reach the resolve
        assert window_of(bundle)["end"] < resolved_at + timedelta(minutes=1)

        clock.advance(30 * 60 + 1)

        async def rewritten() -> dict[str, Any] | None:
            one = await (await svc.client.get(f"/v1/incidents/{inc['id']}")).json()
            written = [e for e in one["timeline"] if e["kind"] == "report.written"]
            return one if len(written) == 2 else None

        final = await eventually(rewritten, timeout_s=20, what="the bundle written again")
        assert final is not None
        await svc.idle()
        final = await (await svc.client.get(f"/v1/incidents/{inc['id']}")).json()

    again = [e for e in final["timeline"] if e["kind"] == "report.written"]
    assert len(again) == 2, kinds(final)
    assert again[1]["data"]["window_complete"] is True
    assert again[1]["data"]["resolved_seq"] == first["data"]["resolved_seq"]
    assert "written again with the 30 minutes after resolve" in again[1]["detail"]
    # the same file, now with the whole window
    assert Path(again[1]["data"]["evidence"]) == bundle
    assert window_of(bundle)["end"] == resolved_at + timedelta(minutes=30)
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        [bundle.name, Path(first["data"]["postmortem"]).name]
    )


def bundle_files(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes()), mode="r:gz") as tar:
        return {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


async def test_the_bundle_keeps_the_logs_of_the_pods_that_logged_the_errors(
    make_settings, tmp_path: Path
) -> None:
    """Triage reads the error lines of the pods then; a rollout replaces them before the
    resolve. The bundle has their lines as triage read them, and not the new pods' logs
    (which never logged the errors)."""
    reports = tmp_path / "reports"
    async with cluster(tmp_path) as c:
        with_evidence_probes(c.pack)
        c.kube.add_log(NS, f"{DEPLOY}-0", "ERROR posthog 429 Too Many Requests for /batch")
        c.kube.add_log(NS, f"{DEPLOY}-1", "INFO all fine here")
        async with responder(c, make_settings, reports_dir=reports) as svc:
            await svc.post_alertmanager(alert("SetEnv"))
            await settled(svc, "SetEnv", "action.applied")
            # the rollout: the pods of the errors are replaced by new ones
            for n in (0, 1):
                c.kube.remove_pod(NS, f"{DEPLOY}-{n}")
            c.kube.add_pod(NS, f"{DEPLOY}-new", {"app": DEPLOY})
            c.kube.add_log(NS, f"{DEPLOY}-new", "INFO started after the rollout")
            await svc.post_alertmanager(alert("SetEnv", status="resolved"))
            inc = await settled(svc, "SetEnv", "report.written")

    [written] = [e for e in inc["timeline"] if e["kind"] == "report.written"]
    files = bundle_files(Path(written["data"]["evidence"]))
    # no Prometheus to ask: no graph, and the thread's line and the draft say so
    no_graph = "No error-rate graph: Prometheus could not be asked"
    assert no_graph in written["detail"]
    assert no_graph in Path(written["data"]["postmortem"]).read_text()
    assert "graph.svg" not in files
    assert "graph" not in written["data"]
    at_triage = files[f"logs/{NS}/{DEPLOY}-0.at-triage.log"].decode()
    assert "ERROR posthog 429 Too Many Requests" in at_triage
    # the pod that logged no error at triage, and the pod of the rollout, are not read
    assert not [n for n in files if n.startswith("logs/") and f"{DEPLOY}-1" in n]
    assert not [n for n in files if n.startswith("logs/") and "-new" in n]
    errors = json.loads(files["errors.json"])
    assert {
        "source": f"logs/{DEPLOY}-0",
        "error": "gone since triage (replaced, by a rollout?): its error lines as triage "
        "read them are in the .at-triage.log",
    } in errors
