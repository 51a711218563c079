"""The HJ 212 and SZY 206 example configs load, plan, and build their listeners; each example meter is
fed by the frames its simulated logger encodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.hj212 import Hj212Protocol
from collector.szy206 import Szy206Protocol
from collector.telemetry import TelemetryServer
from gshp.clock import SystemClock
from gshp.config import load_config
from gshp.sources import hj212_source, szy206_source
from simulators.city import site_physics
from simulators.flow import Scenario
from simulators.hj212 import hj212_stations
from simulators.szy206 import szy206_terminals
from tests.helpers import in_english

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def test_the_hj212_example_feeds_each_of_its_meters(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "hj212.yaml", env={}).model_copy(update={"state_dir": tmp_path})
    source = hj212_source(config, SystemClock())
    assert isinstance(source, TelemetryServer) and isinstance(source.protocol, Hj212Protocol)
    assert config.hj212 is not None and config.hj212.listen == "0.0.0.0:9212"
    physics = site_physics(config.sites, Scenario(), NOW - timedelta(minutes=5), config.tz)
    seen = set()
    stations = hj212_stations(config.sites, config.hj212.passwords(), config.tz, config.hj212.minute_interval)
    for minute in range(3):
        t = NOW - timedelta(minutes=2 - minute)
        for station in stations:
            for upload in station.uploads(physics.readings(t), t):
                d = source.protocol.decode(upload.frame, NOW.timestamp() + 1)
                assert d.reject is None and d.answer is not None
                seen |= {(r.meter, r.total_m3 is not None, r.volume_m3 is not None) for r in d.readings}
    assert seen == {("E1", True, False), ("R1", False, True)}


def test_the_szy206_example_feeds_each_of_its_meters(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "szy206.yaml", env={}).model_copy(update={"state_dir": tmp_path})
    source = szy206_source(config, SystemClock())
    assert isinstance(source, TelemetryServer) and isinstance(source.protocol, Szy206Protocol)
    assert config.szy206 is not None
    physics = site_physics(config.sites, Scenario(), NOW - timedelta(minutes=5), config.tz)
    (terminal,) = szy206_terminals(config.sites, config.tz, config.szy206.flow_unit)
    (upload,) = terminal.uploads(physics.readings(NOW), NOW)
    d = source.protocol.decode(upload.frame, NOW.timestamp() + 1)
    assert d.reject is None and d.answer is not None
    assert {r.meter for r in d.readings} == {"E1", "R1"}


def test_config_errors_of_telemetry_meters_name_the_line_and_the_fix() -> None:
    from gshp.config import ConfigError
    from gshp.config.loader import parse_config

    text = """\
timezone: Asia/Shanghai
hj212:
  listen: 0.0.0.0:9212
  stations:
    - {mn: "MN1", password: "secretpw"}
sites:
  - id: s1
    name: n
    district: d
    meters:
      - {id: E1, role: extraction, hj212: {mn: "MN2"}}
      - {id: R1, role: reinjection, szy206: {division: "41130", station: 1}}
      - {id: R2, role: reinjection, hj212: {mn: "MN1", volume: w00000-Cou, total: w00001-Rtd}}
      - {id: R3, role: reinjection, szy206: {division: "411302", station: 1}}
"""
    try:
        parse_config(text, "f.yaml", env={})
    except ConfigError as err:
        lines = "\n".join(in_english(p) for p in err.problems)
        assert "secretpw" not in str(err)
    else:
        raise AssertionError("the config must be refused")
    assert "f.yaml:11: sites[0].meters[0].hj212.mn: MN 'MN2' is not under `hj212: stations:`" in lines
    assert "f.yaml:12: sites[0].meters[1].szy206.division: must be six digits" in lines
    assert "f.yaml:13: sites[0].meters[2].hj212: give either `total:` (a totalizer) or `volume:`" in lines
    assert "f.yaml:14: sites[0].meters[3].szy206: an SZY 206 meter needs the `szy206:` listener section" in lines
    assert "secretpw" not in lines
