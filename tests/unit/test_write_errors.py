"""InfluxDB answers are mapped to what the drainer must do: split, retry, or wait as told."""

from __future__ import annotations

import pytest

from collector.influx.reader import quote_ident, quote_literal
from collector.influx.writer import RejectedWrite, RetryableWriteError, classify


@pytest.mark.parametrize("status", [400, 413, 422])
def test_data_errors_are_rejections(status: int) -> None:
    assert isinstance(classify(status, '{"error":"partial write"}', None), RejectedWrite)


@pytest.mark.parametrize(("status", "error_class"), [
    (401, "auth"), (403, "auth"), (404, "not_found"), (429, "overloaded"), (503, "overloaded"), (500, "server"),
])
def test_everything_else_is_retried(status: int, error_class: str) -> None:
    err = classify(status, "x", None)
    assert isinstance(err, RetryableWriteError) and err.error_class == error_class


def test_retry_after_seconds_and_http_dates_are_honoured() -> None:
    err = classify(429, "", "7")
    assert isinstance(err, RetryableWriteError) and err.retry_after == 7.0
    err = classify(503, "", "Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: retry now
    assert isinstance(err, RetryableWriteError) and err.retry_after == 0.0


def test_influxql_quoting_cannot_be_escaped() -> None:
    assert quote_literal("x' OR 1=1 --") == "'x\\' OR 1=1 --'"
    assert quote_literal("a\\") == "'a\\\\'"
    assert quote_ident('fl"ow') == '"fl\\"ow"'
