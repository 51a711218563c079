"""What a user reads about a config: a did-you-mean for typos, every layer's problems in one run, limits
in words, secrets hidden but nothing else, only the sections a command reads, and warnings for a config
that is valid but most likely not meant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_core import ErrorDetails

from collector.problems import ZH_ERRORS, ZhEn, error_text
from gshp.commands import audit, backtest, backup, deadletter, notify, poll, replay, report, sim
from gshp.commands.configfile import SITES
from gshp.config import ConfigError, parse_config
from gshp.config.planning import planning_problems
from gshp.config.schema import config_warnings

BAD = """\
timezone: Asia/Shanghai
gateways:
  - {id: gw1, transport: tcp, host: 127.0.0.1, port: 5020, timout: 1s}
sites:
  - id: hehua-plaza
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {id: E1, role: extraction,  modbus: {gateway: gw2, unit: 1, profile: tuf2000}}
      - {id: R1, role: reinjecton, modbus: {gateway: gw1, unit: 2, profile: tuf2000m}}
api:
  tokens:
    - {token: "${BOARD_TOKEN}", role: viewer}
    - {token: "short", role: enforcment}
"""

GOOD = (BAD.replace("timout", "timeout").replace("gw2", "gw1").replace("reinjecton", "reinjection")
        .replace("unit: 1, profile: tuf2000}", "unit: 1, profile: tuf2000m}").split("api:")[0])


def problems(text: str, env: dict[str, str] | None = None, **kw: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gshp.yaml", env=env or {}, checks=(planning_problems,), **kw)  # type: ignore[arg-type]
    return {p.path: str(p) for p in err.value.problems}


def test_typos_get_a_did_you_mean() -> None:
    found = problems(BAD)
    assert "did you mean 'timeout'?" in found["gateways[0].timout"]
    assert "did you mean 'reinjection'?" in found["sites[0].meters[1].role"]
    assert "did you mean 'gw1'?" in found["sites[0].meters[0].modbus.gateway"]
    assert "did you mean 'tuf2000m'?" in found["sites[0].meters[0].modbus.profile"]
    assert "did you mean 'enforcement'?" in found["api.tokens[1].role"]


def test_every_layer_in_one_run_the_unknown_gateway_beside_the_unknown_profile() -> None:
    found = problems(BAD)
    assert {"sites[0].meters[0].modbus.gateway", "sites[0].meters[0].modbus.profile"} <= set(found)


def test_limits_in_words_and_an_unset_variable_reported_once() -> None:
    found = problems(BAD)
    assert found["api.tokens[1].token"].endswith("must be at least 16 characters long (got (hidden))")
    assert "items" not in "".join(found.values())
    assert "BOARD_TOKEN is not set" in found["api.tokens[0].token"]
    assert sum(1 for p in found if p == "api.tokens[0].token") == 1


def test_a_token_is_hidden_its_role_is_not() -> None:
    assert "(got 'enforcment')" in problems(BAD)["api.tokens[1].role"]


def test_a_command_reads_only_its_sections() -> None:
    text = BAD.replace("timout", "timeout").replace("gw2", "gw1").replace("unit: 1, profile: tuf2000}",
                                                                          "unit: 1, profile: tuf2000m}")
    text = text.replace("reinjecton", "reinjection")
    assert set(problems(text)) == {"api.tokens[0].token", "api.tokens[1].token", "api.tokens[1].role"}
    config = parse_config(text, "gshp.yaml", env={}, uses=SITES)  # `gshp poll` needs no API token
    assert [m.id for m in config.sites[0].meters] == ["E1", "R1"]
    assert config.api.tokens == ()  # the section it does not read is left at its defaults


def test_a_config_with_no_sites_or_storage_warns() -> None:
    config = parse_config("timezone: Asia/Shanghai\n", "gshp.yaml", env={})
    warnings = config_warnings(config)
    assert any("no sites" in w for w in warnings) and any("no `influx:` section" in w for w in warnings)
    (warning,) = config_warnings(parse_config("influx: {api: v1}\nsites: []\n", "g.yaml", env={}))
    assert warning.en == ("lists no sites: nothing is collected or evaluated (add them under `sites:`, "
                          "see deploy/examples/)")
    assert warning.zh.startswith("未列出任何站点")


def test_gshp_poll_runs_without_the_api_tokens_or_mqtt_environment(tmp_path: Path) -> None:
    config = tmp_path / "gshp.yaml"
    config.write_text(BAD.replace("timout", "timeout").replace("gw2", "gw1").replace("reinjecton", "reinjection")
                      .replace("unit: 1, profile: tuf2000}", "unit: 1, profile: tuf2000m}")
                      .replace("port: 5020", "port: 1")
                      + "mqtt: {host: 127.0.0.1, username: gshp, password: \"${MQTT_PASSWORD}\"}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("BOARD_TOKEN", "MQTT_PASSWORD")}
    done = subprocess.run([sys.executable, "-m", "gshp.cli", "poll", "--config", str(config), "--once"],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 1, done.stderr  # the meters were tried (and failed): not a config refusal (2)
    assert "BOARD_TOKEN" not in done.stderr and "MQTT_PASSWORD" not in done.stderr
    checked = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(config)],
                             capture_output=True, text=True, timeout=60, check=False, env=env)
    assert checked.returncode == 2  # the whole file is checked
    assert "BOARD_TOKEN" in checked.stderr and "MQTT_PASSWORD" in checked.stderr


PRODUCTION = Path(__file__).parents[2] / "deploy" / "examples" / "production-influx2.yaml"


@pytest.mark.parametrize(("uses", "needed"), [
    (poll.USES, set()),
    (sim.USES, set()),
    (deadletter.USES, set()),
    (audit.USES, set()),
    (replay.USES, {"influx.token"}),
    (report.USES, {"influx.token"}),
    (backtest.USES, {"influx.token"}),
    (backup.USES, {"influx.token"}),
    (notify.USES, {"api.tokens[0].token", "api.tokens[1].token"}),
    (None, {"influx.token", "mqtt.password", "api.tokens[0].token", "api.tokens[1].token"}),
], ids=["poll", "sim site", "deadletter", "audit head", "replay", "report", "backtest", "backup", "notify", "run"])
def test_each_command_needs_the_secrets_of_the_sections_it_reads_only(uses: frozenset[str] | None,
                                                                      needed: set[str]) -> None:
    text = PRODUCTION.read_text(encoding="utf-8")
    if not needed:
        assert parse_config(text, "gshp.yaml", env={}, uses=uses).sites
    else:
        assert set(problems(text, uses=uses)) == needed


def test_a_broken_section_a_command_does_not_read_leaves_its_meters_alone() -> None:
    text = PRODUCTION.read_text(encoding="utf-8").replace("port: 8883", "port: 88830")
    env = {"INFLUX_TOKEN": "t" * 20}
    assert "mqtt.port" in problems(text, env=env)
    config = parse_config(text, "gshp.yaml", env=env, uses=replay.USES)  # not "an MQTT meter needs `mqtt:`"
    assert config.mqtt is None and config.site("hehua-plaza").meters[1].mqtt is not None


def test_ids_written_as_keys_get_a_did_you_mean_in_both_languages() -> None:
    found = problems(GOOD + "rules:\n  districts:\n    宛城: {}\n  sites:\n    hehua-plaz: {}\n")
    assert found["rules.sites.hehua-plaz"].endswith(
        "`sites:` 下没有此站点（已有：hehua-plaza）；是否为 'hehua-plaza'？ / "
        "names no site under `sites:` (known: hehua-plaza); did you mean 'hehua-plaza'?")
    assert found["rules.districts.宛城"].endswith(
        "没有站点属于此辖区（已有：宛城区）；是否为 '宛城区'？ / names no district of any site (known: 宛城区); "
        "did you mean '宛城区'?")


def test_tokens_and_receivers_naming_unknown_districts_or_sites_in_the_same_run() -> None:
    found = problems(GOOD.replace("timeout: 1s", "timout: 1s") + """\
