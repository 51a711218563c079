"""The index of stored readings: a stored (site, meter, device time) is never written again — an identical
repeat is a duplicate, other values a conflict — across restarts, for late gap-filling readings, within its
horizon and memory bound; and it records only what the outbox committed."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.influx.lineproto import FlowSchema
from collector.model import Reading, Role
from collector.outbox import Companion, Outbox, OutboxFull, OutboxSettings
from collector.seen import SeenIndex, SeenSettings, Sorted
from tests.helpers import T0, make_site

SCHEMA = FlowSchema([make_site()])


def e1(ts: datetime, total: float, rate: float = 50.0) -> Reading:
    return Reading("s1", "E1", Role.EXTRACTION, ts, rate, total)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


class Store:
    """An outbox with its index, as the service keeps them."""

    def __init__(self, path: Path, settings: SeenSettings | None = None, now: datetime = T0) -> None:
        self.outbox = Outbox(path / "outbox.sqlite", OutboxSettings(max_rows=1_000_000))
        self.now = now
        self.index = SeenIndex(self.outbox.path, settings, clock=lambda: self.now.timestamp())

    def commit(self, readings: Sequence[Reading]) -> Sorted:
        return self.index.commit(readings, SCHEMA.lines(readings), self.outbox.put_with)

    def stored(self) -> list[str]:
        return [line for c in self.outbox.peek(100_000) for line in c.lines]

    def close(self) -> None:
        self.index.close()
        self.outbox.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_a_repeat_is_a_duplicate_and_other_values_a_conflict_and_neither_is_written(store: Store) -> None:
    first = store.commit([e1(at(0), 100.0), e1(at(10), 101.0)])
    assert len(first.readings) == 2 and not (first.duplicates or first.conflicts or first.too_old)
    again = store.commit([e1(at(0), 100.0), e1(at(10), 999.0), e1(at(20), 102.0)])
    assert again.duplicates == [e1(at(0), 100.0)]
    assert again.conflicts == [e1(at(10), 999.0)]
    assert again.readings == [e1(at(20), 102.0)]
    assert store.stored() == SCHEMA.lines([e1(at(0), 100.0), e1(at(10), 101.0), e1(at(20), 102.0)])


def test_a_changed_signal_or_error_code_is_a_conflict_too(store: Store) -> None:
    store.commit([e1(at(0), 100.0)])
    other = Reading("s1", "E1", Role.EXTRACTION, at(0), 50.0, 100.0, signal_pct=40.0)
    assert store.commit([other]).conflicts == [other]


def test_within_one_batch_the_first_reading_of_a_device_time_wins(store: Store) -> None:
    judged = store.commit([e1(at(0), 100.0), e1(at(0), 100.0), e1(at(0), 555.0), e1(at(5), 101.0)])
    assert judged.readings == [e1(at(0), 100.0), e1(at(5), 101.0)]
    assert len(judged.duplicates) == 1 and judged.conflicts == [e1(at(0), 555.0)]


def test_late_gap_filling_readings_are_stored_where_nothing_is(store: Store) -> None:
    store.commit([e1(at(0), 100.0), e1(at(600), 160.0)])  # a DTU's outage between them
    backfill = [e1(at(s), 100.0 + s / 10) for s in range(60, 600, 60)]
    judged = store.commit(backfill)
    assert judged.readings == backfill
    assert store.commit([e1(at(120), 1.0)]).conflicts == [e1(at(120), 1.0)], "back-filled times are indexed"
    assert len(store.index) == 11


def test_the_index_holds_across_a_restart_and_after_the_outbox_drained(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.commit([e1(at(s), 100.0 + s) for s in range(0, 100, 10)])
    store.outbox.ack(store.outbox.peek(100_000))  # drained to InfluxDB
    store.close()
    store = Store(tmp_path)
    assert store.outbox.depth == 0
    judged = store.commit([e1(at(50), 150.0), e1(at(50), 7.0), e1(at(55), 155.0)])
    assert judged.duplicates == [e1(at(50), 150.0)] and judged.conflicts == [e1(at(50), 7.0)]
    assert judged.readings == [e1(at(55), 155.0)]
    store.close()


def test_the_folded_index_reads_back_the_same(tmp_path: Path) -> None:
    store = Store(tmp_path, SeenSettings(horizon=timedelta(hours=2)))
    for k in range(6):  # 60 000 device times, 7 201 kept: the log is folded into one row per meter
        store.now = at(k * 10_000 + 9_999)
        store.commit([e1(at(k * 10_000 + s), float(k * 10_000 + s)) for s in range(10_000)])
    kept = len(store.index)
    assert kept == 7201
    with contextlib.closing(sqlite3.connect(store.outbox.path)) as db:
        assert db.execute("SELECT COUNT(*) FROM seen_log").fetchone()[0] == 0, "folded"
    store.close()
    store = Store(tmp_path, SeenSettings(horizon=timedelta(hours=2)), now=at(59_999))
    assert len(store.index) == kept
    judged = store.commit([e1(at(59_000), 59_000.0), e1(at(58_000), 0.5), e1(at(50_000), 1.0),
                           e1(at(60_000), 60_000.0)])
    assert judged.duplicates == [e1(at(59_000), 59_000.0)] and judged.conflicts == [e1(at(58_000), 0.5)]
    assert judged.too_old == [e1(at(50_000), 1.0)] and judged.readings == [e1(at(60_000), 60_000.0)]
    store.close()


def test_nothing_is_recorded_when_the_outbox_refuses_the_batch(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def full(lines: list[str], also: Companion) -> int:
        raise OutboxFull("full")

    with pytest.raises(OutboxFull):
        store.index.commit([e1(at(0), 100.0)], SCHEMA.lines([e1(at(0), 100.0)]), full)
    assert len(store.index) == 0
    assert store.commit([e1(at(0), 100.0)]).readings == [e1(at(0), 100.0)], "the source's retry is stored"
    store.close()
    store = Store(tmp_path)
    assert store.commit([e1(at(0), 100.0)]).duplicates == [e1(at(0), 100.0)]
    store.close()


def test_readings_older_than_the_horizon_are_refused_as_too_old(tmp_path: Path) -> None:
    store = Store(tmp_path, SeenSettings(horizon=timedelta(hours=1)), now=at(7200))
    store.commit([e1(at(7200), 200.0)])
    store.index.commit([], [], store.outbox.put_with)
    store.now += timedelta(minutes=1)  # pruning runs at most once a minute
    store.commit([e1(at(7210), 201.0)])
    judged = store.commit([e1(at(3500), 1.0), e1(at(3700), 150.0)])
    assert judged.too_old == [e1(at(3500), 1.0)] and judged.readings == [e1(at(3700), 150.0)]


def test_a_reading_dated_in_the_future_cannot_move_the_horizon(tmp_path: Path) -> None:
    store = Store(tmp_path, SeenSettings(horizon=timedelta(hours=1)), now=at(0))
    store.commit([e1(at(0), 100.0), e1(at(86_400 * 365), 5.0)])  # a clock a year ahead
    store.now += timedelta(minutes=1)
    store.commit([e1(at(60), 101.0)])
    assert store.commit([e1(at(30), 100.5)]).readings == [e1(at(30), 100.5)]


def test_the_memory_bound_drops_each_meters_oldest_device_times_first(tmp_path: Path) -> None:
    store = Store(tmp_path, SeenSettings(max_index_mb=1))  # 87 381 entries
    store.commit([e1(at(s), float(s)) for s in range(100_000)])
    assert len(store.index) <= 1024 * 1024 // 12
    judged = store.commit([e1(at(5), 0.0), e1(at(99_999), 99_999.0)])
    assert judged.too_old == [e1(at(5), 0.0)] and judged.duplicates == [e1(at(99_999), 99_999.0)]
    store.close()


def test_a_meter_holds_pending_device_times_only_while_its_batch_commits(store: Store) -> None:
    assert store.commit([e1(at(0), 100.0), e1(at(60), 101.0)]).readings == [e1(at(0), 100.0), e1(at(60), 101.0)]
    assert store.commit([e1(at(30), 100.5), e1(at(60), 101.0)]).duplicates == [e1(at(60), 101.0)]
    meters = list(store.index._meters.values())
    assert [m.pend for m in meters] == [None] and list(meters[0].ts) == [at(s).timestamp() * 1000 for s in (0, 30, 60)]
    assert store.index._db.execute("PRAGMA cache_size").fetchone()[0] == -256  # its own connection: a small cache
    store.close()


def test_a_batch_where_one_meter_only_repeats_stores_the_others(store: Store) -> None:
    r1 = Reading("s1", "R1", Role.REINJECTION, at(0), 50.0, 10.0)
    store.commit([e1(at(0), 100.0)])
    judged = store.commit([e1(at(0), 100.0), r1])
    assert judged.duplicates == [e1(at(0), 100.0)] and judged.readings == [r1]
    assert store.commit([r1]).duplicates == [r1] and len(store.index) == 2
    store.close()
