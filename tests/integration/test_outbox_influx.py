"""No reading acknowledged to its source is lost on its way to a real influxd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from collector.backoff import Backoff
from collector.drain import Drainer
from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.model import Reading, Role
from collector.outbox import Chunk, Outbox, OutboxError, OutboxFull, OutboxSettings
from gshp.devstack import Influxd
from tests.helpers import T0, count, make_site, readings, wait_until

pytestmark = pytest.mark.integration


def _settings(influxd: Influxd, db: str) -> InfluxSettings:
    return InfluxSettings(url=influxd.url, api="v1", bucket=db, timeout=timedelta(seconds=5))  # type: ignore[arg-type]


def _pipeline(influxd: Influxd, db: str, path: Path, **outbox: object) -> tuple[Outbox, Drainer]:
    box = Outbox(path, OutboxSettings(**outbox))  # type: ignore[arg-type]
    writer = V1Writer(_settings(influxd, db))
    writer.ensure_target()
    return box, Drainer(box, writer)


def test_100k_readings_arrive_exactly(influxd: Influxd, influx_db: str, state_dir: Path) -> None:
    box, drainer = _pipeline(influxd, influx_db, state_dir / "outbox.sqlite", batch_size=5000,
                             max_batch_age=timedelta(milliseconds=100))
    drainer.start()
    schema = FlowSchema([make_site()])
    batch: list[str] = []
    for r in readings(100_000):
        batch.append(schema.line(r))
        if len(batch) == 1000:
            box.put(batch)
            batch = []
    wait_until(lambda: box.depth == 0, timeout=120)
    drainer.stop()
    assert count(influxd, influx_db) == 100_000
    assert drainer.dropped == 0
    # spot values: reading number 12 345 (odd: meter R1) and the last one (R1)
    i = 12_345
    res = influxd.query("SELECT total_m3, rate_m3h FROM flow WHERE meter='R1' AND time = "
                        f"{int((T0.timestamp() + i // 2) * 1000)}ms", influx_db)
    assert res[0]["series"][0]["values"][0][1:] == [1000.0 + i * 0.5, 50.0 + i % 7]  # type: ignore[index]
    last = influxd.query("SELECT last(total_m3) FROM flow", influx_db)
    assert last[0]["series"][0]["values"][0][1] == 1000.0 + 99_999 * 0.5  # type: ignore[index]


def test_influxd_outage_mid_run_loses_nothing_and_counts_nothing_twice(
        influxd: Influxd, influx_db: str, state_dir: Path) -> None:
    box, drainer = _pipeline(influxd, influx_db, state_dir / "outbox.sqlite", batch_size=500,
                             max_batch_age=timedelta(milliseconds=50))
    drainer.backoff = drainer.backoff.__class__(base=0.05, cap=0.5)
    drainer.start()
    schema = FlowSchema([make_site()])
    all_lines = schema.lines(readings(30_000))
    try:
        box.put(all_lines[:10_000])
        wait_until(lambda: box.depth < 5000)
        influxd.stop()
        box.put(all_lines[10_000:20_000])  # committed while the database is down
        time.sleep(1.0)
        assert box.depth >= 10_000, "the outbox must hold what InfluxDB could not take"
        influxd.start()
        box.put(all_lines[20_000:])
        wait_until(lambda: box.depth == 0, timeout=60)
    finally:
        drainer.stop()
        if not influxd.running:
            influxd.start()
    assert count(influxd, influx_db) == 30_000
    assert drainer.written >= 30_000  # re-sent batches overwrite the same points, never add


def test_at_the_bound_put_refuses_instead_of_dropping_old_lines(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSettings(max_rows=100))
    box.put([f"flow,site=s v={i} {i}" for i in range(90)])
    with pytest.raises(OutboxFull, match=r"outbox\.max_rows"):
        box.put([f"flow,site=s v={i} {i}" for i in range(90, 120)])
    assert box.depth == 90
    assert box.peek(1)[0].lines[0] == "flow,site=s v=0 0"


_PRODUCER = textwrap.dedent("""
    import sys
    from collector.outbox import Outbox
    from collector.influx.lineproto import FlowSchema
    from tests.helpers import make_site, readings
    box = Outbox(sys.argv[1])
    schema = FlowSchema([make_site()])
    lines = schema.lines(readings(40_000))
    for i in range(0, len(lines), 1000):
        box.put(lines[i:i + 1000])
        print(i + 1000, flush=True)  # acknowledged to the source only after the commit returned
