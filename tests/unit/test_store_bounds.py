"""Stores bounded in bytes, and the dead-letter store repairing a file found damaged while running."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from collector.deadletter import DeadLetterStore, NewDeadLetter
from rules.notify.event import parse_event, sample_event
from rules.notify.queue import NotifyQueue, QueueFull

MIB = 1024 * 1024


def _letters(n: int, size: int, start: int = 0) -> list[NewDeadLetter]:
    return [NewDeadLetter(1_800_000_000.0 + i, "mqtt", "dtu/Q1/up", "bad_json", f"letter {i}",
                          b"{" + bytes([65 + i % 26]) * (size - 1)) for i in range(start, start + n)]


def _evicted() -> float:
    return REGISTRY.get_sample_value("gshp_deadletters_evicted_total") or 0.0


def test_dead_letters_beyond_the_byte_bound_evict_the_oldest_and_count_them(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "d.sqlite", max_bytes=MIB)
    before = _evicted()
    for k in range(10):
        store.put(_letters(10, 61_000, start=k * 10))
    assert store.stored_bytes <= MIB and len(store) == MIB // (61_000 + 100)
    kept = store.list(limit=1000, newest_first=False)
    assert [d.detail for d in kept] == [f"letter {i}" for i in range(100 - len(kept), 100)]  # the newest stay
    assert _evicted() - before == 100 - len(kept)
    store.close()
    reopened = DeadLetterStore(tmp_path / "d.sqlite", max_bytes=MIB)  # the byte count is rebuilt at open
    assert reopened.stored_bytes == store.stored_bytes
    reopened.close()


def test_a_batch_larger_than_the_bound_keeps_its_newest_entries(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "d.sqlite", max_bytes=MIB)
    store.put(_letters(40, 61_000))
    assert store.stored_bytes <= MIB and store.list(limit=1)[0].detail == "letter 39"
    store.close()


def test_a_payload_kept_as_its_first_bytes_records_its_full_size(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "d.sqlite")
    store.put([NewDeadLetter(1.0, "mqtt", "t", "too_large", "10485760 bytes", b"x" * 4096, size=10 * MIB)])
    (letter,) = store.list()
    assert letter.size == 10 * MIB and len(letter.payload) == 4096 and letter.truncated
    store.close()


def test_a_dead_letter_store_found_damaged_while_running_is_repaired_and_written(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    store = DeadLetterStore(path, max_rows=300)
    store.put(_letters(300, 2000))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:  # a bad page in the middle of the table
        f.seek((path.stat().st_size // 4096 // 2) * 4096)
        f.write(b"\xab" * 4096)
    store._db.close()  # a fresh connection reads the page from disk, as after a restart of the page cache
    store._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    store.put(_letters(200, 2000, start=1000))  # the eviction scan meets the damage; repaired, then written
    assert store.list(limit=1)[0].detail == "letter 1199"
    (problem,) = store.problems()
    assert "damaged" in problem and "readable rows salvaged" in problem
    assert len(store) == 300 and store.problems() == [problem]
    store.close()


def test_the_notification_queue_refuses_events_beyond_its_byte_bound(tmp_path: Path) -> None:
    queue = NotifyQueue(tmp_path / "n.sqlite", max_bytes=20_000)
    body = sample_event()
    for i in range(100):
        try:
            incident = {**body["incident"], "id": f"a{i}", "summary": {"zh": "外排" * 200, "en": "drain " * 200}}
            queue.record(parse_event({**body, "incident": incident}), [("hook", "g")])
        except QueueFull as err:
            assert "bytes of notifications wait unsent" in str(err)
            break
    else:
        pytest.fail("the queue took more than its bound")
    assert queue.unsent_bytes() <= 20_000 and i > 3
    queue.close()
