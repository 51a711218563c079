"""The Grafana dashboard's InfluxQL runs against a real influxd holding what `gshp run` writes.

The data is made by the service's own code: readings through `FlowSchema`, and the rule loop's balance and
alert points (a site discharging half its water). Each query is interpolated as Grafana's InfluxDB data
source does it — template variables resolved by running the dashboard's own variable queries, `$timeFilter`
as epoch milliseconds, `$__interval` — and must parse and return data.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.influx.lineproto import FlowSchema
from collector.influx.settings import InfluxSettings
from collector.influx.writer import make_writer
from collector.model import Reading, Role, Site
from gshp.clock import DataClock
from gshp.devstack import Influxd
from gshp.evaluation import RuleLoop
from gshp.live import LiveState
from rules.engine import Engine
from rules.settings import RulesSettings

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "gshp-site.json"
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
HOURS = 3
SITES = (Site.model_validate({"id": "hehua-plaza", "name": "向阳荷花广场", "district": "宛城区",
                              "meters": [{"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]}),
         Site.model_validate({"id": "school", "name": "卧龙区第一中学", "district": "卧龙区",
                              "meters": [{"id": "E1", "role": "extraction"}, {"id": "R1", "role": "reinjection"}]}))


def escape_regex(value: str) -> str:
    """Grafana's `escapeRegex`, applied to multi-value and include-all variables inside /…/."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def interpolate(query: str, variables: dict[str, tuple[dict[str, Any], list[str]]], start: datetime,
                end: datetime, interval: str) -> str:
    """A raw InfluxQL query as Grafana sends it: each variable's selected values (a multi-value or include-all
    variable as an escaped `(a|b)` alternation, a single one verbatim), the time filter and the interval."""
    out = query.replace("$timeFilter", f"time >= {int(start.timestamp() * 1000)}ms and "
                                       f"time <= {int(end.timestamp() * 1000)}ms")
    out = out.replace("$__interval", interval).replace("$interval", interval)
    for name, (variable, values) in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        if variable.get("multi") or variable.get("includeAll"):
            text = "(" + "|".join(escape_regex(v) for v in values) + ")"
        else:
            text = values[0]
        out = out.replace("${" + name + "}", text).replace("[[" + name + "]]", text).replace("$" + name, text)
    left = re.findall(r"\$\{?[A-Za-z_]\w*|\[\[\w+\]\]", out)
    assert not left, f"the test does not know the Grafana variable(s) {left}: teach `interpolate` about them"
    return out


def results(influxd: Influxd, db: str, q: str) -> list[dict[str, Any]]:
    (result,) = influxd.query(q, db)
    assert "error" not in result, f"{q}\n→ {result['error']}"
    return list(result.get("series") or [])


@pytest.fixture(scope="module")
def stored(influxd: Influxd) -> str:
    """A database holding three hours of two sites as `gshp run` writes them: flow, balance and alert points."""
    db = "grafana_dashboard"
    writer = make_writer(InfluxSettings.model_validate({"url": influxd.url, "api": "v1", "bucket": db}))
    writer.ensure_target()
    lines: list[str] = []
    engine = Engine(SITES, RulesSettings(), UTC)
    events: list[object] = []
    loop = RuleLoop(engine, SITES, DataClock(), LiveState(SITES), lines.extend, events.append)
    schema = FlowSchema(SITES)
    for i in range(HOURS * 60 + 1):
        ts = T0 + timedelta(minutes=i)
        batch = []
        for site, reinjected in ((SITES[0], 42.0), (SITES[1], 83.6)):  # hehua-plaza drains half its water
            batch += [Reading(site.id, "E1", Role.EXTRACTION, ts, 84.0, 1000.0 + 1.4 * i, signal_pct=81.0),
                      Reading(site.id, "R1", Role.REINJECTION, ts, reinjected, 2000.0 + reinjected / 60 * i,
                              signal_pct=76.0)]
        lines += schema.lines(batch)
        loop.on_readings(batch)
    assert any(getattr(e, "rule", "") == "balance_gross" for e in events), "the data must raise an alert"
    writer.write(lines)
    writer.close()
    return db


def test_every_dashboard_query_parses_and_returns_data(influxd: Influxd, stored: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    start, end = T0 - timedelta(minutes=30), T0 + timedelta(hours=HOURS, minutes=30)
    variables: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for variable in dashboard["templating"]["list"]:  # in order: a variable's query may use those before it
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "gshp-influxdb"
        q = interpolate(variable["query"], variables, start, end, "1m")
        values = sorted(str(v[-1]) for s in results(influxd, stored, q) for v in s["values"])
        assert values, f"variable {variable['name']}: {q} gave no values"
        variables[variable["name"]] = (variable, values)
    assert variables["district"][1] == ["卧龙区", "宛城区"]
    assert variables["site"][1] == ["hehua-plaza", "school"]
    variables["site"] = (variables["site"][0], ["hehua-plaza"])  # the site a user picks

    measurements = set()
    targets = [(panel["title"], t) for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(targets) >= 8
    for title, target in targets:
        assert target["rawQuery"] and target["datasource"]["uid"] == "gshp-influxdb", title
        q = interpolate(target["query"], variables, start, end, "5m")
        series = results(influxd, stored, q)
        assert series, f"panel {title!r}: {q} returned nothing"
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"panel {title!r}: {q} returned only nulls"
        measurements |= {s["name"] for s in series}
    assert measurements == {"flow", "balance", "alert"}


def test_the_balance_panel_shows_each_window_of_the_chosen_site_only(influxd: Influxd, stored: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if any('FROM "balance"' in t["query"] for t in p["targets"])]
    assert panel["fieldConfig"]["defaults"]["unit"] == "percent"
    (deficit,) = [t for t in panel["targets"] if "deficit_pct" in t["query"]]
    start, end = T0, T0 + timedelta(hours=HOURS)
    for site, low, high in (("hehua-plaza", 49.0, 51.0), ("school", 0.0, 1.0)):
        variables = {"site": ({"multi": False, "includeAll": False}, [site])}
        series = results(influxd, stored, interpolate(deficit["query"], variables, start, end, "30m"))
        # one line per window (24h appears once a day of data is held; until then its deficit is unknown)
        assert {s["tags"]["window"] for s in series} <= {"1h", "24h"}
        (hour,) = [s for s in series if s["tags"]["window"] == "1h"]
        settled = [v for _, v in hour["values"][2:] if v is not None]  # once the first hour is full
        assert settled and all(low <= v <= high for v in settled), (site, settled)
