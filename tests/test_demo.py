"""``responder demo``: the real service on embedded defaults replays the bundled scenarios
with the bundled evidence and shows, for each, the classification, the triage facts, the
branch and the exact dry-run patch, what people are told, and the postmortem it wrote."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from responder.cli import cli

# scenario → (severity, branch, what the patch must say: one line per container)
EXPECTED = {
    "unreachable": ("P1", "vendor-incident", "container app: env POSTHOG_FALLBACK=true"),
    "rate-limited": (
        "P2",
        "our-integration-rate-limit-spent",
        "container app: env RATE_LIMIT_MODE=queue",
    ),
    "auth-rotated": (
        "P1",
        "our-integration-auth",
        "pod template annotation kubectl.kubernetes.io/restartedAt=",
    ),
    "upstream-5xx": (
        "P2",
        "our-integration-upstream-5xx",
        "container app: env POSTHOG_FALLBACK=true",
    ),
}


def sections(output: str) -> dict[str, str]:
    parts = re.split(r"^Scenario \d/\d: ", output, flags=re.M)[1:]
    names = list(EXPECTED)
    assert len(parts) == len(names), output[-2000:]
    return dict(zip(names, parts, strict=True))


def test_demo_replays_every_scenario_and_writes_the_postmortems(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = CliRunner().invoke(cli, ["demo", "-o", str(out)])
    assert result.exit_code == 0, result.output
    shown = sections(result.output)
    for name, (severity, branch, patch) in EXPECTED.items():
        text = shown[name]
        assert f"▶ classified {severity} " in text, text
        assert f"Decision tree: {branch}" in text, text
        assert "the patch it would send (strategic merge):" in text
        assert patch in text, text
        assert "*Status:* INVESTIGATING" in text  # the Slack root, posted before triage
        assert "*Status:* RESOLVED" in text  # and edited on resolve
        # the triage facts come from the bundled evidence, through the real probes
        assert "health: " in text
        assert "prometheus: errors_per_second=" in text
        assert "lines matching" in text
    # P1 and P2 open a public status page incident; it says nothing internal
    public = shown["rate-limited"].split("▶ status page", 1)[1].split("▶ received", 1)[0]
    assert "delays in analytics data" in public
    for internal in ("production", "posthog-integration", "429", "RATE_LIMIT_MODE"):
        assert internal not in public
    assert "vendor: 1 open incident: " in shown["unreachable"]
    # the 429's rate limit headers, read at triage, are in the postmortem's action items
    assert "http: HTTP 429, rate limit: limit 600, remaining 0" in shown["rate-limited"]
    # PostHog is watched until it resolves, then, after the quiet period with our error
    # ratio down, the fallback's revert is shown (dry-run: the patch it would send)
    vendor = shown["unreachable"]
    resolved = vendor.index("▶ vendor.resolved")
    revert = vendor.index("▶ dry-run    revert of set_env on production/posthog-integration")
    assert resolved < revert < vendor.index("▶ received   Alertmanager webhook, resolved")
    assert "the vendor's incident is over and, after the quiet period" in vendor[revert:]
    assert "container app: env POSTHOG_FALLBACK removed" in vendor[revert:]
    # the 5xx fallback waits for a person's approval (nothing on PostHog's status page):
    # the request shows the exact patch, the demo approves it as a named person, and the
    # step then runs (dry-run) saying who approved it
    upstream = shown["upstream-5xx"]
    asked = upstream.index(
        "▶ approval   set_env on production/posthog-integration waits for a person's yes: "
        "the patch it would send (strategic merge):\n"
        "               container app: env POSTHOG_FALLBACK=true"
    )
    # pressed as Slack sends it: signed, to the real route, by a user the settings allow
    approving = upstream.index(
        "▶ approving  dana (U0DEMODANA) presses Approve in Slack: a signed interaction to "
        "/v1/slack/interactions"
    )
    approved = upstream.index(
        "▶ action.approved        set_env on production/posthog-integration approved by "
        "dana in Slack"
    )
    ran = upstream.index("▶ dry-run    set_env on production/posthog-integration: the patch")
    assert asked < approving < approved < ran
    assert "approved by dana" in upstream[ran:]
    summary = result.output.rsplit("━" * 88, 1)[1]
    for name, (_, branch, _) in EXPECTED.items():
        first = "approval_requested: set_env, approved: set_env, " if name == "upstream-5xx" else ""
        assert re.search(rf"^{name}\s+\S+\s+{branch}\s+{first}dry_run: ", summary, flags=re.M), (
            summary
        )
    assert re.search(r"^unreachable\s.*dry_run revert: set_env", summary, flags=re.M), summary
    assert "Nothing was changed anywhere" in summary

    drafts = sorted(out.glob("inc-*.md"))
    bundles = sorted(out.glob("inc-*.tar.gz"))
    assert len(drafts) == len(bundles) == len(EXPECTED)
    for draft in drafts:
        assert draft.read_text().startswith("## Incident: PostHog integration: ")
    # the 5xx postmortem says who approved the fallback and what then ran
    assert any(
        "### Approvals\n- set_env on production/posthog-integration (asked " in draft.read_text()
        and "approved by dana in Slack" in draft.read_text()
        and "then dry_run at" in draft.read_text()
        for draft in drafts
    )
    # the 429's rate limit figures, read at triage, are in its postmortem's action items
    assert any(
        "Request a limit increase from the vendor: limit 600, remaining 0, reset 30, "
        "Retry-After 30 s (at triage)" in draft.read_text()
        for draft in drafts
    )
    # the 401 scenario's log line carries an API key: the bundle has it redacted
    keys = 0
    for bundle in bundles:
        with tarfile.open(fileobj=io.BytesIO(bundle.read_bytes()), mode="r:gz") as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                assert b"phc_demo0123456789abcdefXYZ" not in data, member.name
                keys += b"401 Unauthorized: invalid API key" in data
    assert keys, "the 401 scenario's logs are in its bundle"


def test_demo_runs_one_scenario_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    one = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "-s", "rate-limited"])
    assert one.exit_code == 0, one.output
    assert "Scenario 1/1: PostHog rate-limits us (HTTP 429)" in one.output
    assert len(list(tmp_path.glob("inc-*.md"))) == 1
    bad = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "-s", "nope"])
    assert bad.exit_code == 1
    assert "unknown scenario nope" in bad.output


async def test_demo_ignores_the_shells_settings_and_reaches_nothing_real(tmp_path: Path) -> None:
    """A demo run where RESPONDER_* point at a (fake) Slack and a Redis: it must still
    run on embedded defaults and post nothing there."""
    import asyncio

    from tests.support.fake_notify import FakeSlack

    async with FakeSlack() as slack:
        env = {
            "RESPONDER_SLACK_TOKEN": slack.token,
            "RESPONDER_SLACK_API_URL": slack.api_url,
            "RESPONDER_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens: unused
        }
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["demo", "-o", str(tmp_path), "-s", "unreachable"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "*Status:* RESOLVED" in result.output
        assert slack.requests == []


def test_demo_triage_lines_print_values_with_each_status_code(tmp_path: Path) -> None:
    """What triage found reads as values: the health status with its HTTP code (not the
    JSON path and a Python repr), every status code that erred, even a lone one, and
    counts in the right number."""
    result = CliRunner().invoke(
        cli, ["demo", "-o", str(tmp_path), "-s", "unreachable", "-s", "upstream-5xx"]
    )
    assert result.exit_code == 0, result.output
    assert "health: down (HTTP 503)\n" in result.output
    assert "errors_by_status_code=(0: 41.5)" in result.output  # one code: still named
    assert "errors_by_status_code=(500: 12.2, 503: 2.3)" in result.output
    assert "vendor: 1 open incident: Elevated error rates" in result.output
    assert "{" not in "".join(ln for ln in result.output.splitlines() if "prometheus:" in ln)


def test_demo_patch_is_one_line_per_container_and_the_json_on_verbose(tmp_path: Path) -> None:
    short = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "-s", "upstream-5xx"])
    assert short.exit_code == 0, short.output
    lines = short.output.splitlines()
    at = lines.index(next(ln for ln in lines if ln.startswith("▶ dry-run    set_env ")))
    assert lines[at + 1].strip() == "container app: env POSTHOG_FALLBACK=true"
    # one line, who approved it (the 5xx fallback waits for a person), then the next step
    assert lines[at + 2].strip() == "approved by dana"
    assert lines[at + 3].startswith("▶ ")
    assert '"containers"' not in short.output

    verbose = CliRunner().invoke(
        cli, ["demo", "-o", str(tmp_path), "-s", "upstream-5xx", "--verbose"]
    )
    assert verbose.exit_code == 0, verbose.output
    assert '"containers": [' in verbose.output
    assert '"name": "POSTHOG_FALLBACK",' in verbose.output
    assert '"$patch": "delete"' in verbose.output  # the revert's patch, whole


def test_demo_says_why_the_branch_whether_the_secret_rotated_the_page_and_the_end(
    tmp_path: Path,
) -> None:
    """The 401 after a key rotation: the facts that chose the branch with the values read,
    that the Secret was rotated (so the restart helps), the page the on-call gets, the
    status page's text on resolve, and how long it lasted."""
    result = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "-s", "auth-rotated"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "             because " in text
    assert "vendor.incident == false (was no)" in text
    assert "incident.error_type == auth (was auth)" in text
    assert "▶ secret     rotated: the API key's Secret changed after the oldest pod" in text
    assert re.search(
        r"^▶ pagerduty  the on-call is paged \(critical\): P1 PostHog rejects our credentials",
        text,
        flags=re.M,
    ), text
    on_resolve = text.split("▶ status page on resolve", 1)[1].split("▶ lasted", 1)[0]
    assert "has been resolved" in on_resolve
    assert re.search(r"^▶ lasted     2m 00s by the alert", text, flags=re.M), text


def test_demo_reports_hold_this_run_only(tmp_path: Path) -> None:
    out = tmp_path / "demo-reports"
    mine = out / "notes.txt"  # not the demo's: stays
    out.mkdir()
    mine.write_text("keep")
    for _ in range(2):
        result = CliRunner().invoke(cli, ["demo", "-o", str(out), "-s", "rate-limited"])
        assert result.exit_code == 0, result.output
    assert len(list(out.glob("inc-*.md"))) == len(list(out.glob("inc-*.tar.gz"))) == 1
    assert mine.read_text() == "keep"
