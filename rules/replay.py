"""Replay: run the live engine over recorded readings in data time.

`parse_readings` turns CSV text (`ts,site,meter,rate_m3h,total_m3`, optional `signal_pct,error_code`)
into `Readings` columns, listing every bad row with its line number. `replay` feeds the engine in
timestamp order and evaluates it at every `evaluate_every` boundary of the data's own clock, exactly as the
live scheduler would, yielding alert events as they happen (`replay_steps`: alert transitions and incident
notices per evaluation). Same input, same output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
import pandas as pd

from alerting.model import Alert
from rules.engine import Engine, Step

__all__ = ["BadRow", "Readings", "ReplayError", "parse_readings", "read_frame", "readings_from_frame", "replay",
           "replay_steps", "text_column"]

REQUIRED = ("ts", "site", "meter", "rate_m3h", "total_m3")
_OFFSET = r"(?:Z|z|[+-]\d\d:?\d\d)$"


class ReplayError(Exception):
    """The recorded readings cannot be replayed as given."""


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Readings:
    """Columns of readings sorted by (ts, site, meter); ts in epoch seconds, NaN for a missing value."""

    ts: np.ndarray[Any, np.dtype[np.float64]]
    site: list[str]
    meter: list[str]
    rate: list[float | None]
    total: list[float | None]
    signal: list[float | None]
    error: list[int | None]
    bad: list[BadRow]
    volume: list[float | None] = field(default_factory=list)  # interval volumes: empty when none is given
    period: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.site)


TS_MIN = 631152000.0  # 1990-01-01T00:00:00Z
TS_MAX = 4102444800.0  # 2100-01-01T00:00:00Z
MAX_STEPS = 2_000_000
"""Evaluation steps one replay may span (about 19 years at the default 5 min): beyond, split the file."""


def _epoch_seconds(times: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Seconds since the epoch of tz-aware timestamps, at whatever resolution pandas holds them."""
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    out = naive.astype(np.int64) / 1e6
    out[np.isnat(naive)] = np.nan
    return np.asarray(out, dtype=np.float64)


def _opt(values: np.ndarray[Any, Any]) -> list[float | None]:
    """A float column as a list, None for NaN (a column without any, or of nothing else, in one go)."""
    missing = np.isnan(values)
    if not missing.any():
        out: list[float | None] = values.tolist()
        return out
    if missing.all():
        return [None] * len(values)
    return [None if v != v else v for v in values.tolist()]


def parse_readings(stream: IO[str]) -> Readings:
    """Parse CSV readings; bad rows are skipped and listed (line numbers count the header as line 1)."""
    return readings_from_frame(read_frame(stream))


def text_column(col: pd.Series) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.intp]]]:
    """A text column with surrounding blanks stripped ("" for a missing value), and each value's rank among
    the distinct ones, which sorts as the text does. Each distinct value is stripped once: a column of
    readings holds a handful of site and meter ids over millions of rows."""
    codes, raw = pd.factorize(col)  # a missing value's code is −1: the "" appended last below
    ranks, names = pd.factorize(np.array([str(v).strip() for v in raw] + [""], dtype=object), sort=True)
    rank = np.asarray(ranks, dtype=np.intp)[codes]
    return np.asarray(names, dtype=object)[rank], rank


