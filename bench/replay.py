"""`gshp replay` speed: the CLI itself (start-up included) over an honest site's recorded stream, against
reading the same CSV with pandas in the same run (the floor any replay pays to parse its input).

Cases: 7 site-days and 1 site-year of an honest site with nightly shutdowns and start-up lag
(`honest-shutdown-0`, 4 meters at 1-minute readings). Goals from the replay contract: a week in a few
seconds, a site-year in ≤ 60 s. The replay must raise no alert (the site is honest).

    python -m bench.replay [--days 7 365]
"""

from __future__ import annotations

import argparse
import os
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


def write_case(days: float, out: Path) -> tuple[Path, Path, int]:
    """config.yaml and readings.csv of the scenario stretched to `days`; returns them and the row count."""
    sc = with_days(SCENARIO, days)
    data = sc.make(sc, np.random.default_rng(sc.seed))
    config, csv = out / f"{days:g}d.yaml", out / f"{days:g}d.csv"
    config.write_text(yaml.safe_dump(data.config(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    data.readings.to_csv(csv, index=False)
    return config, csv, len(data.readings)


def time_replay(config: Path, csv: Path) -> tuple[float, int]:
    """Seconds for `gshp replay` to finish, and the alert transitions it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(config), "--readings",
                           str(csv)], env=env, capture_output=True, text=True, timeout=600, check=True)
    return time.perf_counter() - t0, len(done.stdout.splitlines())


def time_parse(csv: Path) -> float:
    t0 = time.perf_counter()
    pd.read_csv(csv)
    return time.perf_counter() - t0


def run(days: tuple[float, ...] = (7, 365)) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="gshp-bench-replay-") as tmp:
        for d in days:
            config, csv, n = write_case(d, Path(tmp))
            parse = time_parse(csv)
            seconds, alerts = time_replay(config, csv)
            goal = "≤ 60 s" if d >= 365 else "a few seconds"
            rows.append(Row(f"gshp replay: {d:g} site-day(s), 4 meters, 1-min readings ({n:,} rows), "
                            f"{alerts} alerts", n / seconds, "rows/s", n / parse,
                            "pandas.read_csv of the same file", f"{goal} (took {seconds:.1f} s)"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=float, nargs="*", default=[7, 365], help="site-days per case")
    print(text(run(tuple(p.parse_args().days))))


if __name__ == "__main__":
    main()
