"""The outbox keeps every committed line until it is acknowledged, across reopen, under concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from collector.outbox import Outbox, OutboxError, OutboxFull, OutboxSettings


def lines(a: int, b: int) -> list[str]:
    return [f"flow,site=s v={i} {i}" for i in range(a, b)]


def test_lines_survive_reopen_until_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=100))
    box.put(lines(0, 250))
    box.close()
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=100))
    assert box.depth == 250
    chunks = box.peek(200)
    assert [len(c.lines) for c in chunks] == [100, 100]
    box.ack(chunks)
    box.close()
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=100))
    assert box.depth == 50 and box.peek(1000)[0].lines == lines(200, 250)


def test_peek_returns_at_least_one_chunk_even_if_larger_than_the_limit(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=500))
    box.put(lines(0, 300))
    assert [len(c.lines) for c in box.peek(10)] == [300]


def test_a_line_with_a_raw_newline_in_a_string_field_is_kept_whole(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(['site,site=s name="a\nb" 1', "x v=1 2"])
    assert box.peek(10)[0].lines == ['site,site=s name="a\nb" 1', "x v=1 2"]


def test_full_outbox_refuses_the_new_put_whole_and_keeps_the_old_lines(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(max_rows=100))
    box.put(lines(0, 60))
    with pytest.raises(OutboxFull):
        box.put(lines(60, 110))
    box.put(lines(60, 100))  # exactly to the bound is fine
    assert box.depth == 100
    assert [line for c in box.peek(1000) for line in c.lines] == lines(0, 100)


def test_warns_once_when_nearly_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(max_rows=100, warn_fraction=0.5))
    for i in range(8):
        box.put(lines(i * 10, i * 10 + 10))
    warnings = [r for r in caplog.records if "full" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "50%" in warnings[0].getMessage()


def test_concurrent_puts_share_commits_and_lose_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    commits = 0
    original = box._transaction

    def counting(*args: object) -> None:
        nonlocal commits
        commits += 1
        original(*args)  # type: ignore[arg-type]

    box._transaction = counting  # type: ignore[method-assign]
    barrier = threading.Barrier(8)

    def producer(k: int) -> None:
        barrier.wait()
        for j in range(25):
            box.put(lines(k * 10_000 + j * 10, k * 10_000 + j * 10 + 10))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(line for c in box.peek(10**6) for line in c.lines)
    assert got == sorted(line for k in range(8) for line in lines(k * 10_000, k * 10_000 + 250))
    assert box.depth == 2000
    assert commits < 200, "waiting puts must be committed together"


def test_closed_outbox_refuses_puts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.put(lines(0, 1))


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="check state_dir"):
        Outbox(tmp_path / "file" / "o.sqlite")


def test_oldest_age_metric_is_current_at_scrape_time_while_nothing_drains(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    now = [1000.0]
    box = Outbox(tmp_path / "o.sqlite", clock=lambda: now[0])
    age = "gshp_outbox_oldest_age_seconds"
    assert REGISTRY.get_sample_value(age) == 0.0
    box.put(lines(0, 10))
    now[0] += 42.5  # no drainer runs: InfluxDB is away
    assert REGISTRY.get_sample_value(age) == 42.5
    box.ack(box.peek(100))
    assert REGISTRY.get_sample_value(age) == 0.0
    box.close()
    assert REGISTRY.get_sample_value(age) == 0.0


def test_a_chunk_acknowledged_twice_is_counted_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=100))
    box.put(lines(0, 100))
    box.put(lines(100, 200))
    first = box.peek(100)
    box.ack(first)
    box.ack(first)  # sent again after a deletion that seemed to fail
    assert box.depth == 100 and [c.lines for c in box.peek(1000)] == [lines(100, 200)]


def test_peek_after_skips_what_is_being_deleted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(batch_size=100))
    for a in range(0, 300, 100):
        box.put(lines(a, a + 100))
    first = box.peek(100)
    assert [c.lines for c in box.peek(100, after=first[-1].id)] == [lines(100, 200)]
