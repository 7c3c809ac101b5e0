"""Reloading rule packs: a good new version replaces the old; a broken one never does."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from responder.metrics import Metrics
from responder.rules.loader import RuleLoadError
from responder.rules.registry import ReloadResult, RuleRegistry

GOOD = Path(__file__).parent / "fixtures" / "rules" / "good"
BILLING = (GOOD / "billing.yaml").read_text()

NEW_RULE = """
  - name: refund-spike
    match: ['service="billing"', 'alertname="RefundSpike"']
    classify: {severity: P2}
"""


def rule_names(registry: RuleRegistry) -> list[str]:
    return [rule.name for rule in registry().rules()]


def reloads(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("responder_rule_reloads_total", {"outcome": outcome})


def pack_rules(metrics: Metrics, pack: str, version: str) -> float | None:
    return metrics.registry.get_sample_value(
        "responder_rule_pack_rules", {"pack": pack, "version": version}
    )


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "billing.yaml").write_text(BILLING)
    return directory


def test_start_publishes_the_packs(rules_dir: Path) -> None:
    metrics = Metrics()
    registry = RuleRegistry([rules_dir], metrics)
    assert rule_names(registry) == ["invoice-backlog", "payment-timeout"]
    assert pack_rules(metrics, "billing", "3") == 2.0
    assert reloads(metrics, "ok") is None
    assert reloads(metrics, "error") is None


def test_reload_swaps_in_a_good_new_version(rules_dir: Path) -> None:
    metrics = Metrics()
    registry = RuleRegistry([rules_dir], metrics)
    before = registry()
    v2 = BILLING.replace('version: "3"', 'version: "4"') + NEW_RULE
    assert 'version: "4"' in v2
    (rules_dir / "billing.yaml").write_text(v2)

    result = registry.reload()

    assert result == ReloadResult(ok=True, problems=())
    assert rule_names(registry) == ["invoice-backlog", "payment-timeout", "refund-spike"]
    assert registry() is not before
    assert [r.name for r in before.rules()] == ["invoice-backlog", "payment-timeout"]
    [pack] = registry().packs
    assert pack.spec.version == "4"
    assert reloads(metrics, "ok") == 1.0
    assert reloads(metrics, "error") is None
    assert pack_rules(metrics, "billing", "4") == 3.0
    assert pack_rules(metrics, "billing", "3") is None  # the old version is no longer in force


def test_reload_picks_up_a_new_pack_file(rules_dir: Path) -> None:
    metrics = Metrics()
    registry = RuleRegistry([rules_dir], metrics)
    shutil.copy(GOOD / "sources.yaml", rules_dir / "sources.yaml")
    assert registry.reload().ok
    assert [p.name for p in registry().packs] == ["billing", "sources"]
    assert "unowned" in rule_names(registry)
    assert pack_rules(metrics, "sources", "0.1") == 4.0


def test_a_broken_reload_keeps_the_old_rules(rules_dir: Path) -> None:
    metrics = Metrics()
    registry = RuleRegistry([rules_dir], metrics)
    before = registry()
    path = rules_dir / "billing.yaml"
    broken = BILLING.replace("classify: {severity: P2,", "classify: {severity: P5,") + NEW_RULE
    assert broken != BILLING + NEW_RULE
    path.write_text(broken)
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "P5" in text)

    result = registry.reload()

    assert result.ok is False
    assert result.problems
    assert result.problems[0].startswith(f"{path}:{line}: rule 'payment-timeout': ")
    assert "classify.severity" in result.problems[0]
    # the rules in force did not change, not even by the new rule of the broken file
    assert registry() is before
    assert rule_names(registry) == ["invoice-backlog", "payment-timeout"]
    assert reloads(metrics, "error") == 1.0
    assert reloads(metrics, "ok") is None
    assert pack_rules(metrics, "billing", "3") == 2.0
    text = generate_latest(metrics.registry).decode()
    assert 'responder_rule_reloads_total{outcome="error"} 1.0' in text

    # a second failure counts again; a fix is then taken
    assert registry.reload().ok is False
    assert reloads(metrics, "error") == 2.0
    path.write_text(BILLING + NEW_RULE)
    assert registry.reload() == ReloadResult(ok=True)
    assert rule_names(registry) == ["invoice-backlog", "payment-timeout", "refund-spike"]
    assert reloads(metrics, "ok") == 1.0
    assert reloads(metrics, "error") == 2.0


def test_a_reload_with_a_clash_between_packs_keeps_the_old_rules(rules_dir: Path) -> None:
    metrics = Metrics()
    registry = RuleRegistry([rules_dir], metrics)
    (rules_dir / "copy.yaml").write_text(BILLING)  # same pack name, same rule names
    result = registry.reload()
    assert result.ok is False
    assert any("pack name 'billing' is also used by" in p for p in result.problems)
    assert all(p.startswith(f"{rules_dir / 'copy.yaml'}:") for p in result.problems)
    assert [p.name for p in registry().packs] == ["billing"]
    assert reloads(metrics, "error") == 1.0


def test_a_registry_refuses_to_start_on_broken_rules(rules_dir: Path) -> None:
    (rules_dir / "billing.yaml").write_text(BILLING.replace("severity: P1", "severity: P0"))
    with pytest.raises(RuleLoadError) as info:
        RuleRegistry([rules_dir], Metrics())
    assert str(rules_dir / "billing.yaml") in str(info.value)
    assert "rule 'invoice-backlog'" in str(info.value)


def test_a_directory_emptied_of_packs_is_a_problem_not_zero_rules(tmp_path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text((GOOD / "shop.yaml").read_text())
    registry = RuleRegistry([tmp_path], Metrics())
    pack.unlink()
    result = registry.reload()
    assert not result.ok
    assert any("no rule packs" in p for p in result.problems)
    assert registry().packs  # the old ones stay in force


async def test_a_reload_reads_the_packs_off_the_event_loop(rules_dir: Path, tmp_path) -> None:
    """The pack is a named pipe: reading it waits until something is written. The loop must
    go on while the reload waits (it would block every webhook for as long as a parse took);
    the writer gives the loop its chance first, and writes anyway after a while so that a
    blocked loop makes this test fail instead of hang."""
    fifo = tmp_path / "piped.yaml"
    os.mkfifo(fifo)
    pack = BILLING.replace("name: billing", "name: piped").replace("invoice-", "piped-invoice-")
    pack = pack.replace("payment-", "piped-payment-")
    loop_ran = threading.Event()
    order: list[str] = []

    def write(*, wait_for_loop: bool) -> None:
        if wait_for_loop:
            order.append("loop ran" if loop_ran.wait(timeout=10) else "writer gave up waiting")
        with fifo.open("w") as f:  # blocks until the reader opens the pipe
            f.write(pack)

    starter = threading.Thread(target=write, kwargs={"wait_for_loop": False})
    starter.start()
    registry = RuleRegistry([rules_dir, fifo], Metrics())
    starter.join()
    assert [p.name for p in registry().packs] == ["billing", "piped"]

    writer = threading.Thread(target=write, kwargs={"wait_for_loop": True})
    writer.start()
    reload = asyncio.create_task(registry.reload_in_thread())
    await asyncio.sleep(0.05)  # the reload has started and waits on the pipe
    loop_ran.set()
    assert (await reload).ok
    await asyncio.to_thread(writer.join)
    assert order == ["loop ran"]
