"""No reading acknowledged to its source is lost on its way to a real influxd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from collector.drain import Drainer
from collector.influx.lineproto import FlowSchema
from collector.influx.reader import InfluxReader
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.model import Reading, Role
from collector.outbox import Outbox, OutboxFull, OutboxSettings
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
    sites = [make_site(f"s{i}", name=f"{h}\n第二行", district=h) for i, h in enumerate(hazards)]
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
