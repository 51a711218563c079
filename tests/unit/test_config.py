"""Config loading: every class of error is reported with file:line, field path and value, all at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gshp.config import ConfigError, load_config, parse_config

GOOD = """\
timezone: Asia/Shanghai
state_dir: /tmp/gshp
influx: {url: http://127.0.0.1:8086, api: v2, org: water-bureau, bucket: gshp, token: "${INFLUX_TOKEN}"}
mqtt:   {host: 127.0.0.1, port: 1883, username: "${MQTT_USER:-collector}", password: "${MQTT_PASSWORD:-}"}
gateways:
  - {id: gw-hehua, transport: tcp, host: 127.0.0.1, port: 502, interval: 10s, timeout: 1s}
sites:
  - id: hehua-plaza
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {id: E1, role: extraction,  accuracy_pct: 1.0, modbus: {gateway: gw-hehua, unit: 1, profile: tuf2000m}}
      - {id: R1, role: reinjection, accuracy_pct: 1.0, mqtt: {topic: dtu/860012345/up, profile: dtu-json}}
api:    {listen: 127.0.0.1:8080}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={"INFLUX_TOKEN": "t0ps3cret"} if env is None else env)
    return [str(p) for p in info.value.problems]


def test_the_design_example_loads_with_interpolated_secrets_and_defaults() -> None:
    config = parse_config(GOOD, "city.yaml", env={"INFLUX_TOKEN": "t0ps3cret"})
    assert config.influx.token is not None and config.influx.token.get_secret_value() == "t0ps3cret"
    assert config.mqtt is not None and config.mqtt.username == "collector"
    assert config.sites[0].name == "向阳荷花广场"
    assert config.gateways[0].interval.total_seconds() == 10
    assert config.site("hehua-plaza").meter("R1").source == "mqtt"
    assert "t0ps3cret" not in repr(config)


def test_missing_environment_variable_names_the_variable_and_the_fix() -> None:
    (msg,) = problems(GOOD, env={})
    assert msg.startswith("city.yaml:3: influx.token:")
    assert "INFLUX_TOKEN is not set" in msg and "${INFLUX_TOKEN:-default}" in msg


def test_every_error_is_reported_at_once_with_line_path_and_value() -> None:
    text = GOOD.replace("Asia/Shanghai", "Mars/Olympus").replace("role: extraction", "role: extractor") \
        .replace("port: 502", "port: 70000").replace("interval: 10s", "interval: soon")
    out = problems(text)
    assert "city.yaml:1: timezone: is not an IANA time zone name (e.g. Asia/Shanghai, UTC) (got 'Mars/Olympus')" in out
    assert any(m.startswith("city.yaml:6: gateways[0].port:") and "70000" in m for m in out)
    assert any(m.startswith("city.yaml:6: gateways[0].interval:") and "'soon' is not a duration" in m for m in out)
    assert any(m.startswith("city.yaml:12: sites[0].meters[0].role:") and "'extraction', 'reinjection' or "
               "'discharge'" in m and "(got 'extractor')" in m for m in out)
    assert len(out) == 4


def test_unknown_key_is_reported_as_a_probable_typo() -> None:
    (msg,) = problems(GOOD.replace("district: 宛城区", "district: 宛城区\n    distrct: x"))
    assert msg.startswith("city.yaml:11: sites[0].distrct: is not a known setting")


def test_missing_required_field() -> None:
    (msg,) = problems(GOOD.replace("    district: 宛城区\n", ""))
    assert msg.startswith("city.yaml:8: sites[0].district: is required")


def test_site_needs_both_roles_and_unique_meter_ids() -> None:
    text = GOOD.replace("{id: R1, role: reinjection", "{id: E1, role: extraction")
    (msg,) = problems(text)
    assert msg.startswith("city.yaml:8: sites[0]:")
    assert "meter id 'E1' appears twice" in msg and "needs at least one 'reinjection' meter" in msg


def test_unknown_gateway_and_duplicate_site_ids_are_cross_checked() -> None:
    text = GOOD.replace("gateway: gw-hehua, unit", "gateway: gw-nowhere, unit")
    (msg,) = problems(text)
    assert msg.startswith("city.yaml:12: sites[0].meters[0].modbus.gateway: names no gateway")
    assert "known: gw-hehua" in msg and "(got 'gw-nowhere')" in msg


def test_mqtt_meter_needs_a_broker_section() -> None:
    (msg,) = problems(GOOD.replace('mqtt:   {host: 127.0.0.1, port: 1883, username: "${MQTT_USER:-collector}", '
                                   'password: "${MQTT_PASSWORD:-}"}\n', ""))
    assert "sites[0].meters[1].mqtt: an MQTT meter needs the `mqtt:` broker section" in msg


def test_district_with_a_newline_is_refused_because_it_becomes_a_tag() -> None:
    (msg,) = problems(GOOD.replace("district: 宛城区", 'district: "宛城区\\n北"'))
    assert "sites[0].district: must not contain control characters" in msg


def test_secrets_are_never_echoed_in_errors() -> None:
    out = problems(GOOD.replace('token: "${INFLUX_TOKEN}"', "token: [hunter2]"))
    assert out and all("hunter2" not in m for m in out)
    assert any("influx.token" in m and "(hidden)" in m for m in out)


def test_invalid_yaml_and_empty_file() -> None:
    (msg,) = problems("sites: [\n  - {id: a,\n")
    assert msg.startswith("city.yaml:") and "is not valid YAML" in msg
    assert problems("") == ["city.yaml: is empty: see deploy/examples/ for a starting point"]


def test_duplicate_keys_are_an_error() -> None:
    (msg,) = problems(GOOD + "timezone: UTC\n")
    assert msg == "city.yaml:15: timezone: appears twice in the same mapping"


def test_dollar_dollar_escapes_a_literal_dollar() -> None:
    config = parse_config(GOOD.replace("name: 向阳荷花广场", "name: 'A$$B'"), env={"INFLUX_TOKEN": "x"})
    assert config.sites[0].name == "A$B"


def test_check_config_cli_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(GOOD.replace("Asia/Shanghai", "Nowhere").replace("role: reinjection", "role: x"), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(f)], capture_output=True, text=True,
                       env={"INFLUX_TOKEN": "x", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert f"{f}:1: timezone:" in r.stderr and f"{f}:13: sites[0].meters[1].role:" in r.stderr
    assert "2 problem(s)" in r.stderr


def test_check_config_cli_accepts_the_shipped_examples() -> None:
    examples = sorted(Path(__file__).parents[2].joinpath("deploy", "examples").glob("*.yaml"))
    assert examples, "deploy/examples/ must hold example configs"
    env = {"INFLUX_TOKEN": "x" * 20, "MQTT_PASSWORD": "p", "BOARD_TOKEN": "b" * 20, "ENFORCEMENT_TOKEN": "e" * 20,
           "PATH": "/usr/bin:/bin"}
    for f in examples:
        r = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(f)], capture_output=True,
                           text=True, env=env)
        assert r.returncode == 0, f"{f}: {r.stderr}"


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")
