from pathlib import Path

from gshp.config import load_config
from rules.engine import Engine
from rules.settings import RulesSettings

EXAMPLE = Path(__file__).parent.parent.parent / "deploy" / "examples" / "rules.yaml"


def test_the_rules_example_is_valid_and_restates_the_defaults():
    config = load_config(EXAMPLE, env={})
    defaults = RulesSettings()
    assert config.rules.balance == defaults.balance
    assert config.rules.sequential == defaults.sequential
    site = config.site("hehua-plaza")
    resolved = config.rules.resolve(site.id, site.district)
    assert resolved.quality.offline_after.total_seconds() == 1200
    assert [m.reason for m in resolved.maintenance] == ["回扬 R1"]
    engine = Engine(config.sites, config.rules, config.tz)
    assert len(engine.maintenance("hehua-plaza")) == 1
