import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gshp.cli import main
from gshp.config import load_config
from simulators.city import site_physics
from simulators.flow import DayCycleFlow, MeterModel, Scenario, ScenarioKind
from simulators.modbus import site_units
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
    assert kinds == {"none", "discharge", "data_quality", "compliance"}
    honest_days = sum(s.days for s in SCENARIOS.values() if s.name.startswith("honest-"))
    assert honest_days >= 90


# -- the live simulators' physics: one water for Modbus and MQTT, shared scenario syntax ----------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
MIXED = """\
timezone: Asia/Shanghai
mqtt: {port: 1883}
gateways: [{id: gw1, transport: tcp, host: 127.0.0.1, port: 5020}]
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {id: E1, role: extraction, modbus: {gateway: gw1, unit: 1}}
      - {id: R1, role: reinjection, mqtt: {topic: dtu/hehua/R1, profile: dtu-json}}
"""


def _mixed_site(tmp_path):
    path = tmp_path / "gshp.yaml"
    path.write_text(MIXED, encoding="utf-8")
    config = load_config(path, env={})
    return config, config.sites[0]


@pytest.mark.parametrize(("scenario", "kept"), [("balanced", 1.0), ("discharge:20", 0.8),
                                                ("night-discharge:50", 0.5)])
def test_modbus_and_mqtt_simulators_show_one_water_at_2am(tmp_path, scenario, kept):
    config, site = _mixed_site(tmp_path)
    sc = Scenario.parse(scenario)
    at = datetime(2026, 7, 1, 2, 0, tzinfo=SHANGHAI)
    # `gshp sim site` started at 18:40 the day before, `gshp sim mqtt` an hour before `at`: other clocks
    modbus_start = at - timedelta(hours=7, minutes=20)
    t = [(at - modbus_start).total_seconds()]
    modbus = site_units(site, {g.id: g for g in config.gateways}, sc, modbus_start, config.tz, lambda: t[0])
    e1 = modbus["gw1"][1].model
    mqtt = site_physics(config.sites, sc, at - timedelta(hours=1), config.tz)
    # the same true flow for the same meter, whichever simulator serves it
    for meter in ("E1", "R1"):
        model = mqtt.meters[("hehua", meter)].model
        assert model.flow.rate(mqtt.t(at)) == pytest.approx(
            site_physics(config.sites, sc, modbus_start, config.tz).meters[("hehua", meter)].model.flow.rate(t[0]),
            rel=1e-9)
    extracted = e1.sample(t[0])["rate_m3h"]  # what the Modbus E1 shows …
    (r1,) = mqtt.readings(at, source="mqtt")  # … and what the DTU publishes for R1
    assert r1.meter == "R1"
    assert extracted == pytest.approx(40 * 0.75, rel=0.02)  # 02:00 is the low of the day: −25 %
    assert r1.rate_m3h == pytest.approx(extracted * kept, rel=0.02)


def test_periodic_reset_drops_the_running_totalizer():
    m = MeterModel(DayCycleFlow(36.0, swing=0.0), scenario=Scenario.parse("reset:10"), noise_pct=0.0)
    assert m.sample(0.0)["total_m3"] == 10_000.0
    assert m.sample(599.0)["total_m3"] == pytest.approx(10_000 + 36 * 599 / 3600)
    assert m.sample(660.0)["total_m3"] == pytest.approx(36 * 60 / 3600)  # dropped at 10 min, counting on
    assert m.sample(3300.0)["total_m3"] == pytest.approx(36 * 300 / 3600)  # the last drop was at 50 min
    assert m.resets == 5


def test_swap_and_rescale_act_once_at_their_time():
    swap = MeterModel(DayCycleFlow(36.0, swing=0.0), scenario=Scenario.parse("swap:5"), serial_number=20240001)
    rescale = MeterModel(DayCycleFlow(36.0, swing=0.0), scenario=Scenario.parse("rescale:5"))
    swap.sample(299.0)
    rescale.sample(300.0)
    assert swap.serial_number == 20240001 and rescale.decades == 1
    assert swap.sample(360.0)["total_m3"] == pytest.approx(0.6)
    assert swap.serial_number == 30240001
    assert rescale.sample(360.0)["total_m3"] == pytest.approx(10_003.0 * 10 + 0.6)
    assert rescale.sample(7200.0)["total_m3"] == pytest.approx(100_030.0 + 36 * 6900 / 3600)
    assert rescale.decades == 1


def test_signal_quality_wanders_around_its_level():
    m = MeterModel(DayCycleFlow(40.0), seed=3)
    q = [m.sample(60.0 * i)["signal_pct"] for i in range(500)]
    assert len(set(q)) > 5 and min(q) >= 70 and max(q) <= 90
    assert sum(q) / len(q) == pytest.approx(80, abs=1.5)
    assert {MeterModel(DayCycleFlow(40.0), signal_noise=0.0).sample(60.0)["signal_pct"]} == {80}


def test_scenarios_share_one_syntax():
    assert str(Scenario.parse("reset")) == "reset:60" and Scenario.parse("reset:5").value == 5
    assert Scenario.parse("night-discharge:25").drain == 0.25
    for bad in ("discharge", "reset:0", "balanced:3", "slow", "swap:x", "reinjection-offline"):
        with pytest.raises(ValueError):
            Scenario.parse(bad)
    assert {k.value for k in ScenarioKind} >= {"balanced", "discharge", "frozen", "reset", "reverse", "offline"}


def test_sim_mqtt_refuses_a_modbus_only_scenario(tmp_path, capsys):
    config_path = tmp_path / "gshp.yaml"
    config_path.write_text(MIXED, encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["sim", "mqtt", "--config", str(config_path), "--scenario", "slow:100"])
    assert exc.value.code == 2
    assert "a Modbus answer, not something a DTU publishes" in capsys.readouterr().err


def test_an_offline_dtu_publishes_nothing(tmp_path):
    config, _ = _mixed_site(tmp_path)
    physics = site_physics(config.sites, Scenario.parse("offline"), datetime(2026, 7, 1, tzinfo=UTC), config.tz)
    assert physics.readings(datetime(2026, 7, 1, 0, 10, tzinfo=UTC), source="mqtt") == []
    assert [r.meter for r in physics.readings(datetime(2026, 7, 1, 0, 10, tzinfo=UTC))] == ["E1"]
