"""The Grafana dashboards' InfluxQL runs against a real influxd holding what `gshp run` writes, and the
service-health dashboard's PromQL names only metrics and labels the service exports.

The data is made by the service's own code: site metadata, readings through `FlowSchema`, and the rule
loop's balance and alert points (a site discharging half its water). Each query — panels, variables and
annotations — is interpolated as Grafana's InfluxDB data source does it — template variables resolved by
running the dashboard's own variable queries (and their regex), `$timeFilter` as epoch milliseconds,
`$__interval` — and must parse and return data.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

import collector.metrics
import rules.notify.metrics
from collector.influx.lineproto import FlowSchema
from collector.influx.settings import InfluxSettings
from collector.influx.sitemeta import site_lines
from collector.influx.writer import make_writer
from collector.model import Reading, Role, Site
from gshp.clock import DataClock
from gshp.devstack import Influxd
from gshp.evaluation import RuleLoop
from gshp.live import LiveState
from rules.engine import Engine
from rules.settings import RulesSettings

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "gshp-site.json"
INFLUX_DASHBOARDS = ["gshp-site.json", "gshp-city.json"]
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
    """A database holding three hours of two sites as `gshp run` writes them: flow, balance, alert and incident
    points."""
    db = "grafana_dashboard"
    writer = make_writer(InfluxSettings.model_validate({"url": influxd.url, "api": "v1", "bucket": db}))
    writer.ensure_target()
    lines: list[str] = site_lines(SITES, T0)
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


def variable_values(influxd: Influxd, db: str, variable: dict[str, Any], q: str) -> list[str]:
    """What Grafana offers for a query variable: each row's last column, through the variable's regex (a
    `value` capture group gives the value; `text` is only shown)."""
    raw = [str(v[-1]) for s in results(influxd, db, q) for v in s["values"]]
    if variable.get("regex"):
        pattern = re.compile(variable["regex"].strip("/").replace("(?<", "(?P<"))
        raw = [m.group("value") if "value" in pattern.groupindex else m.group(0)
               for m in map(pattern.match, raw) if m]
    return sorted(set(raw))


@pytest.mark.parametrize("name", INFLUX_DASHBOARDS)
def test_every_dashboard_query_parses_and_returns_data(influxd: Influxd, stored: str, name: str) -> None:
    dashboard = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    start, end = T0 - timedelta(minutes=30), T0 + timedelta(hours=HOURS, minutes=30)
    variables: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for variable in dashboard["templating"]["list"]:  # in order: a variable's query may use those before it
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "gshp-influxdb"
        q = interpolate(variable["query"], variables, start, end, "1m")
        values = variable_values(influxd, stored, variable, q)
        assert values, f"variable {variable['name']}: {q} gave no values"
        variables[variable["name"]] = (variable, values)
    assert variables["district"][1] == ["卧龙区", "宛城区"]
    if "site" in variables:
        assert variables["site"][1] == ["hehua-plaza", "school"]
        variables["site"] = (variables["site"][0], ["hehua-plaza"])  # the site a user picks

    measurements = set()
    targets = [(panel["title"], t) for panel in dashboard["panels"] for t in panel.get("targets", [])]
    targets += [(a["name"], a) for a in dashboard.get("annotations", {}).get("list", [])]
    assert len(targets) >= 6
    for title, target in targets:
        assert target.get("rawQuery", True) and target["datasource"]["uid"] == "gshp-influxdb", title
        q = interpolate(target["query"], variables, start, end, "5m")
        series = results(influxd, stored, q)
        assert series, f"panel {title!r}: {q} returned nothing"
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"panel {title!r}: {q} returned only nulls"
        measurements |= {s["name"] for s in series}
    assert {"balance", "alert", "incident"} <= measurements


@pytest.mark.parametrize("name", INFLUX_DASHBOARDS)
def test_incident_annotations_show_the_discharge_incident_with_its_summary(influxd: Influxd, stored: str,
                                                                          name: str) -> None:
    dashboard = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    (annotation,) = [a for a in dashboard["annotations"]["list"] if '"incident"' in a["query"]]
    variables = {"site": ({}, ["hehua-plaza"]), "district": ({"multi": True, "includeAll": True}, ["宛城区"])}
    q = interpolate(annotation["query"], variables, T0, T0 + timedelta(hours=HOURS), "5m")
    (series,) = results(influxd, stored, q)
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert rows and {r["change"] for r in rows} <= {"opened", "escalated", "reopened", "resolved"}
    assert rows[0]["change"] == "opened" and rows[0]["kind"] == "discharge"
    assert "向阳荷花广场" in rows[0]["summary"] and rows[0]["summary_en"]
    for column in [*annotation["tagsColumn"].split(","), annotation["textColumn"]]:
        assert column in series["columns"], column


def test_the_site_picker_shows_names_and_filters_by_id(influxd: Influxd, stored: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (site,) = [v for v in dashboard["templating"]["list"] if v["name"] == "site"]
    q = interpolate(site["query"], {"district": ({"multi": True}, ["卧龙区", "宛城区"])}, T0, T0, "1m")
    rows = [str(v[-1]) for s in results(influxd, stored, q) for v in s["values"]]
    pattern = re.compile(site["regex"].strip("/").replace("(?<", "(?P<"))
    shown = {m.group("value"): m.group("text") for m in map(pattern.match, rows) if m}
    assert shown == {"hehua-plaza": "向阳荷花广场", "school": "卧龙区第一中学"}


def test_the_city_overview_sums_only_what_was_drained(influxd: Influxd, stored: str) -> None:
    dashboard = json.loads((DASHBOARDS / "gshp-city.json").read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if p["id"] == 1]
    variables = {"district": ({"multi": True, "includeAll": True}, ["卧龙区", "宛城区"])}
    end = T0 + timedelta(hours=HOURS)
    (series,) = results(influxd, stored, interpolate(panel["targets"][0]["query"], variables, T0, end, "5m"))
    drained = series["values"][0][1]
    # hehua-plaza drains half of 84 m³/h in each hour; school is balanced and adds nothing
    assert 0.45 * 84 * (HOURS - 1) < drained < 0.55 * 84 * HOURS


def test_the_health_dashboard_names_only_exported_metrics_and_labels() -> None:
    exported: dict[str, set[str]] = {}
    for module in (collector.metrics, rules.notify.metrics):
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                name = metric._name + ("_total" if metric._type == "counter" else "")  # what /metrics shows
                exported[name] = set(metric._labelnames) | {"instance", "job"}  # the last two from the scrape
    dashboard = json.loads((DASHBOARDS / "gshp-health.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = re.findall(r"\bgshp_[a-z0-9_]+", expr)
        assert names, expr
        grouped = {g.strip() for m in re.findall(r"by \(([^)]*)\)", expr) for g in m.split(",")}
        for name in names:
            assert name in exported, f"{expr}: the service exports no metric {name}"
            selector = re.search(re.escape(name) + r"\{([^}]*)\}", expr)
            used = set(re.findall(r"(\w+)\s*[=!]~?", selector.group(1))) if selector else set()
            assert used | grouped <= exported[name], f"{expr}: {name} has no label {(used | grouped) - exported[name]}"
