"""Store files written by the first release open with the current code, stamped with the current schema
version, every row kept (tests/cases/stores/v1)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from collector.deadletter import DeadLetterStore, NewDeadLetter
from collector.fanout import FanoutOutbox
from collector.outbox import Outbox
from rules.notify.event import parse_event, sample_event
from rules.notify.queue import NotifyQueue
from rules.settings import MaintenanceWindow
from rules.store import AlertStore

V1 = Path(__file__).parents[1] / "cases" / "stores" / "v1"
EXPECTED: dict[str, dict[str, int]] = json.loads((V1 / "expected.json").read_text())


def _tables(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                                          "'sqlite_%'")]
        return {n: db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        db.close()


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    for f in V1.glob("*.sqlite"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_first_release_store_opens_migrated_with_every_row(copies: Path, name: str) -> None:
    path = copies / name
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0
    expected = {k: v for k, v in EXPECTED[name].items() if k != "lines"}
    store: Outbox | DeadLetterStore | AlertStore | NotifyQueue
    if name == "outbox.sqlite":
        store = Outbox(path)
        assert store.depth == EXPECTED[name]["lines"]
        assert sum(len(c.lines) for c in store.peek(10_000)) == EXPECTED[name]["lines"]
    elif name == "fanout.sqlite":
        store = FanoutOutbox(path)
        assert store.depth == EXPECTED[name]["lines"]
    elif name == "deadletter.sqlite":
        store = DeadLetterStore(path)
        assert len(store) == 41 and store.counts() == {"bad_json": 40, "too_large": 1}
    elif name == "alerts.sqlite":
        store = AlertStore(path)
        assert len(store.history()) == 6 and len(store.transitions("hehua-plaza:balance_1h:0")) == 3
        assert store.outcome("hehua-plaza:balance_1h:0") is not None and len(store.maintenance()) == 1
    else:
        store = NotifyQueue(path)
        assert store.counts()["hook"].failed == 1 and len(store.legacy_silences()) == 1
    assert store.problems() == []
    store.close()
    counts = _tables(path)
    assert {k: counts[k] for k in expected} == expected
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] >= 1
    assert (path.stat().st_mode & 0o777) == 0o600  # the first release wrote them 0644


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_damaged_store_is_replaced_reported_and_usable(copies: Path, name: str) -> None:
    path = copies / name
    with open(path, "r+b") as f:  # the last page: a table or index the store reads
        f.seek(path.stat().st_size - 4096)
        f.write(b"\xab" * 4096)
    store: Outbox | DeadLetterStore | AlertStore | NotifyQueue
    if name in ("outbox.sqlite", "fanout.sqlite"):
        store = Outbox(path) if name == "outbox.sqlite" else FanoutOutbox(path)
        store.put(["flow,site=s1,meter=E1 total_m3=1 1"])
    elif name == "deadletter.sqlite":
        store = DeadLetterStore(path)
        store.put([NewDeadLetter(1.0, "mqtt", "t", "bad_json", "x", b"{")])
    elif name == "alerts.sqlite":
        store = AlertStore(path)
        window = MaintenanceWindow.model_validate({"from": "2026-12-01T00:00:00+08:00",
                                                   "to": "2026-12-01T02:00:00+08:00", "reason": "回扬",
                                                   "volume_cap_m3": 1})
        store.declare_maintenance("s1", window, "op", "2026-12-01T00:00:00+08:00")
    else:
        store = NotifyQueue(path)
        store.record(parse_event(sample_event()), [("hook", "g")])
    (problem,) = store.problems()
    assert "was damaged" in problem and "moved aside" in problem
    store.close()
    assert len(list(copies.glob(f"{name}.damaged-*"))) == 1