def read_frame(stream: IO[str]) -> pd.DataFrame:
    """CSV readings as a frame, not yet validated (row i is line i + 2); `ReplayError` when it is not CSV or
    lacks a required column."""
    try:
        # numbers parse natively; a column with any bad value stays text and is checked row by row
        df = pd.read_csv(stream, dtype={"site": object, "meter": object}, keep_default_na=False, na_values=[""],
                         skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReplayError(f"readings are not CSV ({exc}); expected the header {','.join(REQUIRED)}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ReplayError(f"readings lack column(s) {', '.join(missing)}; the header must be "
                          f"{','.join(REQUIRED)} (signal_pct,error_code optional)")
    return df


def readings_from_frame(df: pd.DataFrame, strings: bool = False,
                        lines: np.ndarray[Any, np.dtype[np.int64]] | None = None) -> Readings:
    """Validate and sort a frame of readings (from CSV text or from a database query); `lines` numbers the
    rows for bad-row messages (default: row i is line i + 2, under a header)."""
    n = len(df)
    line = np.arange(n) + 2 if lines is None else lines
    reasons = np.full(n, "", dtype=object)
    flagged = np.zeros(n, dtype=bool)  # a row's first reason is its reason

    def flag(mask: Any, reason: str) -> None:
        m = np.asarray(mask, dtype=bool) & ~flagged
        if m.any():
            reasons[m] = reason
            np.logical_or(flagged, m, out=flagged)

    ts_raw = df["ts"]
    if pd.api.types.is_datetime64_any_dtype(ts_raw):
        secs = _epoch_seconds(ts_raw.dt.tz_localize("UTC") if ts_raw.dt.tz is None else ts_raw)
    elif pd.api.types.is_numeric_dtype(ts_raw) and not strings:
        secs = np.asarray(ts_raw.to_numpy(dtype=float, na_value=np.nan), dtype=np.float64)
        flag(np.isnan(secs), "ts is not a number of Unix seconds")
    else:
        text = ts_raw.fillna("").astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        is_num = num.notna().to_numpy()
        secs = np.array(num.to_numpy(dtype=float, na_value=np.nan), dtype=np.float64)
        iso_part = text[~is_num]
        if len(iso_part):
            has_offset = iso_part.str.contains(_OFFSET, regex=True)
            parsed = pd.to_datetime(iso_part.where(has_offset), utc=True, errors="coerce", format="ISO8601")
            ok = parsed.notna().to_numpy()
            vals = np.full(len(iso_part), np.nan)
            if ok.any():
                vals[ok] = _epoch_seconds(parsed[ok])
            secs[~is_num] = vals
            naive = pd.to_datetime(iso_part.where(~has_offset), errors="coerce", format="ISO8601")
            no_offset = np.zeros(n, dtype=bool)
            no_offset[np.flatnonzero(~is_num)[naive.notna().to_numpy()]] = True
            flag(no_offset, "ts has no UTC offset: write e.g. 2026-05-01T08:00:00+08:00 or Unix seconds")
        flag(np.isnan(secs), "ts is neither ISO-8601 with offset nor Unix seconds")
    with np.errstate(invalid="ignore"):
        flag(~((secs >= TS_MIN) & (secs < TS_MAX)),
             "ts is outside 1990..2100: a wrong device clock, or milliseconds where seconds are expected")

    site, site_rank = text_column(df["site"])
    meter, meter_rank = text_column(df["meter"])
    flag((site == "") | (meter == ""), "site and meter must not be empty")

    def number(col: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        if col not in df.columns:
            return np.full(n, np.nan)
        s = df[col]
        if strings or not pd.api.types.is_numeric_dtype(s):
            s = s.fillna("").astype(str).str.strip()
            empty = (s == "") | (s.str.lower() == "nan")
            v = pd.to_numeric(s.where(~empty), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            flag(~empty.to_numpy() & np.isnan(v), f"{col} is not a number")
            return np.asarray(v, dtype=np.float64)
        return np.asarray(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan),
                          dtype=np.float64)

    rate, total = number("rate_m3h"), number("total_m3")
    signal, error = number("signal_pct"), number("error_code")
    volume, period = number("volume_m3"), number("period_s")
    flag(np.isnan(rate) & np.isnan(total) & np.isnan(volume), "neither rate_m3h nor total_m3 is given")
    with np.errstate(invalid="ignore"):
        flag(~np.isnan(volume) & ~((volume >= 0) & np.isfinite(volume) & (period > 0) & np.isfinite(period)),
             "an interval volume needs volume_m3 ≥ 0 and period_s > 0 (seconds)")
    flag(np.isinf(rate) | np.isinf(total), "rate_m3h and total_m3 must be finite")
    flag(total < 0, "total_m3 is negative: a totalizer counts up from 0")
    flag((signal < 0) | (signal > 100), "signal_pct must be within 0..100")
    with np.errstate(invalid="ignore"):
        flag(~np.isnan(error) & ~((np.abs(error) < 2.0**63) & (np.floor(error) == error)),
             "error_code must be an integer of at most 64 bits")

    good = ~flagged
    bad = [BadRow(int(ln), str(r)) for ln, r in zip(line[~good], reasons[~good], strict=True)]
    idx = np.flatnonzero(good)
    order = idx[np.lexsort((meter_rank[idx], site_rank[idx], secs[idx]))]
    codes: list[int | None] = [None] * len(order)  # error codes: most files have none
    if not np.isnan(error).all():
        codes = [None if v != v else int(v) for v in error[order].tolist()]
    return Readings(
        ts=secs[order], site=site[order].tolist(), meter=meter[order].tolist(), rate=_opt(rate[order]),
        total=_opt(total[order]), signal=_opt(signal[order]), error=codes, bad=bad,
        **({"volume": _opt(volume[order]), "period": _opt(period[order])} if (~np.isnan(volume[order])).any()
           else {}))


def replay(engine: Engine, readings: Readings,
           progress: Callable[[float, int], None] | None = None) -> Iterator[Alert]:
    """Feed `readings` to `engine` in data time, evaluating at every step boundary; yield transitions."""
    for step in replay_steps(engine, readings, progress):
        yield from step.alerts


def replay_steps(engine: Engine, readings: Readings,
                 progress: Callable[[float, int], None] | None = None) -> Iterator[Step]:
    """Like `replay`, one `Step` (alert transitions and incident notices) per evaluation that changed
    something."""
    if len(readings) == 0:
        return
    step = engine.step_s
    ts = readings.ts
    k_first = int(np.ceil(ts[0] / step))
    k_last = int(np.ceil(ts[-1] / step))
    if k_last - k_first > MAX_STEPS:
        raise ReplayError(f"the readings span {k_last - k_first} evaluation steps of {step:g}s, more than "
                          f"{MAX_STEPS}: replay the file in parts")
    bounds = np.searchsorted(ts, np.arange(k_first, k_last + 1) * step, side="right")
    ingest = engine.ingest_columns
    columns = (readings.site, readings.meter, ts.tolist(), readings.rate, readings.total, readings.signal,
               readings.error)
    volume, period = readings.volume or None, readings.period or None  # interval volumes, if any
    i = 0
    for n, k in enumerate(range(k_first, k_last + 1)):
        j = int(bounds[n])
        if j > i:
            ingest(*columns, i, j, volume=volume, period=period)
            i = j
        result = engine.step(datetime.fromtimestamp(k * step, UTC))
        if result.alerts or result.notices:
            yield result
        if progress is not None and n % 2000 == 0:
            progress(k * step, i)
