"""Config loading: every class of error is reported with file:line, field path and value, all at once."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gshp.config import Config, ConfigError, load_config, parse_config
from gshp.config.loader import _PATTERN_WORDS
from gshp.config.planning import planning_problems
from tests.helpers import in_english

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
    return [in_english(p) for p in info.value.problems]


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


def test_site_needs_both_roles_and_unique_meter_ids_each_at_its_own_node() -> None:
    text = GOOD.replace("{id: R1, role: reinjection", "{id: E1, role: extraction")
    assert problems(text) == [
        "city.yaml:11: sites[0].meters: needs at least one 'reinjection' meter",
        "city.yaml:13: sites[0].meters[1].id: meter id 'E1' appears twice (ids are unique within a site) (got 'E1')",
    ]


def test_a_bad_meter_does_not_also_count_as_a_missing_role() -> None:
    (msg,) = problems(GOOD.replace("role: extraction", "role: extractor"))
    assert msg.startswith("city.yaml:12: sites[0].meters[0].role:")


def test_unknown_gateway_and_duplicate_site_ids_are_cross_checked() -> None:
    text = GOOD.replace("gateway: gw-hehua, unit", "gateway: gw-nowhere, unit")
    (msg,) = problems(text)
    assert msg.startswith("city.yaml:12: sites[0].meters[0].modbus.gateway: names no gateway")
    assert "known: gw-hehua" in msg and "(got 'gw-nowhere')" in msg
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={"INFLUX_TOKEN": "x"})
    assert str(info.value.problems[0]).startswith("city.yaml:12: sites[0].meters[0].modbus.gateway: "
                                                  "`gateways:` 下没有此网关（已有：gw-hehua）（填写值：'gw-nowhere'）/ "
                                                  "names no gateway")


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
    root = Path(__file__).parents[2]
    examples = sorted(root.joinpath("deploy", "examples").glob("*.yaml"))
    assert examples, "deploy/examples/ must hold example configs"
    env = {"INFLUX_TOKEN": "x" * 20, "MQTT_PASSWORD": "p", "BOARD_TOKEN": "b" * 20, "ENFORCEMENT_TOKEN": "e" * 20,
           "PATH": "/usr/bin:/bin"}
    for f in examples:  # from the checkout's root, as their relative paths are written
        r = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(f)], capture_output=True,
                           text=True, env=env, cwd=root)
        assert r.returncode == 0, f"{f}: {r.stderr}"


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")


# One file with problems of every layer: YAML (a key twice), the environment, single settings (a bad
# enum, a number out of range, a HOST:PORT), a site's meters, checks across sections (gateway ids, a
# gateway that does not exist, a rule override next to a bad base rule) and the collector's planning
# (a register profile and a payload profile that do not exist, two meters on one unit, a shared topic), and
# a receiver's setting misspelt, one not true or false, a bad URL and a missing name.
MIXED = """\
timezone: Asia/Shanghai
state_dir: /tmp/gshp
influx: {url: http://127.0.0.1:8086, api: v1, bucket: gshp, password: "${INFLUX_PASSWORD}"}
mqtt: {host: 127.0.0.1, port: 1883}
gateways:
  - {id: gw-a, host: 127.0.0.1, port: 502}
  - {id: gw-a, host: 127.0.0.1, port: 503}
  - {id: gw-b, host: 127.0.0.1, port: 70000}
sites:
  - id: one
    name: 一号
    district: 宛城区
    meters:
      - {id: E1, role: extraction, modbus: {gateway: gw-nowhere, unit: 1}}
      - {id: R1, role: reinjection, modbus: {gateway: gw-a, unit: 2, profile: no-such-registers}}
      - {id: E1, role: extraction, modbus: {gateway: gw-a, unit: 2}}
  - id: two
    name: 二号
    district: 宛城区
    meters:
      - {id: E1, role: extraction, mqtt: {topic: dtu/2/up, profile: no-such-payload}}
  - id: three
    name: 三号
    district: 卧龙区
    district: 高新区
    meters:
      - {id: E1, role: extractor, mqtt: {topic: dtu/3/up}}
      - {id: R1, role: reinjection, mqtt: {topic: dtu/3/up}}
rules:
  quality: {silent_after: soon}
  districts:
    宛城区: {quality: {running_m3h: -1}}
api: {listen: localhost}
notify:
  - {name: hook, type: webhook, url: "ftp://x", timout: 5s, send_resolved: maybe}
  - {type: webhook, url: "http://127.0.0.1:9/x"}
"""

MIXED_EXPECTED = [  # (line, path, start of the message, value shown)
    (3, "influx.password", "environment variable INFLUX_PASSWORD is not set", None),
    (7, "gateways[1].id", "gateway id 'gw-a' appears twice", "'gw-a'"),
    (8, "gateways[2].port", "Input should be less than or equal to 65535", "70000"),
    (14, "sites[0].meters[0].modbus.gateway", "names no gateway under `gateways:` (known: gw-a, gw-b)",
     "'gw-nowhere'"),
    (15, "sites[0].meters[1].modbus.profile", "unknown register profile 'no-such-registers' (known: ",
     "'no-such-registers'"),
    (16, "sites[0].meters[2].id", "meter id 'E1' appears twice (ids are unique within a site)", "'E1'"),
    (16, "sites[0].meters[2].modbus.unit", "unit 2 on gateway gw-a is also one/R1", "2"),
    (20, "sites[1].meters", "needs at least one 'reinjection' meter", None),
    (21, "sites[1].meters[0].mqtt.profile", "is not a known payload profile (known: ", "'no-such-payload'"),
    (25, "sites[2].district", "appears twice in the same mapping", None),
    (27, "sites[2].meters[0].mqtt.topic", "topic 'dtu/3/up' is shared by three/E1, three/R1, but profile "
     "'dtu-json' cannot say which meter a message is for", "'dtu/3/up'"),
    (27, "sites[2].meters[0].role", "Input should be 'extraction', 'reinjection' or 'discharge'", "'extractor'"),
    (30, "rules.quality.silent_after", "'soon' is not a duration", "'soon'"),
    (32, "rules.districts.宛城区.quality.running_m3h", "Input should be greater than or equal to 0", "-1"),
    (33, "api.listen", "must be HOST:PORT, e.g. 127.0.0.1:8080", "'localhost'"),
    (35, "notify[0].send_resolved", "Input should be a valid boolean, unable to interpret input", "'maybe'"),
    (35, "notify[0].timout", "is not a known setting; did you mean 'timeout'?", "'5s'"),
    (35, "notify[0].url", "must be an http:// or https:// URL", "'ftp://x'"),
    (36, "notify[1].name", "is required", None),
]


_HAN = re.compile("[\u4e00-\u9fff]")


def _assert_mixed(lines: list[str], file: str, *, bilingual: bool = False) -> None:
    """Each expected problem once at its line and setting; `bilingual`: as `中文 / English`, the Chinese (with
    the value given) first, then the English as it has always read."""
    for line, path, message, value in MIXED_EXPECTED:
        where = f"{file}:{line}: {path}: "
        head = f"{where}…/ {message}" if bilingual else where + message
        found = [m for m in lines if m.startswith(where) and (f"/ {message}" in m if bilingual else
                                                              m.startswith(head))]
        assert len(found) == 1, f"{head!r} not reported once in:\n" + "\n".join(lines)
        if bilingual:
            chinese = found[0][len(where):found[0].index(f"/ {message}")]
            assert _HAN.search(chinese), found[0]
            assert value is None or chinese.endswith(f"（填写值：{value}）"), found[0]
        if value is None:
            assert "(got " not in found[0], found[0]
        else:
            assert found[0].endswith(f"(got {value})"), found[0]
    assert len(lines) == len(MIXED_EXPECTED), "\n".join(lines)


def test_every_layer_reports_in_one_run_at_the_offending_node() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MIXED, "mixed.yaml", env={}, checks=(planning_problems,))
    _assert_mixed([in_english(p) for p in info.value.problems], "mixed.yaml")


def test_check_config_cli_reports_every_layer_in_both_languages_and_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "mixed.yaml"
    f.write_text(MIXED, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(f)], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    *lines, summary = r.stderr.splitlines()
    _assert_mixed(lines, str(f), bilingual=True)
    n = len(MIXED_EXPECTED)
    assert summary == f"{f} 中有 {n} 个问题 / {n} problem(s) in {f}"


def test_planning_checks_pass_a_good_file_and_are_not_part_of_every_load() -> None:
    env = {"INFLUX_TOKEN": "t0ps3cret"}
    parse_config(GOOD, "city.yaml", env=env, checks=(planning_problems,))
    unknown = GOOD.replace("profile: tuf2000m", "profile: tuf9000")
    parse_config(unknown, "city.yaml", env=env)  # `gshp poll --profiles DIR` may bring the profile
    with pytest.raises(ConfigError) as info:
        parse_config(unknown, "city.yaml", env=env, checks=(planning_problems,))
    (msg,) = [in_english(p) for p in info.value.problems]
    assert msg.startswith("city.yaml:12: sites[0].meters[0].modbus.profile: unknown register profile 'tuf9000'")


def test_planning_checks_report_a_missing_profile_directory() -> None:
    text = GOOD.replace('password: "${MQTT_PASSWORD:-}"}',
                        'password: "${MQTT_PASSWORD:-}", profiles_dir: /nonexistent}')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={"INFLUX_TOKEN": "x"}, checks=(planning_problems,))
    (msg,) = [in_english(p) for p in info.value.problems]
    assert msg.startswith("city.yaml:4: mqtt.profiles_dir:") and "/nonexistent" in msg


def test_an_error_in_the_base_rules_does_not_hide_the_overrides() -> None:
    text = GOOD + ("rules:\n  gap_tolerance: later\n  sites:\n    hehua-plaza: {counters: {jump_margin: 0.5}}\n"
                   "    nowhere: {}\n")
    out = problems(text)
    assert any(m.startswith("city.yaml:16: rules.gap_tolerance:") for m in out), out
    assert any(m.startswith("city.yaml:18: rules.sites.hehua-plaza.counters.jump_margin: Input should be greater "
                            "than or equal to 1") for m in out), out
    assert any(m.startswith("city.yaml:19: rules.sites.nowhere: names no site") for m in out), out
    assert len(out) == 3


def test_listen_port_out_of_range() -> None:
    (msg,) = problems(GOOD.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:99999"))
    assert msg == ("city.yaml:14: api.listen: must be HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:8080 "
                   "(got '127.0.0.1:99999')")


def _patterns(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    out: set[str] = set()
    if model in seen:
        return out
    seen.add(model)

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_patterns(annotation, seen))
        for arg in get_args(annotation):
            if isinstance(arg, FieldInfo):  # tuple[Annotated[str, Field(pattern=…)], ...]
                out.update(m.pattern for m in arg.metadata if getattr(m, "pattern", None))
            walk(arg)

    for info in model.model_fields.values():
        out.update(m.pattern for m in info.metadata if getattr(m, "pattern", None))
        walk(info.annotation)
        walk(info.rebuild_annotation())
    return out


def test_every_pattern_of_the_schema_is_explained_in_words() -> None:
    patterns = _patterns(Config, set())
    assert len(patterns) >= 9  # api.listen, influx.url, notify names and addresses, …
    assert patterns <= set(_PATTERN_WORDS), patterns - set(_PATTERN_WORDS)


def test_checks_over_the_valid_parts_of_any_broken_file_never_fail() -> None:
    """Seeded mutations (wrong types, empty values, lists for mappings …) of both example files: each
    gives a Config or a ConfigError; no check trips over what was salvaged."""
    rnd = random.Random(7)
    values: list[Any] = [None, 0, -1, 70000, "", "x y", "gw-a", "E1", "extraction", [], {}, [1], {"a": 1}, True]
    for base in (GOOD, MIXED):
        original = yaml.safe_load(base.replace("${", "${X:-").replace(":-X:-", ":-"))
        paths = list(_data_paths(original))
        for _ in range(200):
            data = copy.deepcopy(original)
            for _ in range(rnd.randint(1, 4)):
                *parent, last = rnd.choice(paths)
                with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier change removed it
                    node = data
                    for p in parent:
                        node = node[p]
                    node[last] = copy.deepcopy(rnd.choice(values))
            try:
                parse_config(yaml.safe_dump(data, allow_unicode=True), "f.yaml", env={}, checks=(planning_problems,))
            except ConfigError as err:
                assert all("further checks" not in p.message for p in err.problems), err


def _data_paths(data: Any, path: tuple[Any, ...] = ()) -> Any:
    if path:
        yield path
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        yield from _data_paths(v, (*path, k))
