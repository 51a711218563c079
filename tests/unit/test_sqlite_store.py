"""The SQLite opener every store shares: permissions, integrity check and repair, schema versions, and the
high-water record that makes a store which shrank or vanished between two runs loud."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from collector.sqlite import (
    HighWater,
    StoreHealth,
    StoreSpec,
    StoreVersionError,
    close_store,
    is_corrupt,
    open_store,
)

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);"
SPEC = StoreSpec("test", SCHEMA)


def _fill(path: Path, n: int, size: int = 300) -> None:
    db = open_store(path, SPEC, StoreHealth("test"))
    db.execute("BEGIN")
    db.executemany("INSERT INTO t (body) VALUES (?)", [(f"{i:06d}" + "x" * size,) for i in range(n)])
    db.execute("COMMIT")
    close_store(path, db)


def corrupt_page(path: Path, page: int, page_size: int = 4096) -> None:
    """Overwrite one page of the file with garbage (what a bad sector or a torn write leaves)."""
    with open(path, "r+b") as f:
        f.seek(page * page_size)
        f.write(b"\xab" * page_size)


def _errors(store: str) -> float:
    return REGISTRY.get_sample_value("gshp_store_errors_total", {"store": store}) or 0.0


def test_a_new_store_and_its_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "s.sqlite"
    db = open_store(path, SPEC, StoreHealth("test"))
    db.execute("INSERT INTO t (body) VALUES ('x')")
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), HighWater.path_for(path)):
        assert (p.stat().st_mode & 0o777) == 0o600, p
    close_store(path, db)


def test_files_others_could_read_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 3)
    os.chmod(path, 0o644)
    os.chmod(tmp_path, 0o755)
    close_store(path, open_store(path, SPEC, StoreHealth("test")))
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (tmp_path.stat().st_mode & 0o777) == 0o700


def test_a_damaged_store_is_moved_aside_and_its_readable_rows_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 2000)
    pages = path.stat().st_size // 4096
    corrupt_page(path, pages // 2)
    health, before = StoreHealth("test"), _errors("test")
    db = open_store(path, SPEC, health)
    kept = [r[0] for r in db.execute("SELECT body FROM t ORDER BY id")]
    assert 1800 < len(kept) < 2000  # one page of ~13 rows lost, the rest read back
    assert kept == sorted(kept)  # in their order
    moved = list(tmp_path.glob("s.sqlite.damaged-*"))
    assert len(moved) == 1 and moved[0].stat().st_size > 0  # kept for inspection, not deleted
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    (problem,) = health.problems()
    assert "damaged" in problem and f"{len(kept)} readable rows salvaged" in problem and "lost" in problem
    assert _errors("test") == before + 1
    close_store(path, db)


def test_a_file_that_is_not_a_database_is_replaced_by_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 500)
    health = StoreHealth("test")
    db = open_store(path, SPEC, health)
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    assert len(health.problems()) == 1 and "0 readable rows salvaged" in health.problems()[0]
    close_store(path, db)


def test_a_half_length_file_is_repaired_with_what_the_first_half_holds(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 2000)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    health = StoreHealth("test")
    db = open_store(path, SPEC, health)
    n = db.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    assert 0 < n < 2000
    assert f"{n} readable rows salvaged" in health.problems()[0] and f"at least {2000 - n} lost" in health.problems()[0]
    close_store(path, db)


def test_a_store_emptied_or_removed_between_runs_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 50)
    path.write_bytes(b"")  # 0 bytes: SQLite would open it as a new, empty database
    health = StoreHealth("test")
    close_store(path, open_store(path, SPEC, health))
    assert len(health.problems()) == 1 and "empty file (it held 50 rows" in health.problems()[0]

    _fill(path, 7)
    for p in tmp_path.glob("s.sqlite*"):
        if not p.name.endswith(".highwater.json"):
            p.unlink()
    health = StoreHealth("test")
    close_store(path, open_store(path, SPEC, health))
    assert len(health.problems()) == 1 and "vanished" in health.problems()[0] and "7 rows" in health.problems()[0]


def test_rows_removed_while_stopped_are_reported_and_an_unclean_stop_is_not_compared(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 20)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM t WHERE id > 5")
    db.commit()
    db.close()
    health = StoreHealth("test")
    db = open_store(path, SPEC, health)
    (problem,) = health.problems()
    assert "holds 5 rows, 20 at the last clean stop" in problem and "removed while the service was stopped" in problem
    db.execute("DELETE FROM t")
    db.close()  # not close_store: a crash, no clean-stop record
    mark = HighWater.read(path)
    assert mark is not None and not mark.clean
    health = StoreHealth("test")
    close_store(path, open_store(path, SPEC, health))
    assert health.problems() == []  # after a crash the last count is not a promise


def test_a_store_held_by_another_live_process_is_neither_compared_nor_recorded(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 10)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        HighWater(10, 1, False, other.pid, "2026-12-01T00:00:00+00:00").write(path)
        db = sqlite3.connect(path)
        db.execute("DELETE FROM t")  # the service pruned it meanwhile
        db.commit()
        db.close()
        health = StoreHealth("test")
        close_store(path, open_store(path, SPEC, health))  # e.g. `gshp notify status` beside the service
        assert health.problems() == []
        assert HighWater.read(path) == HighWater(10, 1, False, other.pid, "2026-12-01T00:00:00+00:00")
        corrupt_page(path, 1)
        with pytest.raises(sqlite3.DatabaseError, match=f"process {other.pid} has it open"):
            open_store(path, SPEC, StoreHealth("test"))  # a guest never moves the owner's file away
        assert path.exists() and not list(tmp_path.glob("*.damaged-*"))
    finally:
        other.kill()
        other.wait()


def test_migrations_run_forward_from_the_files_version_and_keep_every_row(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 30)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    v3 = StoreSpec("test", SCHEMA.replace("body TEXT NOT NULL", "body TEXT NOT NULL, tag TEXT, n INTEGER")
                   + "CREATE TABLE IF NOT EXISTS extra (x);",
                   migrations=("ALTER TABLE t ADD COLUMN tag TEXT;",
                               "ALTER TABLE t ADD COLUMN n INTEGER; UPDATE t SET n = length(body);"))
    db = open_store(path, v3, StoreHealth("test"))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*), MIN(n) FROM t").fetchone() == (30, 306)
    assert db.execute("SELECT COUNT(*) FROM extra").fetchone()[0] == 0
    close_store(path, db)
    close_store(path, open_store(path, v3, StoreHealth("test")))  # at its version: nothing to run again
    fresh = tmp_path / "fresh.sqlite"
    db = open_store(fresh, v3, StoreHealth("test"))  # a new file gets the schema, not the migrations
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    close_store(fresh, db)


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _fill(path, 1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(StoreVersionError, match="schema version 9, newer than this release's 1"):
        open_store(path, SPEC, StoreHealth("test"))


def test_corruption_is_told_apart_from_other_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite3.connect(path).execute("SELECT * FROM sqlite_master").fetchall()
    assert is_corrupt(caught.value)
    with pytest.raises(sqlite3.OperationalError) as other:
        sqlite3.connect(":memory:").execute("SELECT * FROM missing")
    assert not is_corrupt(other.value)


def test_a_table_another_module_keeps_in_the_file_is_salvaged_too(tmp_path: Path) -> None:
    """The alert database also holds cases, the audit chain and silences, created by their own modules."""
    path = tmp_path / "s.sqlite"
    db = open_store(path, SPEC, StoreHealth("test"))
    db.execute("CREATE TABLE chain (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL)")
    db.executemany("INSERT INTO chain (hash) VALUES (?)", [(f"h{i}",) for i in range(50)])
    db.execute("BEGIN")
    db.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 300,) for _ in range(2000)])
    db.execute("COMMIT")
    close_store(path, db)
    corrupt_page(path, path.stat().st_size // 4096 - 1)  # a page of `t`, filled last
    health = StoreHealth("test")
    db = open_store(path, SPEC, health)
    assert [r[0] for r in db.execute("SELECT hash FROM chain ORDER BY seq")] == [f"h{i}" for i in range(50)]
    assert len(health.problems()) == 1
    close_store(path, db)
