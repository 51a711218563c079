"""Small helpers shared by tests: readings factories, InfluxDB counting, config problems in English."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.model import Reading, Role, Site
from collector.problems import ZhEn
from gshp.config.errors import Problem
from gshp.devstack import Influxd

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def in_english(problem: Problem) -> str:
    """A config problem's line with the English half of its message alone: the text it had before it was
    given in Chinese too."""
    message = problem.message
    return str(replace(problem, message=message.en if isinstance(message, ZhEn) else message))


def make_site(site_id: str = "s1", name: str = "向阳荷花广场", district: str = "宛城区") -> Site:
    return Site(id=site_id, name=name, district=district,
                meters=({"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}))  # type: ignore[arg-type]


def readings(n: int, site: str = "s1", start: datetime = T0, step_s: float = 1.0) -> Iterator[Reading]:
    """n readings alternating over meters E1/R1 with unique timestamps per meter and a known total."""
    for i in range(n):
        meter, role = ("E1", Role.EXTRACTION) if i % 2 == 0 else ("R1", Role.REINJECTION)
        yield Reading(site, meter, role, start + timedelta(seconds=(i // 2) * step_s), rate_m3h=50.0 + i % 7,
                      total_m3=1000.0 + i * 0.5)


def count(influxd: Influxd, db: str, measurement: str = "flow", field: str = "total_m3",
          where: str = "") -> int:
    res = influxd.query(f"SELECT count({field}) FROM {measurement} {where}", db)
    series = res[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def make_pki(d: Path, clients: Mapping[str, str] | None = None) -> Path:
    """A throw-away CA in `d` (ca.crt, ca.key) and, signed by it, server.crt/.key for 127.0.0.1 and localhost
    and `<name>.crt/.key` per client {name: common name}. Returns `d`."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gshp test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in {"server": "localhost", **(clients or {})}.items():
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", "-extfile", "san.ext")
    return d


def rss_kb(pid: int) -> int:
    """A process's resident set size from /proc, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def fill_disk(path: Path) -> Path:
    """Take every free byte of `path`'s file system with one file (`path`); unbuffered, so nothing is left to
    flush (and fail) when it closes."""
    with contextlib.suppress(OSError), open(path, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)
    os.sync()
    return path
