"""`gshp backtest`: the same alerts and incidents as `gshp replay`, two rule sets compared, sites in parallel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rules
from alerting.model import Alert
from gshp.cli import main
from gshp.commands.backtest import _note_alert, plan_csv
from gshp.config import load_config
from rules.compiled import WORDS
from simulators.scenarios import build
from tests.unit.test_config_limits import BOMB

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
AGAINST = """rules:
  balance:
    windows:
      - {name: day, window: 24h, threshold_pct: 50, min_extracted_m3: 100}
"""


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A discharging site and an honest one, each in its own CSV file, and a rule set that only keeps a
    lenient day window."""
    root = tmp_path_factory.mktemp("backtest")
    discharge, honest = build("discharge-20"), build("honest-small-0")
    config = discharge.config()
    config["sites"] += honest.config()["sites"]
    (root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (root / "data").mkdir()
    discharge.readings.to_csv(root / "data" / "discharge.csv", index=False)
    honest.readings.to_csv(root / "data" / "honest.csv", index=False)
    (root / "against.yaml").write_text(AGAINST, encoding="utf-8")
    return root


def _backtest(case, *args, jobs="1"):
    return main(["backtest", "--config", str(case / "config.yaml"), "--jobs", jobs, *args])


def test_backtest_raises_exactly_the_alerts_and_incidents_of_replay(case, capsys):
    assert main(["replay", "--config", str(case / "config.yaml"), "--readings",
                 str(case / "data" / "discharge.csv"), "--incidents"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    alerts: dict[str, dict] = {}
    for d in lines:
        if "change" not in d and d["site"] == "discharge-20":  # the other site has no readings in this file
            _note_alert(alerts, Alert.from_dict(d))
    opened = sorted((d["incident"]["kind"], d["incident"]["started_at"]) for d in lines
                    if d.get("change") == "opened" and d["incident"]["site"] == "discharge-20")
    assert alerts and opened
    assert _backtest(case, "--readings", str(case / "data")) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    site = next(d for d in out if d.get("site") == "discharge-20")
    assert site["rules"]["alert_list"] == sorted(alerts.values(), key=lambda a: (a["starts_at"], a["rule"]))
    assert sorted((i["kind"], i["started_at"]) for i in site["rules"]["incident_list"]) == opened
    assert site["rows"] == 14404 and "against" not in site


def test_two_rule_sets_in_parallel_show_their_difference(case):
    r = subprocess.run([sys.executable, "-m", "gshp.cli", "backtest", "--config", str(case / "config.yaml"),
                        "--readings", str(case / "data"), "--against", str(case / "against.yaml"), "--jobs", "2"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    by_site = {d["site"]: d for d in lines[:-1]}
    discharge, honest = by_site["discharge-20"], by_site["honest-small-0"]
    only = {a["rule"] for a in discharge["difference"]["alerts_only_rules"]}
    assert {"balance_gross", "balance_hour"} <= only
    assert "balance_sequential" not in only  # both rule sets keep the sequential test
    assert discharge["difference"]["alerts_only_against"] == []
    assert discharge["rules"]["fired"] > discharge["against"]["fired"] >= 1
    assert honest["rules"]["fired"] == honest["against"]["fired"] == 0
    assert honest["difference"] == {k: [] for k in honest["difference"]}
    summary = lines[-1]["summary"]
    assert summary["rows"] == 14404 + 34564 and summary["rule_sets"] == 2 and summary["jobs"] == 2
    assert summary["rows_per_s"] > 0 and summary["engine"] == rules.ENGINE
    assert "回测 backtest" in r.stderr and "100.0%" in r.stderr and "rows/s" in r.stderr


def test_table_lists_each_site_the_difference_and_a_summary_line(case, capsys):
    assert _backtest(case, "--readings", str(case / "data"), "--rules", str(case / "config.yaml"),
                     "--against", str(case / "against.yaml"), "--format", "table") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("站点 site") and "差异 difference" in lines[0]
    row = next(line for line in lines if line.startswith("discharge-20"))
    assert "-balance_gross@" in row and "+balance" not in row
    assert next(line for line in lines if line.startswith("honest-small-0")).endswith("—")
    assert lines[-1].startswith("合计 total: 2 站点 sites, 48,968 行 rows")
    assert lines[-1].endswith(f"行/秒 rows/s, {WORDS[rules.ENGINE]}")


def test_bad_rows_name_their_file_and_line_and_unknown_sites_are_counted(case, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    text = (case / "data" / "discharge.csv").read_text(encoding="utf-8").splitlines()
    text[5] = "not-a-time,discharge-20,E1,1,2"
    (data / "a.csv").write_text("\n".join([*text, "1777910400,nowhere,E1,1,2"]) + "\n", encoding="utf-8")
    assert _backtest(case, "--readings", str(data), jobs="2") == 0
    captured = capsys.readouterr()
    assert f"{data / 'a.csv'}:6: skipped: ts" in captured.err
    summary = json.loads(captured.out.splitlines()[-1])["summary"]
    assert summary["bad_rows"] == 1 and summary["unknown"] == 1


def test_a_file_of_one_tasks_sites_alone_is_read_whole_and_names_its_bad_lines(case, tmp_path, capsys):
    config = load_config(case / "config.yaml")
    rows = {"a.csv": {"discharge-20": 9}, "b.csv": {"discharge-20": 1, "honest-small-0": 2}}
    tasks, total = plan_csv(config, rows, jobs=1)
    assert total == 12 and [(t.sites, t.whole) for t in tasks] == [
        (("discharge-20",), frozenset({"a.csv"})), (("honest-small-0",), frozenset())]
    data = tmp_path / "data"
    data.mkdir()
    text = (case / "data" / "discharge.csv").read_text(encoding="utf-8").splitlines()
    text[5] = "not-a-time,discharge-20,E1,1,2"
    (data / "a.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    assert _backtest(case, "--readings", str(data)) == 0
    assert f"{data / 'a.csv'}:6: skipped: ts" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("rules:\n  balance:\n    windows: [{name: x, window: 7q}]\n", "rules.balance.windows.0.window"),
    ("rules:\n  sites:\n    nowhere: {}\n", "names no site"),
    ("- a list\n", "top-level `rules:`"),
])
def test_a_bad_rules_file_exits_2_naming_it(case, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, encoding="utf-8")
    assert _backtest(case, "--readings", str(case / "data"), "--against", str(bad)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(bad) in captured.err and message in captured.err


def test_a_rules_file_is_read_under_the_configs_bounds(case, tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB.replace("sites: *i", "rules: *i"), encoding="utf-8")
    assert _backtest(case, "--readings", str(case / "data"), "--against", str(bomb)) == 2
    assert "would expand" in capsys.readouterr().err


def test_an_empty_directory_exits_2(case, tmp_path, capsys):
    assert _backtest(case, "--readings", str(tmp_path)) == 2
    assert "no *.csv file" in capsys.readouterr().err
