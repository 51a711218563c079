"""Readings/s through `Outbox.put` + the drainer into a real influxd, against influxd's bare ingest rate.

Baseline: the same lines, in the same batch size, posted straight to ``/write`` over one HTTP session.
Measured: readings are encoded (FlowSchema), committed in batches of 1 000 (each commit an fsync, as in
production), and drained concurrently into another database; the clock stops when the outbox is empty
and InfluxDB holds every point.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

from bench.table import Row, text
from collector.drain import Drainer
from collector.influx.lineproto import FlowSchema
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.outbox import Outbox, OutboxSettings
from gshp.devstack import Influxd
from tests.helpers import make_site, readings

BATCH = 5000


def _count(influxd: Influxd, db: str) -> int:
    series = influxd.query("SELECT count(total_m3) FROM flow", db)[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def bare_ingest(influxd: Influxd, lines: list[str], db: str) -> float:
    requests.post(f"{influxd.url}/query", params={"q": f"CREATE DATABASE {db}"}, timeout=10).raise_for_status()
    session = requests.Session()
    t0 = time.perf_counter()
    for i in range(0, len(lines), BATCH):
        r = session.post(f"{influxd.url}/write", params={"db": db, "precision": "ms"},
                         data="\n".join(lines[i:i + BATCH]).encode(), timeout=60)
        r.raise_for_status()
    elapsed = time.perf_counter() - t0
    assert _count(influxd, db) == len(lines)
    return len(lines) / elapsed


def through_outbox(influxd: Influxd, n: int, db: str, root: Path, synchronous: str) -> float:
    schema = FlowSchema([make_site()])
    data = list(readings(n))
    box = Outbox(root / f"{db}.sqlite", OutboxSettings(batch_size=BATCH, max_batch_age=timedelta(milliseconds=20),
                                                        max_rows=10 * n, synchronous=synchronous))
    writer = V1Writer(InfluxSettings(url=influxd.url, api="v1", bucket=db))  # type: ignore[arg-type]
    writer.ensure_target()
    drainer = Drainer(box, writer).start()
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        box.put(schema.lines(data[i:i + 1000]))
    deadline = time.monotonic() + 300
    while box.depth and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    drainer.stop()
    box.close()
    assert _count(influxd, db) == n, "every reading must arrive"
    return n / elapsed


def run(n: int = 200_000, rounds: int = 3) -> list[Row]:
    """Medians over alternating rounds (bare, full, normal), so background load hits all three alike."""
    bare: list[float] = []
    full: list[float] = []
    normal: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        influxd = Influxd(Path(tmp) / "influxd").start()
        try:
            lines = FlowSchema([make_site()]).lines(readings(n))
            bare_ingest(influxd, lines[:20_000], "warmup")
            for r in range(rounds):
                bare.append(bare_ingest(influxd, lines, f"bare{r}"))
                full.append(through_outbox(influxd, n, f"full{r}", Path(tmp), "full"))
                normal.append(through_outbox(influxd, n, f"normal{r}", Path(tmp), "normal"))
        finally:
            influxd.stop()
    what = f"bare /write of the same batches; medians of {rounds} alternating rounds"
    base = statistics.median(bare)
    return [Row("outbox put (1 000/commit) + drain → influxd, synchronous: full", statistics.median(full),
                "readings/s", base, what, "≥ 0.5×"),
            Row("outbox put (1 000/commit) + drain → influxd, synchronous: normal", statistics.median(normal),
                "readings/s", base, what, "≥ 0.5×")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=200_000, help="readings per run")
    print(text(run(p.parse_args().n)))


if __name__ == "__main__":
    main()
