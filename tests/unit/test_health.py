"""The health model: reasons from stores and sources, each change logged and counted once; the rule loop
holds the live stream while the back-fill runs and loses none of it."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from collector.influx.reader import FLOW_COLUMNS, Rows
from collector.model import Reading, Role
from collector.outbox import Outbox, OutboxError
from gshp.clock import SystemClock
from gshp.config import load_config
from gshp.evaluation import HOLD_MAX, BackfillState, RuleLoop
from gshp.health import HealthMonitor, HealthSettings, Reason, outage_reasons, problem_reasons
from gshp.live import LiveState
from rules.engine import Engine
from rules.notify.event import parse_event, sample_event
from rules.notify.queue import NotifyQueue
from rules.settings import RulesSettings
from rules.store import AlertStore, StoreError
from tests.helpers import make_site
from tests.unit.test_store import _event


def _gauge(reason: str) -> float | None:
    return REGISTRY.get_sample_value("gshp_health_degraded", {"reason": reason})


def _changes() -> float:
    return REGISTRY.get_sample_value("gshp_health_changes_total") or 0.0


def test_each_change_is_logged_and_counted_once_however_often_health_is_evaluated(
        caplog: pytest.LogCaptureFixture) -> None:
    found: list[Reason] = []
    monitor = HealthMonitor([lambda: found])
    before = _changes()
    with caplog.at_level(logging.INFO, logger="gshp.health"):
        assert monitor.evaluate().status == "ok"
        found.append(Reason("unit-test:influx", "InfluxDB 写入失败", "InfluxDB writes fail"))
        for _ in range(5):
            report = monitor.evaluate()
        assert report.status == "degraded" and report.reasons[0].key == "unit-test:influx"
        assert _gauge("unit-test:influx") == 1
        found.clear()
        for _ in range(5):
            assert monitor.evaluate().status == "ok"
    assert _gauge("unit-test:influx") == 0
    assert _changes() - before == 2  # appeared, cleared
    lines = [r.getMessage() for r in caplog.records]
    assert sum("degraded" in line for line in lines) == 1
    assert sum("cleared" in line for line in lines) == 1
    assert "InfluxDB 写入失败 / InfluxDB writes fail" in lines[0]


def test_a_check_that_fails_is_a_reason_not_a_silent_ok() -> None:
    def broken() -> list[Reason]:
        raise RuntimeError("database disk image is malformed")

    report = HealthMonitor([broken]).evaluate()
    assert report.status == "degraded" and "malformed" in report.reasons[0].en


def test_full_outranks_degraded() -> None:
    assert HealthMonitor().evaluate(full=True).status == "full"


class _Source:
    def __init__(self, since: float) -> None:
        self.since = since

    def outages(self) -> dict[str, tuple[float, str]]:
        return {"MQTT 127.0.0.1:1883": (self.since, "disconnected")}


def test_a_source_is_a_reason_only_once_down_past_its_grace() -> None:
    now = time.monotonic()
    assert outage_reasons(_Source(now - 5), grace=10, now=now) == []
    (reason,) = outage_reasons(_Source(now - 15), grace=10, now=now)
    assert reason.key == "source:MQTT 127.0.0.1:1883"
    assert "MQTT" in reason.zh and "15 s" in reason.en and "disconnected" in reason.en
    assert outage_reasons(object(), grace=0) == []  # a source that cannot tell reports nothing


def test_the_outbox_reports_a_failed_commit_until_one_succeeds(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox._db.execute("PRAGMA query_only=ON")  # every write now fails as on a read-only disk
    with pytest.raises(OutboxError):
        outbox.put(["flow,site=s1 total_m3=1 1"])
    (reason,) = problem_reasons("store:outbox", "发件箱无法写入", "the outbox cannot be written", outbox)
    assert "readonly" in reason.en and reason.zh.startswith("发件箱无法写入：")
    outbox._db.execute("PRAGMA query_only=OFF")
    outbox.put(["flow,site=s1 total_m3=1 1"])
    assert outbox.problems() == []
    outbox.close()


def test_the_alert_store_and_the_notify_queue_report_failed_writes_until_one_succeeds(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    store._db.execute("PRAGMA query_only=ON")
    with pytest.raises(StoreError):
        store.record(_event("pending"))
    assert "alerts.sqlite" in store.problems()[0]
    store._db.execute("PRAGMA query_only=OFF")
    store.record(_event("pending"))
    assert store.problems() == []

    queue = NotifyQueue(tmp_path / "notify.sqlite")
    event = parse_event(sample_event())
    queue._db.execute("PRAGMA query_only=ON")
    with pytest.raises(Exception, match="readonly"):
        queue.record(event, [("hook", "g")])
    assert "notify.sqlite" in queue.problems()[0]
    queue._db.execute("PRAGMA query_only=OFF")
    queue.record(event, [("hook", "g")])
    assert queue.problems() == []


T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _reading(meter: str, minute: int, total: float) -> Reading:
    role = Role.EXTRACTION if meter == "E1" else Role.REINJECTION
    return Reading("s1", meter, role, T0 + timedelta(minutes=minute), 60.0, total)


def _loop() -> tuple[RuleLoop, Engine]:
    site = make_site()
    engine = Engine([site], RulesSettings(), UTC)
    return RuleLoop(engine, [site], SystemClock(), LiveState([site]), lambda lines: None, lambda e: None), engine


def _history(minutes: range) -> Rows:
    """Rows as `InfluxReader.flow_rows` answers them: time in epoch ms, then `FLOW_COLUMNS`."""
    values: list[list[object]] = [
        [round((T0 + timedelta(minutes=m)).timestamp() * 1000), 60.0, 100.0 + m, None, None, None, None, "s1", meter,
         "extraction" if meter == "E1" else "reinjection"] for m in minutes for meter in ("E1", "R1")]
    return Rows(["time", *FLOW_COLUMNS], values)


class _Reader:
    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def flow_rows(self, start: datetime, stop: datetime) -> Rows:
        return self.rows


def test_readings_arriving_during_the_backfill_are_held_and_reach_the_windows_after_the_history() -> None:
    loop, engine = _loop()
    loop.hold()
    assert loop.progress.state is BackfillState.RUNNING
    live = [_reading(m, 60 + k, 160.0 + k) for k in range(10) for m in ("E1", "R1")]
    loop.on_readings(live)  # newer than the history: taken first, they would make it look late
    assert engine.stats.readings == 0
    assert loop.backfill(_Reader(_history(range(60))), timedelta(hours=2)) == 120  # type: ignore[arg-type]
    assert loop.release() == 20
    assert engine.stats.readings == 140 and engine.stats.late == 0
    assert loop.progress.state is BackfillState.DONE and loop.progress.rows == 120
    loop.on_readings([_reading("E1", 70, 170.0)])  # after the release: straight in
    assert engine.stats.readings == 141


def test_a_backfill_that_ends_late_gives_its_rows_to_no_one() -> None:
    loop, engine = _loop()
    loop.hold()
    loop.on_readings([_reading("E1", 60, 160.0)])
    loop.release(BackfillState.TIMED_OUT)  # health.backfill_timeout passed
    assert loop.progress.state is BackfillState.TIMED_OUT and engine.stats.readings == 1
    assert loop.backfill(_Reader(_history(range(60))), timedelta(hours=2)) == 0  # type: ignore[arg-type]
    assert engine.stats.readings == 1


def test_the_hold_is_bounded_and_gives_way_with_nothing_lost() -> None:
    loop, engine = _loop()
    loop.hold()
    batch = [_reading("E1", k, float(k)) for k in range(1000)]
    for _ in range(HOLD_MAX // 1000):
        loop.on_readings(batch)
    assert engine.stats.readings == 0
    loop.on_readings(batch)  # one batch beyond the bound
    assert loop.progress.state is BackfillState.GAVE_WAY
    assert engine.stats.readings == HOLD_MAX + 1000


def test_the_health_example_is_valid_and_restates_the_defaults() -> None:
    config = load_config(Path(__file__).parents[2] / "deploy" / "examples" / "health.yaml", env={})
    assert config.health == HealthSettings()
    assert config.health.backfill_timeout == timedelta(seconds=60)
