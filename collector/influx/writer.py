"""Writers for InfluxDB's two write APIs, with one error vocabulary for the drainer.

- `api: v1` posts line protocol to ``/write?db=&rp=&precision=ms`` (InfluxDB 1.x, optional user/password).
- `api: v2` writes through influxdb-client's synchronous WriteApi (InfluxDB 2.x, 3.x, 1.8+).

Both raise `RejectedWrite` when InfluxDB refuses the data itself (the drainer splits the batch to find
the bad line) and `RetryableWriteError` for everything that may pass later (outage, overload, auth,
missing database). Neither retries on its own: the outbox owns durability and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests

from collector.duration import parse_duration
from collector.influx.influxql import quote_ident
from collector.influx.retention import Policy, plan_retention
from collector.influx.settings import InfluxApi, InfluxSettings
from collector.redact import redact

__all__ = [
    "WRITERS",
    "InfluxTargetMissing",
    "RejectedWrite",
    "RetryableWriteError",
    "V1Writer",
    "V2Writer",
    "WriteError",
    "Writer",
    "make_writer",
]

log = logging.getLogger(__name__)

PRECISION = "ms"


class WriteError(Exception):
    """A write to InfluxDB did not succeed; its message holds no secret (see `collector.redact`)."""

    error_class = "other"

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class RejectedWrite(WriteError):
    """InfluxDB refused the data (bad line, type conflict, too large): retrying the same bytes won't help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"InfluxDB rejected the write ({status}): {message}")
        self.status = status
        self.error_class = f"rejected_{status}"