""")


def test_sigkill_between_commit_and_drain_then_restart_delivers_everything(
        influxd: Influxd, influx_db: str, state_dir: Path, tmp_path: Path) -> None:
    outbox_path = state_dir / "outbox.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    producer = subprocess.Popen([sys.executable, "-c", _PRODUCER, str(outbox_path)], stdout=subprocess.PIPE,
                                text=True, env=env)
    assert producer.stdout is not None
    acked = 0
    for line in producer.stdout:
        acked = int(line)
        if acked >= 17_000:
            producer.send_signal(signal.SIGKILL)
            break
    producer.wait(10)
    assert producer.returncode == -signal.SIGKILL
    # restart: the service drains what the killed process committed
    config = tmp_path / "gshp.yaml"
    config.write_text(f"state_dir: {state_dir}\n"
                      f"influx: {{url: '{influxd.url}', api: v1, bucket: {influx_db}}}\n"
                      f"api: {{listen: '127.0.0.1:0'}}\n", encoding="utf-8")
    service = subprocess.Popen([sys.executable, "-m", "gshp.cli", "run", "--config", str(config)], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: count(influxd, influx_db) >= acked, timeout=60)
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    n = count(influxd, influx_db)
    assert acked <= n <= 40_000 and n % 1000 == 0  # every acknowledged batch, whole batches only


def test_names_with_escaping_hazards_round_trip(influxd: Influxd, influx_db: str, state_dir: Path) -> None:
    hazards = ['a b', 'a,b', 'a=b', 'say "hi"', "it's", 'back\\slash', '向阳荷花广场 (北区), 1=2']
    sites = [make_site(f"s{i}", name=f"{h} 「二期」", district=h) for i, h in enumerate(hazards)]
    box, drainer = _pipeline(influxd, influx_db, state_dir / "outbox.sqlite",
                             max_batch_age=timedelta(milliseconds=50))
    drainer.start()
    schema = FlowSchema(sites)
    box.put([schema.line(Reading(s.id, "E1", Role.EXTRACTION, T0, 1.0, 2.0)) for s in sites])
    from collector.influx.sitemeta import site_lines

    box.put(site_lines(sites, T0))
    wait_until(lambda: box.depth == 0)
    drainer.stop()
    reader = InfluxReader(_settings(influxd, influx_db))
    from collector.influx.reader import quote_literal

    for s in sites:
        flow = reader.query("SELECT total_m3, district FROM flow WHERE district = "
                            f"{quote_literal(s.district)}")
        assert list(flow["district"]) == [s.district]
        meta = reader.query(f"SELECT \"name\", district FROM site WHERE site = {quote_literal(s.id)}")
        assert list(meta["name"]) == [s.name] and list(meta["district"]) == [s.district]


def test_one_bad_line_in_a_batch_is_dropped_alone(influxd: Influxd, influx_db: str, state_dir: Path) -> None:
    box, drainer = _pipeline(influxd, influx_db, state_dir / "outbox.sqlite", batch_size=1000,
                             max_batch_age=timedelta(milliseconds=50))
    schema = FlowSchema([make_site()])
    lines = schema.lines(readings(999))
    # a type conflict in the same shard, and a line that does not parse
    lines.insert(500, f'flow,site=s1,meter=E1 total_m3="not a number" {int(T0.timestamp() * 1000) + 1}')
    lines.insert(700, "flow,site=s1 total_m3=")
    box.put(lines)
    while box.depth:
        drainer.drain_once()
    assert drainer.dropped == 2
    assert count(influxd, influx_db) == 999


class _FlakyDeletes(Outbox):
    """An outbox whose first deletions fail as on a full disk (the lines must stay and be sent again)."""

    failures = 3

    def ack(self, chunks: Sequence[Chunk]) -> None:
        if self.failures:
            self.failures -= 1
            raise OutboxError("cannot delete from the outbox: database or disk is full")
        super().ack(chunks)


def test_a_failed_deletion_under_load_leaves_the_lines_to_be_sent_again_and_removed(
        influxd: Influxd, influx_db: str, state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = _FlakyDeletes(state_dir / "outbox.sqlite", OutboxSettings(batch_size=500,
                                                                    max_batch_age=timedelta(milliseconds=20)))
    writer = V1Writer(_settings(influxd, influx_db))
    writer.ensure_target()
    drainer = Drainer(box, writer, backoff=Backoff(base=0.01, cap=0.05)).start()
    schema = FlowSchema([make_site()])
    data = list(readings(20_000))
    for i in range(0, len(data), 250):  # a steady stream: deletions overlap the next writes
        box.put(schema.lines(data[i:i + 250]))
    wait_until(lambda: box.depth == 0, timeout=60)
    drainer.stop()
    assert box.failures == 0
    assert count(influxd, influx_db) == 20_000  # each point once, however often its line was sent
    assert drainer.written > 20_000  # the undeleted lines were sent again
    assert sum("stay in the outbox" in r.getMessage() for r in caplog.records) == 1  # logged once
    box.close()
    assert Outbox(state_dir / "outbox.sqlite").depth == 0  # and they are gone from the file
