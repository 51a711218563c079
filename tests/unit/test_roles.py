from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from collector.model import Meter, Role
from rules.roles import role_at, role_on, roles_constant

SH = ZoneInfo("Asia/Shanghai")
WELL = Meter.model_validate({"id": "W3", "role": "reinjection",
                             "roles": [{"role": "extraction", "from": "11-15", "to": "03-15"}]})


def test_role_outside_every_period_is_the_default_role():
    assert role_on(WELL, date(2026, 7, 1)) is Role.REINJECTION


def test_a_period_can_cross_the_new_year():
    assert role_on(WELL, date(2026, 12, 31)) is Role.EXTRACTION
    assert role_on(WELL, date(2027, 1, 10)) is Role.EXTRACTION
    assert role_on(WELL, date(2026, 3, 15)) is Role.EXTRACTION
    assert role_on(WELL, date(2026, 3, 16)) is Role.REINJECTION


def test_role_at_uses_the_local_date():
    # 2026-03-15 17:00 UTC is already 03-16 01:00 in Shanghai
    assert role_at(WELL, datetime(2026, 3, 15, 17, 0, tzinfo=UTC), SH) is Role.REINJECTION
    assert role_at(WELL, datetime(2026, 3, 15, 15, 0, tzinfo=UTC), SH) is Role.EXTRACTION


def test_roles_constant_detects_a_swap_inside_a_window():
    across = (datetime(2026, 3, 15, 12, tzinfo=UTC), datetime(2026, 3, 16, 12, tzinfo=UTC))
    assert not roles_constant(WELL, *across, SH)
    assert roles_constant(WELL, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC), SH)


def test_a_bad_month_day_is_rejected_with_the_expected_format():
    with pytest.raises(ValidationError, match="MM-DD"):
        Meter.model_validate({"id": "W", "role": "extraction",
                              "roles": [{"role": "reinjection", "from": "5-1", "to": "09-30"}]})
