"""The Modbus example config stays valid and plannable, and the docs name every packaged profile."""

from __future__ import annotations

from pathlib import Path

from collector.modbus import PROFILES, plan_collection
from gshp.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_plans() -> None:
    config = load_config(ROOT / "deploy" / "examples" / "modbus.yaml")
    plan = plan_collection(config.gateways, config.sites)
    assert plan.meter_count == 5
    assert {g.gateway.transport.value for g in plan.gateways} == {"tcp", "rtu-over-tcp", "serial"}


def test_docs_describe_every_packaged_profile() -> None:
    text = (ROOT / "docs" / "modbus.md").read_text(encoding="utf-8")
    for name in PROFILES.names():
        assert f"`{name}`" in text, name
