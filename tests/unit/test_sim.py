import json

from gshp.cli import main
from gshp.config import load_config
from simulators.scenarios import SCENARIOS, build


def test_sim_scenarios_writes_config_readings_and_truth(tmp_path):
    args = ["sim", "scenarios", "--out", str(tmp_path), "--only", "discharge-20", "frozen-reinjection"]
    assert main(args) == 0
    d = tmp_path / "discharge-20"
    config = load_config(d / "config.yaml", env={})
    assert [m.id for m in config.sites[0].meters] == ["E1", "E2", "R1", "R2"]
    assert (d / "readings.csv").read_text().startswith("ts,site,meter,rate_m3h,total_m3\n")
    truth = json.loads((d / "truth.json").read_text())
    assert truth["expect"] == {"kind": "discharge", "rule": None, "within_s": 2700.0}
    assert truth["onset"].endswith("+00:00")


def test_unknown_scenario_names_the_known_ones(tmp_path, capsys):
    assert main(["sim", "scenarios", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "discharge-20" in capsys.readouterr().err


def test_scenarios_are_reproducible_by_seed():
    a, b = build("honest-gap-one-0"), build("honest-gap-one-0")
    assert a.readings.equals(b.readings)


def test_the_scenario_set_covers_every_case_the_targets_name():
    kinds = {s.expect.kind for s in SCENARIOS.values()}
    assert kinds == {"none", "discharge", "data_quality"}
    honest_days = sum(s.days for s in SCENARIOS.values() if s.name.startswith("honest-"))
    assert honest_days >= 90
