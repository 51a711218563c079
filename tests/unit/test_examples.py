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


PERMITS = Path(__file__).parent.parent.parent / "deploy" / "examples" / "permits.yaml"


def test_the_permits_example_is_valid_and_the_sealed_well_must_stay_dry() -> None:
    config = load_config(PERMITS, env={})
    hehua, well = config.site("hehua-plaza"), config.site("hotel-well")
    assert hehua.permit is not None and well.permit is not None
    assert (hehua.permit.annual_quota_m3, hehua.permit.max_rate_m3h, hehua.permit.wells.reinjection) == (300000, 150, 4)
    assert not hehua.permit.status.must_be_dry and well.permit.status.must_be_dry
    record = hehua.meter("E1").record
    assert record is not None and record.calibration is not None
    assert record.calibration.next_due.isoformat() == "2026-06-01"
    assert config.rules.compliance == RulesSettings().compliance  # the example restates the defaults
    engine = Engine(config.sites, config.rules, config.tz)
    assert engine.compliance("hotel-well")["permit"]["status"] == "sealed"