api:
  tokens:
    - {token: 0123456789abcdef, role: enforcement, districts: [宛城区, 宛城]}
notify:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/x", match: {site: [hehua-plaza, hehua-plaz]}}
  - {name: ding, type: webhook, url: "http://127.0.0.1:9/y", match: {district: [卧龙区]}}
""")
    assert set(found) == {"gateways[0].timout", "api.tokens[0].districts[1]", "notify[0].match.site[1]",
                          "notify[1].match.district[0]"}
    assert found["api.tokens[0].districts[1]"].startswith(
        "gshp.yaml:13: api.tokens[0].districts[1]: 没有站点属于此辖区")
    assert "did you mean '宛城区'? (got '宛城')" in found["api.tokens[0].districts[1]"]
    assert "did you mean 'hehua-plaza'? (got 'hehua-plaz')" in found["notify[0].match.site[1]"]
    assert "(known: 宛城区) (got '卧龙区')" in found["notify[1].match.district[0]"]  # nothing close: no guess


def test_pydantic_errors_are_translated_by_type_and_an_unknown_type_stays_english() -> None:
    assert set(ZH_ERRORS) == {
        "missing", "extra_forbidden", "literal_error", "enum", "union_tag_invalid", "union_tag_not_found",
        "greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of", "finite_number",
        "string_too_short", "string_too_long", "too_short", "too_long", "string_pattern_mismatch", "string_type",
        "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "bool_type", "bool_parsing",
        "list_type", "tuple_type", "set_type", "dict_type", "model_type", "model_attributes_type", "datetime_type",
        "datetime_parsing", "datetime_from_date_parsing", "date_type", "date_parsing", "date_from_datetime_parsing",
        "path_type"}
    above: ErrorDetails = {"type": "greater_than", "loc": ("x",), "msg": "Input should be greater than 0",
                           "input": -3, "ctx": {"gt": 0.0}}
    assert error_text(above) == "须大于 0 / Input should be greater than 0"
    one_of: ErrorDetails = {"type": "literal_error", "loc": ("x",), "msg": "Input should be 'a' or 'b'",
                            "input": "c", "ctx": {"expected": "'a' or 'b'"}}
    assert error_text(one_of, "must be 'a' or 'b'") == "须为 'a'、'b' 之一 / must be 'a' or 'b'"
    uuid: ErrorDetails = {"type": "uuid_parsing", "loc": ("x",), "msg": "Input should be a valid UUID", "input": "c"}
    assert error_text(uuid) == "Input should be a valid UUID" and not isinstance(error_text(uuid), ZhEn)
    raised = ZhEn("须为正", "must be positive")
    mine: ErrorDetails = {"type": "value_error", "loc": ("x",), "msg": "Value error, " + raised, "input": -1,
                          "ctx": {"error": ValueError(raised)}}
    assert error_text(mine) is raised


def test_every_kind_of_problem_reads_chinese_first_then_english() -> None:
    found = problems(BAD)
    assert found["sites[0].meters[1].role"] == (
        "gshp.yaml:10: sites[0].meters[1].role: 须为 'extraction'、'reinjection'、'discharge' 之一；"
        "是否为 'reinjection'？（填写值：'reinjecton'）/ Input should be 'extraction', 'reinjection' or 'discharge'; "
        "did you mean 'reinjection'? (got 'reinjecton')")
    assert found["api.tokens[1].token"].endswith(
        ": 至少须有 16 个字符（填写值已隐藏）/ must be at least 16 characters long (got (hidden))")
    assert found["gateways[0].timout"].endswith(
        ": 不是已知的设置项；是否为 'timeout'？（填写值：'1s'）/ is not a known setting; did you mean 'timeout'? "
        "(got '1s')")
    assert ": 环境变量 BOARD_TOKEN 未设置" in found["api.tokens[0].token"]
