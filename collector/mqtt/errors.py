"""The three ways MQTT ingestion says no: a bad profile, a plan that cannot work, a payload rejected."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PlanError", "ProfileError", "RejectReason", "Rejected"]


class ProfileError(ValueError):
    """A payload profile file is not valid (names the file and field)."""


class PlanError(ValueError):
    """The configured MQTT meters cannot be served as written; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RejectReason(StrEnum):
    """Why a payload (or one record in it) was not turned into readings. Used as a metric label."""

    TOO_LARGE = "too_large"
    BAD_ENCODING = "bad_encoding"  # not UTF-8
    BAD_JSON = "bad_json"
    WRONG_SHAPE = "wrong_shape"  # valid JSON, but not the structure the profile describes
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    NEGATIVE_TOTAL = "negative_total"
    OUT_OF_RANGE = "out_of_range"  # e.g. signal above 100 %
    BAD_TIMESTAMP = "bad_timestamp"
    TS_FUTURE = "ts_future"
    TS_PAST = "ts_past"
    RETAINED = "retained"  # the broker's retained copy, sent on subscribing (mqtt.accept_retained)
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_METER = "unknown_meter"
    BAD_REGISTERS = "bad_registers"
    DECODE_ERROR = "decode_error"  # a fault in the decoder itself (logged with a traceback)


class Rejected(Exception):
    """A payload or record cannot be used; carries the reason label and a human detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")
