"""`gshp report` against a real influxd: a simulated discharging day written as `flow` lines, alerts from
the alert store the engine wrote, and the report as CSV, xlsx and HTML."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from openpyxl import load_workbook

from collector.influx.lineproto import FlowSchema
from collector.influx.settings import InfluxSettings
from collector.influx.writer import V1Writer
from collector.model import Reading
from gshp.cli import main
from gshp.config import parse_config
from gshp.devstack import Influxd
from rules.engine import Engine
from rules.replay import readings_from_frame, replay
from rules.report import compute_daily_report, day_bounds
from rules.store import AlertStore
from simulators.scenarios import build

pytestmark = pytest.mark.integration

DAY = date(2026, 5, 6)  # discharge-20 sends 20 % of the water to a drain from 07:31 local


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> tuple[Path, pd.DataFrame]:
    """The config file of a service that stored discharge-20's readings in influxd and its alerts."""
    data = build("discharge-20")
    _, end = day_bounds(DAY, parse_config(yaml.safe_dump(data.config(), allow_unicode=True)).tz)
    df = data.readings[data.readings["ts"] <= end.timestamp() + 3 * 3600].reset_index(drop=True)
    return _setup(tmp_path_factory.mktemp("report"), influxd, "t_report", data.config(), df), df


def _setup(tmp_path: Path, influxd: Influxd, db: str, cfg: dict[str, object], df: pd.DataFrame) -> Path:
    state = tmp_path / "state"
    cfg = {**cfg, "state_dir": str(state), "influx": {"url": influxd.url, "api": "v1", "bucket": db}}
    path = tmp_path / "gshp.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    config = parse_config(path.read_text(encoding="utf-8"))
    site = config.sites[0]
    roles = {m.id: m.role for m in site.meters}
    schema = FlowSchema(config.sites)
    lines = [schema.line(Reading(site.id, meter, roles[meter], datetime.fromtimestamp(ts, UTC), rate, total))
             for ts, meter, rate, total in zip(df["ts"].tolist(), df["meter"].tolist(), df["rate_m3h"].tolist(),
                                                df["total_m3"].tolist(), strict=True)]
    writer = V1Writer(InfluxSettings(url=influxd.url, api="v1", bucket=db,  # type: ignore[arg-type]
                                     timeout=timedelta(seconds=10)))
    writer.ensure_target()
    for i in range(0, len(lines), 5000):
        writer.write(lines[i:i + 5000])
    writer.close()
    store = AlertStore(state / "alerts.sqlite")  # what `gshp run` leaves behind
    for _ in replay(Engine(config.sites, config.rules, config.tz, store=store), readings_from_frame(df)):
        pass
    store.close()
    return path


def _gshp(*runs: list[str]) -> list[tuple[int, bytes, bytes]]:
    """Run `gshp report` once per argument list, all at once; (exit code, stdout, stderr) of each."""
    procs = [subprocess.Popen([sys.executable, "-m", "gshp.cli", "report", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for args in runs]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=120)
        out.append((p.returncode, o, e))
    return out


def test_report_from_influxdb_as_csv_xlsx_and_html(tmp_path: Path, deployed: tuple[Path, pd.DataFrame]) -> None:
    cfg, df = deployed
    config = parse_config(cfg.read_text(encoding="utf-8"))
    expected = compute_daily_report(DAY, config.tz, config.sites, config.rules, readings_from_frame(df)).sites[0]

    common = ["--config", str(cfg), "--date", DAY.isoformat()]
    csv_run, xlsx_run, html_run = _gshp(common, [*common, "--format", "xlsx", "--output", str(tmp_path / "r.xlsx")],
                                        [*common, "--format", "html", "--language", "en"])
    for code, _, err in (csv_run, xlsx_run, html_run):
        assert code == 0, err.decode()

    # csv: UTF-8 with BOM, the engine's volumes, the discharge alert from the store
    body = csv_run[1]
    assert body.startswith("\ufeff".encode())
    table = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig", dtype={"日期 date": str})
    row = table[table["类型 row_type"] == "site"].iloc[0]
    assert row["站点编号 site"] == "discharge-20" and row["区县 district"] == "宛城区"
    assert row["抽水量(m³) extracted_m3"] == pytest.approx(round(expected.extracted_m3, 2))
    assert row["回灌量(m³) reinjected_m3"] == pytest.approx(round(expected.reinjected_m3, 2))
    assert row["差额率(%) deficit_pct"] == pytest.approx(16.0, abs=1.0)
    assert row["数据覆盖率(%) coverage_pct"] == 100.0
    assert row["排水告警(条) discharge_alerts"] >= 1
    total = table[table["类型 row_type"] == "total"].iloc[0]
    assert total["有排水告警站点数 sites_with_discharge_alerts"] == 1 and total["在线率(%) online_pct"] == 100.0

    # xlsx: the same numbers as cells, with formats and a frozen header
    wb = load_workbook(tmp_path / "r.xlsx")
    ws = wb["站点"]
    header = [c.value for c in ws[1]]
    cell = ws.cell(row=2, column=header.index("抽水量(m³) extracted_m3") + 1)
    assert cell.value == pytest.approx(expected.extracted_m3) and cell.number_format == "#,##0.00"
    assert ws.freeze_panes == "A2"
    assert ws.cell(row=2, column=header.index("站点名称 site_name") + 1).value == "模拟站点 discharge-20"
    assert wb["区县"].cell(row=3, column=2).value == "合计"

    # html in English, self-contained
    page = html_run[1].decode()
    assert "Daily extraction/reinjection balance" in page and "模拟站点 discharge-20" in page
    assert f"{expected.extracted_m3:,.2f}" in page and "<script" not in page


def test_report_from_a_recorded_csv_equals_the_one_from_influxdb(tmp_path: Path, deployed: tuple[Path, pd.DataFrame],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg, df = deployed
    recorded = tmp_path / "readings.csv"
    df.to_csv(recorded, index=False)
    common = ["report", "--config", str(cfg), "--date", DAY.isoformat(), "--days", "2"]
    assert main([*common, "--output", str(tmp_path / "db.csv")]) == 0
    assert "2026-05-07 done (2/2)" in capsys.readouterr().err
    assert main([*common, "--readings", str(recorded), "--output", str(tmp_path / "rec.csv")]) == 0
    from_db, from_csv = (tmp_path / "db.csv").read_bytes(), (tmp_path / "rec.csv").read_bytes()
    assert from_db == from_csv
    assert from_db.decode("utf-8-sig").count("\nsite,") == 2  # one site, two days


def test_report_refusals_name_the_fix(deployed: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    cfg, _ = deployed
    common = ["report", "--config", str(cfg), "--date", DAY.isoformat()]
    assert main([*common, "--district", "某区"]) == 2
    assert "宛城区" in capsys.readouterr().err
    assert main([*common, "--format", "xlsx"]) == 2
    assert "--output" in capsys.readouterr().err
    assert main([*common, "--days", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["report", "--config", str(cfg), "--date", "05/06/2026"])
    assert "YYYY-MM-DD" in capsys.readouterr().err
