"""Cool-down and offline state of one unit (pure)."""

from __future__ import annotations

from collector.modbus.health import MeterState, UnitHealth


def test_failures_back_off_exponentially_then_go_offline() -> None:
    h = UnitHealth(interval=10, offline_after=3, backoff_max=60)
    assert h.failure(0) is MeterState.FAILING
    assert h.due(10)                      # 1st failure: retried next cycle
    assert h.failure(10) is None          # still failing: no state change, nothing new to log
    assert not h.due(20) and h.due(30)    # 2nd failure: one cycle skipped
    assert h.failure(30) is MeterState.OFFLINE
    assert not h.due(60) and h.due(70)    # 3rd failure: three cycles skipped
    h.failure(70)
    assert h.next_attempt == 70 + 60      # capped at backoff_max


def test_success_resets_and_reports_the_change_once() -> None:
    h = UnitHealth(interval=1, offline_after=2, backoff_max=10)
    assert h.success() is MeterState.ONLINE
    assert h.success() is None
    h.failure(0)
    h.failure(1)
    assert h.state is MeterState.OFFLINE
    assert h.success() is MeterState.ONLINE and h.failures == 0 and h.due(0)


def test_connection_failures_do_not_add_a_unit_cool_down() -> None:
    h = UnitHealth(interval=1, offline_after=5, backoff_max=10)
    h.failure(0, cool_down=False)
    h.failure(1, cool_down=False)
    assert h.due(1)
