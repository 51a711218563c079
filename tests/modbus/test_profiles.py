"""Packaged profiles: TUF-2000M exactly per its register table, encode/decode symmetry, user profiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from collector.modbus.errors import ProfileError
from collector.modbus.plan import plan_reads
from collector.modbus.profile import Function, combine, decode_fields, encode_values
from collector.modbus.registry import PROFILES, ProfileRegistry
from collector.model import ChangeKind


def _blocks(image: dict[tuple[Function, int], int], profile_fields: dict) -> dict:  # type: ignore[type-arg]
    return {(r.function, r.address): [image.get((r.function, a), 0) for a in range(r.address, r.end)]
            for r in plan_reads(profile_fields)}


def test_packaged_profiles_are_registered() -> None:
    assert {"tuf2000m", "tuf2000m-net", "float32-abcd", "ufm-d116"} <= set(PROFILES.names())


def test_tuf2000m_addresses_are_manual_register_minus_one() -> None:
    p = PROFILES.get("tuf2000m")
    manual = {"flow_rate": 1, "pos_acc_int": 9, "pos_acc_frac": 11, "net_acc_int": 25, "error_bits": 72,
              "signal_quality": 92, "pos_acc_m3": 115, "totalizer_unit": 1438, "total_multiplier": 1439,
              "scale_factor": 1451, "serial_number": 1529}
    for name, reg in manual.items():
        assert p.fields[name].address == reg - 1, name
    assert p.identity["total_multiplier"] is ChangeKind.MULTIPLIER_CHANGED


def test_tuf2000m_reg92_splits_into_step_and_signal_quality() -> None:
    p = PROFILES.get("tuf2000m")
    assert p.fields["working_step"].decode([806]) == 3
    assert p.fields["signal_quality"].decode([806]) == 38


def test_tuf2000m_total_is_integer_plus_fraction_times_multiplier() -> None:
    p = PROFILES.get("tuf2000m")
    fields = {"pos_acc_int": 12345, "pos_acc_frac": 0.5, "total_multiplier": 4, "totalizer_unit": 0,
              "flow_rate": 40.0}
    assert combine(p, fields)["total_m3"] == pytest.approx(123455.0)
    fields["totalizer_unit"] = 1  # litres
    assert combine(p, fields)["total_m3"] == pytest.approx(123.455)
    fields["totalizer_unit"] = 99  # unknown unit code: no total rather than a wrong one
    assert combine(p, fields)["total_m3"] is None


@pytest.mark.parametrize("name", ["tuf2000m", "tuf2000m-net", "float32-abcd", "ufm-d116"])
def test_what_the_simulator_encodes_the_collector_decodes(name: str) -> None:
    p = PROFILES.get(name)
    image: dict[tuple[Function, int], int] = {}
    want = {"rate_m3h": 41.25, "total_m3": 12345.678, "net_total_m3": 12345.678, "total_m3_f32": 12345.678,
            "net_total_m3_f32": 12345.678, "signal_pct": 77, "error_code": 8}
    encode_values(p, want, dict(p.simulator), image)
    fields = decode_fields(p.fields, _blocks(image, p.fields))
    got = combine(p, fields)
    assert got["rate_m3h"] == pytest.approx(41.25)
    assert got["total_m3"] == pytest.approx(12345.678, abs=2e-3)
    if "signal_pct" in p.values:
        assert got["signal_pct"] == 77
        assert got["error_code"] == 8
        assert p.check is not None and p.check.agrees(got)


def test_tuf2000m_check_catches_a_stale_multiplier() -> None:
    p = PROFILES.get("tuf2000m")
    image: dict[tuple[Function, int], int] = {}
    encode_values(p, {"total_m3": 5000.25, "total_m3_f32": 5000.25}, {**p.simulator, "total_multiplier": 4},
                  image)
    fields = decode_fields(p.fields, _blocks(image, p.fields))
    fields["total_multiplier"] = 3  # what the collector read before the change
    assert p.check is not None and not p.check.agrees(combine(p, fields))


def test_tuf2000m_reads_in_one_request_and_identity_apart() -> None:
    p = PROFILES.get("tuf2000m")
    assert [(r.address, r.count) for r in plan_reads(p.poll_fields)] == [(0, 118)]
    assert [(r.address, r.count) for r in plan_reads(p.identity_fields)] == [(1436, 16), (1528, 2)]


def test_user_profile_directory_extends_a_packaged_profile(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "name: mine\nextends: float32-abcd\nfields:\n  flow_rate: {address: 10, type: f32, order: DCBA}\n")
    reg = PROFILES.copy()
    reg.load_dir(tmp_path)
    mine = reg.get("mine")
    assert mine.fields["flow_rate"].address == 10
    assert mine.fields["total"].address == 2
    assert "mine" not in PROFILES


def test_bad_profiles_name_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: a\nfields:\n  x: {address: 0, type: f33}\nvalues:\n  rate_m3h: {parts: [y]}\n")
    (tmp_path / "b.yaml").write_text("name: b\nextends: nowhere\n")
    reg = ProfileRegistry()
    with pytest.raises(ProfileError) as err:
        reg.load_dir(tmp_path)
    text = str(err.value)
    assert "a.yaml" in text and "fields.x.type" in text
    assert "b.yaml" in text and "nowhere" in text


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ProfileError, match="tuf2000m"):
        PROFILES.get("tuf3000")


def test_bit_fields_encode_without_clobbering_each_other() -> None:
    p = PROFILES.get("tuf2000m")
    regs = [0]
    p.fields["working_step"].encode_into(3, regs)
    p.fields["signal_quality"].encode_into(38, regs)
    assert regs == [806]
    assert math.isclose(p.fields["flow_rate"].decode([0x3CD0, 0x40E3]), 7.1011734, rel_tol=1e-7)
