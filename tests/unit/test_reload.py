"""Config reload, the parts that need no process: the engine keeps what it learnt, the diff names what
changed, restart-only settings keep their running values, receivers are swapped, the units reload."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from collector.model import Site
from gshp.config import Config
from gshp.reload import EarlyHangups, config_changes, keep_restart_only
from rules.engine import Engine, EngineError
from rules.notify import Notifier
from rules.notify.settings import WebhookSettings
from rules.settings import RulesSettings
from tests.unit.conftest import T0, flow, run

REPO = Path(__file__).resolve().parents[2]


def _site(site_id: str, *meters: str) -> Site:
    roles = {"E": "extraction", "R": "reinjection"}
    return Site.model_validate({"id": site_id, "name": site_id, "district": "宛城区",
                                "meters": [{"id": m, "role": roles[m[0]]} for m in meters]})


def test_the_engine_keeps_windows_and_alerts_of_kept_sites_across_a_reconfigure(site: Site) -> None:
    engine = Engine([site], RulesSettings(), UTC)
    events = run(engine, list(flow(90, r_m3h=90.0)), T0 + timedelta(minutes=90))
    assert any(e.rule == "balance_gross" and e.state == "firing" for e in events)
    states, balance = engine.alert_states("hehua"), engine.balance("hehua", timedelta(minutes=15))

    engine.reconfigure([site, _site("new", "E1", "R1")], RulesSettings())
    assert engine.alert_states("hehua") == states and engine.balance("hehua", timedelta(minutes=15)) == balance
    unknown = engine.stats.unknown
    engine.ingest(list(flow(4, r_m3h=90.0, start=T0 + timedelta(minutes=91), totals={"E1": 1182.0, "R1": 2136.5})))
    assert engine.stats.unknown == unknown  # the kept site takes its readings on
    # the firing alert goes on (no second "firing" transition) and the added site is evaluated
    later = engine.evaluate(T0 + timedelta(minutes=95))
    assert not [e for e in later if e.site == "hehua" and e.state == "firing"]
    engine.ingest([replace(r, site="new") for r in flow(20, start=T0 + timedelta(minutes=91))])
    engine.evaluate(T0 + timedelta(minutes=115))
    assert engine.balance("new", timedelta(minutes=15)) is not None

    engine.reconfigure([_site("new", "E1", "R1")], RulesSettings())
    engine.ingest(list(flow(1, start=T0 + timedelta(minutes=120))))
    assert engine.stats.unknown == unknown + 4  # a removed site's readings are unknown


def test_a_changed_site_keeps_its_unchanged_meters_and_starts_the_new_ones(site: Site) -> None:
    engine = Engine([_site("hehua", "E1", "R1")], RulesSettings(), UTC)
    run(engine, list(flow(60)), T0 + timedelta(minutes=60))
    span = (T0, T0 + timedelta(minutes=60))
    before = engine.intervals("hehua", *span)
    engine.reconfigure([_site("hehua", "E1", "R1", "R2")], RulesSettings())
    after = engine.intervals("hehua", *span)
    assert after["E1"] == before["E1"] and after["R1"] == before["R1"] and sum(before["E1"].volumes) > 0
    assert not any(after["R2"].known)


def test_the_evaluation_interval_needs_a_restart(site: Site) -> None:
    engine = Engine([site], RulesSettings(), UTC)
    with pytest.raises(EngineError, match="evaluate_every"):
        engine.reconfigure([site], RulesSettings(evaluate_every=timedelta(minutes=1)))


def _config(**extra: object) -> Config:
    base: dict[str, object] = {"state_dir": "/tmp/gshp-state", "sites": [
        {"id": "s1", "name": "站点", "district": "宛城区", "meters": [{"id": "E1", "role": "extraction"},
                                                                  {"id": "R1", "role": "reinjection"}]}],
        "api": {"tokens": [{"token": "t" * 24, "role": "viewer", "name": "bureau"}]}}
    return Config.model_validate({**base, **extra})


def test_the_diff_names_sites_meters_tokens_and_receivers_never_secrets() -> None:
    old = _config(notify=[{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}])
    new = _config(sites=[
        {"id": "s1", "name": "站点", "district": "宛城区", "meters": [{"id": "E1", "role": "extraction"},
                                                                  {"id": "R2", "role": "reinjection"}]},
        {"id": "s2", "name": "二", "district": "宛城区", "meters": [{"id": "E1", "role": "extraction"},
                                                                {"id": "R1", "role": "reinjection"}]}],
        api={"tokens": [{"token": "t" * 24, "role": "viewer", "name": "bureau"},
                        {"token": "secret-of-the-new-holder", "role": "enforcement"}]})
    changes = config_changes(old, new)
    text = changes.summary()
    assert changes.sites.added == ("s2",) and changes.sites.changed == ("s1",)
    assert changes.meters.added == ("s1/R2", "s2/E1", "s2/R1") and changes.meters.removed == ("s1/R1",)
    assert changes.receivers.removed == ("hook",)
    assert changes.tokens.added[0].startswith("enforcement-") and "secret-of" not in text
    assert not changes.rules and config_changes(old, old).summary() == "nothing changed"


def test_restart_only_settings_keep_their_running_values_and_are_named() -> None:
    running = _config()
    new = _config(state_dir="/elsewhere", api={"listen": "0.0.0.0:9000", "tokens": []},
                  rules={"evaluate_every": "1m"})
    kept, differ = keep_restart_only(running, new)
    assert differ == ["state_dir", "api.listen", "rules.evaluate_every"]
    assert kept.state_dir == running.state_dir and kept.api.listen == running.api.listen
    assert kept.api.tokens == () and kept.rules.evaluate_every == running.rules.evaluate_every


def test_the_notifier_swaps_receivers_and_keeps_the_unchanged_ones(tmp_path: Path) -> None:
    hooks = [{"name": n, "type": "webhook", "url": f"http://127.0.0.1:9/{n}"} for n in ("a", "b", "c")]
    notifier = Notifier([WebhookSettings.model_validate(h) for h in hooks], tmp_path / "notify.sqlite").start()
    try:
        a = notifier.receivers["a"]
        changed = [hooks[0], {**hooks[1], "url": "http://127.0.0.1:9/other"},
                   {"name": "d", "type": "webhook", "url": "http://127.0.0.1:9/d"}]
        added, removed, swapped = notifier.reconfigure([WebhookSettings.model_validate(h) for h in changed])
        assert (added, removed, swapped) == (["d"], ["c"], ["b"])
        assert notifier.receivers["a"] is a and set(notifier.receivers) == {"a", "b", "d"}
        live = {t.name for t in notifier._workers.values() if t.is_alive()}
        assert live == {"notify-a", "notify-b", "notify-d"}
    finally:
        notifier.stop()


@pytest.mark.parametrize("unit", ["gshp.service", "gshp-collector@.service", "gshp-rules@.service"])
def test_the_service_units_reload_with_sighup(unit: str) -> None:
    text = (REPO / "deploy/systemd" / unit).read_text(encoding="utf-8")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text


def test_a_sighup_while_starting_is_remembered_not_fatal() -> None:
    before = signal.getsignal(signal.SIGHUP)
    try:
        early = EarlyHangups()
        os.kill(os.getpid(), signal.SIGHUP)
        assert early.seen
    finally:
        signal.signal(signal.SIGHUP, before)
