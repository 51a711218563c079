"""Value objects reject what they cannot hold, with a message that names the reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from collector.model import Meter, ModelError, Reading, Role, Site
from tests.helpers import make_site

CST = timezone(timedelta(hours=8))


def test_reading_normalises_timestamps_to_utc() -> None:
    r = Reading("s1", "E1", Role.EXTRACTION, datetime(2026, 7, 1, 8, tzinfo=CST), 10.0, 5.0)
    assert r.ts == datetime(2026, 7, 1, 0, tzinfo=UTC) and r.ts.tzinfo is UTC


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ts": datetime(2026, 7, 1)}, "ts must be timezone-aware"),
    ({"rate_m3h": None, "total_m3": None}, "neither rate nor total"),
    ({"total_m3": float("nan")}, "total_m3 is not a finite number"),
    ({"rate_m3h": float("inf")}, "rate_m3h is not a finite number"),
    ({"total_m3": -1.0}, "total_m3 is negative"),
    ({"signal_pct": 120.0}, "signal_pct 120.0 not in 0..100"),
    ({"error_code": 2**70}, "error_code 1180591620717411303424 does not fit a 64-bit integer"),
    ({"error_code": -(2**63) - 1}, "does not fit a 64-bit integer"),
    ({"role": "bogus"}, "role 'bogus' is not one of extraction, reinjection, discharge"),
])
def test_reading_rejects_impossible_values(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"site": "s1", "meter": "E1", "role": Role.EXTRACTION,
                               "ts": datetime(2026, 7, 1, tzinfo=UTC), "rate_m3h": 1.0, "total_m3": 1.0}
    with pytest.raises(ModelError, match=message) as info:
        Reading(**{**base, **kwargs})  # type: ignore[arg-type]
    assert "s1/E1" in str(info.value)


def test_reading_takes_a_role_by_its_name() -> None:
    r = Reading("s1", "E1", "reinjection", datetime(2026, 7, 1, tzinfo=UTC), 1.0, 1.0)  # type: ignore[arg-type]
    assert r.role is Role.REINJECTION


def test_reading_is_frozen_and_negative_rate_is_allowed_as_reverse_flow() -> None:
    r = Reading("s1", "E1", Role.EXTRACTION, datetime(2026, 7, 1, tzinfo=UTC), -3.0, None)
    with pytest.raises(AttributeError):
        r.total_m3 = 2.0  # type: ignore[misc]


def test_site_accepts_any_unicode_name_and_finds_meters() -> None:
    s = make_site(name="向阳荷花广场 (北区), \"A=B\"")
    assert s.meter("R1").role is Role.REINJECTION
    with pytest.raises(KeyError):
        s.meter("X")


@pytest.mark.parametrize("bad_id", ["", "has space", "中文", "a/b", "-lead", "x" * 65])
def test_ids_are_slugs(bad_id: str) -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        Meter(id=bad_id, role=Role.EXTRACTION)


def test_meter_has_at_most_one_source() -> None:
    with pytest.raises(ValidationError, match="either `modbus:` or `mqtt:`"):
        Meter.model_validate({"id": "E1", "role": "extraction", "modbus": {"gateway": "g", "unit": 1},
                              "mqtt": {"topic": "t"}})
    assert Meter(id="E1", role=Role.EXTRACTION).source is None


def test_site_without_reinjection_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs at least one 'reinjection' meter"):
        Site.model_validate({"id": "s", "name": "n", "district": "d", "meters": [{"id": "E1", "role": "extraction"}]})


def test_meters_given_the_same_fields_share_one_field_set_and_a_copy_gets_its_own() -> None:
    a, b = (Meter.model_validate({"id": i, "role": "extraction", "mqtt": {"topic": f"t/{i}"}}) for i in ("E1", "E2"))
    assert a.model_fields_set is b.model_fields_set == {"id", "role", "mqtt"}
    assert a.mqtt is not None and b.mqtt is not None and a.mqtt.model_fields_set is b.mqtt.model_fields_set
    c = a.model_copy(update={"accuracy_pct": 2.0})
    assert c.model_fields_set == {"id", "role", "mqtt", "accuracy_pct"}
    assert a.model_fields_set == b.model_fields_set == {"id", "role", "mqtt"}
    assert Meter.model_validate({"id": "E3", "role": "extraction"}).model_fields_set == {"id", "role"}
