from datetime import timedelta

import pytest

from gshp.config import ConfigError, parse_config
from rules.settings import RulesSettings

BASE = """
timezone: Asia/Shanghai
sites:
  - id: hehua
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {id: E1, role: extraction, accuracy_pct: 1.0}
      - {id: R1, role: reinjection, accuracy_pct: 2.0}
"""


def test_defaults_need_no_rules_section():
    config = parse_config(BASE, env={})
    assert config.rules == RulesSettings()
    names = [w.name for w in config.rules.balance.windows]
    assert names == ["gross", "hour", "shift", "day"]


def test_district_then_site_overrides_merge_deeply():
    text = BASE + """
rules:
  quality: {offline_after: 20m}
  districts:
    宛城区: {quality: {offline_after: 30m, silent_after: 3m}}
  sites:
    hehua: {quality: {offline_after: 1h}}
"""
    rs = parse_config(text, env={}).rules.resolve("hehua", "宛城区")
    assert rs.quality.offline_after == timedelta(hours=1)
    assert rs.quality.silent_after == timedelta(minutes=3)
    assert rs.balance == RulesSettings().balance


def test_a_site_can_replace_its_balance_windows():
    text = BASE + """
rules:
  sites:
    hehua:
      balance:
        windows:
          - {name: quick, window: 30m, threshold_pct: 20, for: 5m}
"""
    rs = parse_config(text, env={}).rules.resolve("hehua")
    assert [w.name for w in rs.balance.windows] == ["quick"]
    assert rs.balance.windows[0].hold == timedelta(minutes=5)


def test_bad_override_is_reported_with_file_line_and_path():
    text = BASE + """
rules:
  sites:
    hehua:
      quality:
        offline_after: soon
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.yaml", env={})
    (p,) = err.value.problems
    assert p.line == 15
    assert p.path == "rules.sites.hehua.quality.offline_after"
    assert "duration" in p.message


def test_overrides_for_unknown_sites_and_districts_name_the_known_ones():
    text = BASE + """
rules:
  districts: {卧龙区: {}}
  sites: {nowhere: {}}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    messages = [p.message for p in err.value.problems]
    assert any("known: 宛城区" in m for m in messages)
    assert any("known: hehua" in m for m in messages)


def test_a_window_without_any_threshold_is_refused_with_the_fix():
    text = BASE + """
rules:
  balance:
    windows: [{name: w, window: 1h}]
"""
    with pytest.raises(ConfigError, match="give threshold_pct or accuracy_factor"):
        parse_config(text, env={})


def test_evaluation_cadence_must_divide_the_hour():
    with pytest.raises(ConfigError, match="dividing 1h"):
        parse_config(BASE + "rules: {evaluate_every: 7m}\n", env={})


def test_maintenance_window_needs_an_offset_and_order():
    text = BASE + """
rules:
  sites:
    hehua:
      maintenance:
        - {from: "2026-05-05T10:00:00", to: "2026-05-05T08:00:00", reason: 回扬, volume_cap_m3: 50}
"""
    with pytest.raises(ConfigError, match="UTC offset"):
        parse_config(text, env={})


def test_unknown_rule_setting_is_named():
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "rules: {balanse: {}}\n", env={})
    assert err.value.problems[0].path == "rules.balanse"