class RetryableWriteError(WriteError):
    """The write may succeed later: InfluxDB is down, overloaded, or not set up yet."""

    def __init__(self, error_class: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.retry_after = retry_after


class InfluxTargetMissing(WriteError):
    """The bucket (v2) does not exist and the service may not create it."""


class Writer(Protocol):
    def ensure_target(self) -> None: ...

    def write(self, lines: Sequence[str]) -> None: ...

    def write_body(self, body: str) -> None: ...

    def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify(status: int, body: str, retry_after: str | None) -> WriteError:
    """Map an HTTP answer from InfluxDB to the error the drainer acts on."""
    text = body.strip()[:500]
    if status in (400, 413, 422):
        return RejectedWrite(status, text)
    if status in (401, 403):
        return RetryableWriteError("auth", f"InfluxDB refused the credentials ({status}): check influx.token "
                                           f"or influx.username/password — {text}")
    if status == 404:
        return RetryableWriteError("not_found", f"InfluxDB has no such database/bucket (404): {text}")
    if status in (429, 503):
        return RetryableWriteError("overloaded", f"InfluxDB is overloaded ({status})",
                                   _retry_after(retry_after))
    return RetryableWriteError("server", f"InfluxDB answered {status}: {text}", _retry_after(retry_after))


class V1Writer:
    """POST /write for InfluxDB 1.x."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        self._session.verify = settings.verify_ssl
        self._session.headers["Content-Type"] = "text/plain; charset=utf-8"
        if settings.username and settings.password:
            self._session.auth = (settings.username, settings.password.get_secret_value())
        self._params = {"db": settings.bucket, "precision": PRECISION}
        if settings.retention_policy:
            self._params["rp"] = settings.retention_policy

    def ensure_target(self) -> None:
        """Create the database if it is missing (CREATE DATABASE is idempotent), then its retention policies
        and downsampling continuous queries (`collector.influx.retention`). Those need an admin user: without
        one they are logged with the statements to run, and writing goes on."""
        name = self.settings.bucket.replace("\\", "\\\\").replace('"', '\\"')
        self._post("/query", {"q": f'CREATE DATABASE "{name}"'}, b"")
        try:
            statements = self.retention_plan()
            for q in statements:
                self._query(q)
        except WriteError as exc:
            log.warning("retention policies / continuous queries not set up (%s); an InfluxDB admin can run "
                        "them by hand: %s", exc, "; ".join(self.retention_plan(strict=False)))
            return
        if statements:
            log.info("InfluxDB retention and downsampling set up: %s", "; ".join(statements))

    def retention_plan(self, strict: bool = True) -> list[str]:
        """What `ensure_target` would run to bring retention and downsampling up to the config."""
        db, s = self.settings.bucket, self.settings
        try:
            rps = self._query(f"SHOW RETENTION POLICIES ON {quote_ident(db)}")
            cqs = self._query("SHOW CONTINUOUS QUERIES")
        except WriteError:
            if strict:
                raise
            rps, cqs = [], []
        policies = [Policy(str(v[0]), parse_duration(str(v[1])), bool(v[-1]))
                    for series in rps for v in series.get("values") or []]
        queries = [str(v[0]) for series in cqs if series.get("name") == db for v in series.get("values") or []]
        return plan_retention(db, policies, queries, s.retention_policy, s.retention,
                              [(d.every, d.keep) for d in s.downsample])

    def _query(self, q: str) -> list[dict[str, Any]]:
        """One InfluxQL statement over POST /query; its series (raises like a write)."""
        try:
            r = self._session.post(self.settings.url.rstrip("/") + "/query", params={"q": q},
                                   timeout=self.settings.timeout.total_seconds())
        except requests.RequestException as exc:
            raise RetryableWriteError("connection", f"cannot reach InfluxDB: {type(exc).__name__}") from exc
        if r.status_code >= 300:
            raise classify(r.status_code, r.text, r.headers.get("Retry-After"))
        out: list[dict[str, Any]] = []
        for result in r.json().get("results", []):
            if "error" in result:
                raise RejectedWrite(400, str(result["error"]))
            out += result.get("series") or []
        return out

    def write(self, lines: Sequence[str]) -> None:
        self.write_body("\n".join(lines))

    def write_body(self, body: str) -> None:
        """Lines already joined by newlines (the outbox stores them so)."""
        self._post("/write", self._params, body.encode())

    def _post(self, path: str, params: dict[str, str], body: bytes) -> None:
        try:
            r = self._session.post(self.settings.url.rstrip("/") + path, params=params, data=body,
                                   timeout=self.settings.timeout.total_seconds())
        except requests.Timeout as exc:
            raise RetryableWriteError("timeout", f"InfluxDB did not answer in time: {exc}") from exc
        except requests.RequestException as exc:
            raise RetryableWriteError("connection", f"cannot reach InfluxDB at {self.settings.url}: "
                                                    f"{type(exc).__name__}") from exc
        if r.status_code >= 300:
            raise classify(r.status_code, r.text, r.headers.get("Retry-After"))

    def close(self) -> None:
        self._session.close()


class V2Writer:
    """influxdb-client's synchronous write API (its own retries disabled: the outbox retries)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self.settings = settings
        assert settings.token is not None and settings.org is not None  # validated in settings
        self._client = InfluxDBClient(url=settings.url, token=settings.token.get_secret_value(),
                                      org=settings.org, timeout=int(settings.timeout.total_seconds() * 1000),
                                      verify_ssl=settings.verify_ssl, retries=False,
                                      enable_gzip=False)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._precision = WritePrecision.MS

    def ensure_target(self) -> None:
        api = self._client.buckets_api()
        bucket = self._call(lambda: api.find_bucket_by_name(self.settings.bucket))  # type: ignore[no-untyped-call]
        if bucket is None:
            raise InfluxTargetMissing(
                f"InfluxDB has no bucket {self.settings.bucket!r} in org {self.settings.org!r}: "
                "create it with "
                f"`influx bucket create -n {self.settings.bucket} -o {self.settings.org} -r 400d` "
                "(see deploy/influxdb.md)")

    def write(self, lines: Sequence[str]) -> None:
        self.write_body("\n".join(lines))

    def write_body(self, body: str) -> None:
        org = self.settings.org or ""
        self._call(lambda: self._write.write(bucket=self.settings.bucket, org=org, record=body,
                                             write_precision=self._precision))  # type: ignore[arg-type]

    def _call(self, fn: Callable[[], object]) -> object:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return fn()
        except ApiException as exc:
            headers: dict[str, str] = dict(exc.headers or {})
            raise classify(int(exc.status or 0), str(exc.body or exc.reason or ""),
                           headers.get("Retry-After")) from exc
        except Urllib3Error as exc:
            raise RetryableWriteError("connection", f"cannot reach InfluxDB at {self.settings.url}: "
                                                    f"{type(exc).__name__}") from exc

    def close(self) -> None:
        self._write.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


WRITERS: dict[InfluxApi, Callable[[InfluxSettings], Writer]] = {
    InfluxApi.V1: V1Writer,
    InfluxApi.V2: V2Writer,
}


def make_writer(settings: InfluxSettings) -> Writer:
    return WRITERS[settings.api](settings)
