import io
import json
import random
from datetime import UTC, timedelta

import pytest

from gshp.cli import main
from rules.replay import ReplayError, parse_readings
from tests.unit.conftest import T0, flow

CONFIG = """timezone: Asia/Shanghai
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {id: E1, role: extraction}
      - {id: R1, role: reinjection}
"""


def _csv(lines):
    return io.StringIO("ts,site,meter,rate_m3h,total_m3\n" + "\n".join(lines) + "\n")


def test_iso_with_offset_and_unix_seconds_mean_the_same_instant():
    r = parse_readings(_csv(["2026-05-05T08:00:00+08:00,s,E1,1,2", "1777939260,s,E1,1,3"]))
    assert r.ts.tolist() == [T0.timestamp(), T0.timestamp() + 60]
    assert r.bad == []


def test_bad_rows_are_listed_with_line_numbers_and_skipped():
    r = parse_readings(_csv(["2026-05-05T08:00:00,s,E1,1,2", "1777939260,s,E1,x,3", "1777939320,,E1,1,3",
                             "1777939380,s,E1,,", "1777939440,s,E1,1,-1", "1777939500,s,E1,1,4"]))
    assert [(b.line, b.reason.split(" ")[0]) for b in r.bad] == [(2, "ts"), (3, "rate_m3h"), (4, "site"),
                                                                 (5, "neither"), (6, "total_m3")]
    assert len(r) == 1


def test_rows_are_sorted_by_time_whatever_their_order():
    r = parse_readings(_csv(["1777939320,s,R1,1,3", "1777939260,s,E1,1,2", "1777939260,s,R1,1,2"]))
    assert r.ts.tolist() == sorted(r.ts.tolist())
    assert r.meter == ["E1", "R1", "R1"]


def test_missing_columns_say_which_header_is_expected():
    with pytest.raises(ReplayError, match="ts,site,meter,rate_m3h,total_m3"):
        parse_readings(io.StringIO("time,site,meter\n1,2,3\n"))


def _write(tmp_path, rows):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    csv = tmp_path / "readings.csv"
    csv.write_text("ts,site,meter,rate_m3h,total_m3\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return cfg, csv


def _rows(seed=None):
    rows = [f"{int(r.ts.timestamp())},hehua,{r.meter},{r.rate_m3h},{r.total_m3}"
            for r in flow(180, r_m3h=70.0, start=T0.astimezone(UTC) + timedelta(0))]
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows


def test_stdout_is_only_json_lines_and_replay_is_deterministic(tmp_path, capsys):
    cfg, csv = _write(tmp_path, [*_rows(), "garbage,hehua,E1,1,1"])
    assert main(["replay", "--config", str(cfg), "--readings", str(csv)]) == 0
    first = capsys.readouterr()
    lines = first.out.splitlines()
    assert lines, "a 40 % deficit must produce transitions"
    for line in lines:
        event = json.loads(line)
        assert event["at"].endswith("+08:00")
    assert "readings.csv:" in first.err and "skipped" in first.err
    cfg2, csv2 = _write(tmp_path, _rows(seed=3))
    assert main(["replay", "--config", str(cfg2), "--readings", str(csv2)]) == 0
    assert capsys.readouterr().out == first.out


def test_table_format_and_english_summaries(tmp_path, capsys):
    cfg, csv = _write(tmp_path, _rows())
    assert main(["replay", "--config", str(cfg), "--readings", str(csv), "--format", "table",
                 "--language", "en"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("at")
    assert "extracted" in out and "firing" in out


def test_incidents_flag_adds_incident_lines_and_leaves_the_alert_lines_as_they_are(tmp_path, capsys):
    cfg, csv = _write(tmp_path, _rows())
    assert main(["replay", "--config", str(cfg), "--readings", str(csv)]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert all("change" not in json.loads(line) for line in plain)
    assert main(["replay", "--config", str(cfg), "--readings", str(csv), "--incidents"]) == 0
    both = capsys.readouterr().out.splitlines()
    incidents = [json.loads(line) for line in both if "change" in json.loads(line)]
    assert [line for line in both if "change" not in json.loads(line)] == plain
    assert incidents and incidents[0]["change"] == "opened"
    assert {i["incident"]["kind"] for i in incidents} == {"discharge"}
    assert incidents[0]["incident"]["volume_m3"]["estimate"] > 0


def test_a_bad_config_exits_2_with_the_problem_on_stderr(tmp_path, capsys):
    cfg, csv = _write(tmp_path, _rows())
    cfg.write_text(CONFIG + "rules: {evaluate_every: 7m}\n", encoding="utf-8")
    assert main(["replay", "--config", str(cfg), "--readings", str(csv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "evaluate_every" in captured.err
