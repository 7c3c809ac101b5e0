"""A report as people read it (one line a check, the fix after it) or as JSON."""

from __future__ import annotations

import json

from responder.check.runner import Report
from responder.render.words import plural

_WIDTH = 5  # "FAIL " and "skip " line up with "ok   " and "warn "


def as_text(report: Report) -> str:
    """The lines people read; ``report.redact`` has taken every configured secret out of
    what an outside answer may have echoed."""
    lines = ["settings in force (the others at their defaults; secrets masked):"]
    lines += [f"  {name}={_value(value)}" for name, value in report.settings.items()]
    if not report.settings:
        lines.append("  (all defaults)")
    lines += [f"{key}: {value}" for key, value in report.summary.items()]
    for r in report.results:
        line = f"{r.status:<{_WIDTH}} {r.integration}: {r.what}"
        if r.fix:
            line += f"  fix: {r.fix}"
        lines.append(line)
    failed = sum(r.status == "FAIL" for r in report.results)
    warned = sum(r.status == "warn" for r in report.results)
    lines.append(
        f"{failed} failed, {plural(warned, 'warning')}"
        + (": fix the FAIL lines before serving" if failed else "")
    )
    return report.redact("\n".join(lines))


def _value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def as_json(report: Report) -> str:
    return report.redact(
        json.dumps(
            {
                "ok": not report.failed,
                "settings": report.settings,
                "in_force": report.summary,
                "checks": [r.as_dict() for r in report.results],
            },
            indent=2,
        )
    )
