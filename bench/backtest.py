"""`gshp backtest` speed against `gshp replay` over the same rows, measured in the same run.

A bounded sample of a city: `--sites` copies of an honest site with nightly shutdowns and start-up lag
(`honest-shutdown-0`, 4 meters, 1-minute readings) over `--days`, one CSV file per site. `gshp replay` reads
the same rows from one file (it runs one process); `gshp backtest --jobs N` reads the directory. Both are the
CLI, start-up included. The city-year (300 sites × 4 meters × 1-minute readings, 630 720 000 rows) is
extrapolated from the backtest's rate on the sample. Goals: ≥ 4× replay's rows/s, a city-year ≤ 30 min.

    python -m bench.backtest [--sites 8] [--days 14] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.table import Row, text
from simulators.scenarios import with_days

SCENARIO = "honest-shutdown-0"
REPO = Path(__file__).resolve().parents[1]
CITY_ROWS = 300 * 4 * 365 * 24 * 60  # a city-year: 300 sites × 4 meters × 1-minute readings
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def write_case(sites: int, days: float, out: Path) -> tuple[Path, Path, Path, int]:
    """config.yaml, a directory of one CSV per site, the same rows in one CSV, and the row count."""
    sc = with_days(SCENARIO, days)
    data = sc.make(sc, np.random.default_rng(sc.seed))
    raw = data.config()
    site = raw["sites"][0]
    raw["sites"] = [{**site, "id": f"site-{i:03d}", "name": f"{site['name']} {i}"} for i in range(sites)]
    config, per_site, whole = out / "config.yaml", out / "sites", out / "all.csv"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    per_site.mkdir()
    frames = [data.readings.assign(site=s["id"]) for s in raw["sites"]]
    for s, f in zip(raw["sites"], frames, strict=True):
        f.to_csv(per_site / f"{s['id']}.csv", index=False)
    pd.concat(frames, ignore_index=True).to_csv(whole, index=False)
    return config, per_site, whole, len(data.readings) * sites


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds for one `gshp` command to finish, the CPU seconds it and its workers used, its stdout."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gshp.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=3600, check=True)
    return time.perf_counter() - t0, _children_cpu() - cpu0, done.stdout


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(sites: int = 8, days: float = 14, jobs: int = 2) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="gshp-bench-backtest-") as tmp:
        config, per_site, whole, n = write_case(sites, days, Path(tmp))
        replay_s, replay_cpu, replay_out = timed(["replay", "--config", str(config), "--readings", str(whole)])
        backtest_s, backtest_cpu, backtest_out = timed(["backtest", "--config", str(config), "--readings",
                                                        str(per_site), "--jobs", str(jobs)])
    results = [json.loads(line) for line in backtest_out.splitlines()]
    alerts = sum(r["rules"]["alerts"] for r in results[:-1])
    if results[-1]["summary"]["rows"] != n or alerts != 0 or replay_out.strip():
        raise RuntimeError("the honest sample must run every row and raise no alert in either command")
    rate, base = n / backtest_s, n / replay_s
    city_min = CITY_ROWS / rate / 60
    what = f"{sites} sites × {days:g} days, 4 meters, 1-min readings ({n:,} rows)"
    return [
        Row(f"gshp backtest --jobs {jobs}: {what}, 0 alerts", rate, "rows/s", base,
            "gshp replay of the same rows", f"≥ 4× (took {backtest_s:.1f} s, replay {replay_s:.1f} s; CPU per row "
            f"{1e6 * backtest_cpu / n:.1f} µs, replay {1e6 * replay_cpu / n:.1f} µs)"),
        Row(f"gshp backtest: a city-year (300 sites × 4 meters × 1-min, {CITY_ROWS:,} rows), extrapolated "
            f"from the {n:,}-row sample", city_min, "min",
            goal=f"≤ 30 min (gshp replay: {CITY_ROWS / base / 60:,.0f} min)"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", type=int, default=8, help="sites in the sample")
    p.add_argument("--days", type=float, default=14, help="days per site")
    p.add_argument("--jobs", type=int, default=2, help="backtest processes (the bench machine has 2 cores)")
    a = p.parse_args()
    print(text(run(a.sites, a.days, a.jobs)))


if __name__ == "__main__":
    main()
