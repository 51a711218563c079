"""What a user reads about a config: a did-you-mean for typos, every layer's problems in one run, limits
in words, secrets hidden but nothing else, only the sections a command reads, and warnings for a config
that is valid but most likely not meant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def problems(text: str, **kw: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gshp.yaml", env={}, checks=(planning_problems,), **kw)  # type: ignore[arg-type]
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
    assert config_warnings(parse_config("influx: {api: v1}\nsites: []\n", "g.yaml", env={})) == [
        "lists no sites: nothing is collected or evaluated (add them under `sites:`, see deploy/examples/)"]


def test_gshp_poll_runs_without_the_api_tokens_environment(tmp_path: Path) -> None:
    config = tmp_path / "gshp.yaml"
    config.write_text(BAD.replace("timout", "timeout").replace("gw2", "gw1").replace("reinjecton", "reinjection")
                      .replace("unit: 1, profile: tuf2000}", "unit: 1, profile: tuf2000m}")
                      .replace("port: 5020", "port: 1"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gshp.cli", "poll", "--config", str(config), "--once"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr  # the meters were tried (and failed): not a config refusal (2)
    assert "BOARD_TOKEN" not in done.stderr
    checked = subprocess.run([sys.executable, "-m", "gshp.cli", "check-config", str(config)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 2 and "BOARD_TOKEN" in checked.stderr  # the whole file is checked
