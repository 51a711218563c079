"""Planning retention and downsampling is pure: from what the database has to the statements to run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from collector.influx.retention import Policy, plan_retention, report_level, series_source

DAY = timedelta(days=1)
LEVELS = [(timedelta(minutes=1), 3650 * DAY), (timedelta(hours=1), 3650 * DAY)]


def test_a_new_database_gets_both_levels_for_flow_and_balance() -> None:
    plan = plan_retention("gshp", [Policy("autogen", timedelta(0), True)], [], None, None, LEVELS)
    assert [q.split(" ON ")[0] for q in plan if q.startswith("CREATE RETENTION")] == [
        'CREATE RETENTION POLICY "ds_1m"', 'CREATE RETENTION POLICY "ds_1h"']
    cqs = [q for q in plan if q.startswith("CREATE CONTINUOUS")]
    assert len(cqs) == 4 and all('FROM "gshp"."autogen".' in q for q in cqs)
    assert not any("ALTER" in q for q in plan)  # raw retention untouched unless configured


def test_raw_retention_alters_the_default_policy_or_creates_the_named_one() -> None:
    have = [Policy("autogen", timedelta(0), True)]
    (alter,) = [q for q in plan_retention("gshp", have, [], None, 400 * DAY, []) if "autogen" in q]
    assert alter == 'ALTER RETENTION POLICY "autogen" ON "gshp" DURATION 34560000s'
    (create,) = plan_retention("gshp", have, [], "raw", 400 * DAY, [])
    assert create.startswith('CREATE RETENTION POLICY "raw" ON "gshp" DURATION 34560000s')


def test_an_up_to_date_database_needs_nothing_and_a_changed_query_is_replaced() -> None:
    first = plan_retention("gshp", [Policy("autogen", timedelta(0), True)], [], None, None, LEVELS)
    names = [q.split('"')[1] for q in first if q.startswith("CREATE CONTINUOUS")]
    have = [Policy("autogen", timedelta(0), True), Policy("ds_1m", 3650 * DAY), Policy("ds_1h", 3650 * DAY)]
    assert plan_retention("gshp", have, names, None, None, LEVELS) == []
    stale = ["gshp_flow_1h_00000000", *names[:3]]
    again = plan_retention("gshp", have, stale, None, None, LEVELS)
    assert again[0] == 'DROP CONTINUOUS QUERY "gshp_flow_1h_00000000" ON "gshp"'
    assert len(again) == 2 and again[1].startswith(f'CREATE CONTINUOUS QUERY "{names[3]}"')


def test_a_downsampled_policy_is_lengthened_never_shortened() -> None:
    have = [Policy("autogen", timedelta(0), True), Policy("ds_1h", 365 * DAY)]
    assert any(q.startswith('ALTER RETENTION POLICY "ds_1h"') for q in
               plan_retention("gshp", have, [], None, None, [(timedelta(hours=1), 3650 * DAY)]))
    have = [Policy("autogen", timedelta(0), True), Policy("ds_1h", 3650 * DAY)]
    assert not any(q.startswith("ALTER") for q in
                   plan_retention("gshp", have, [], None, None, [(timedelta(hours=1), 30 * DAY)]))


def test_long_ranges_read_the_coarsest_level_that_fits_the_step() -> None:
    levels = [timedelta(minutes=1), timedelta(hours=1)]
    t = datetime(2026, 6, 1, tzinfo=UTC)
    assert series_source("flow", t, t + DAY, timedelta(minutes=5), levels) == '"flow"'
    assert series_source("flow", t, t + 60 * DAY, timedelta(hours=6), levels) == '"ds_1h"."flow"'
    assert series_source("flow", t, t + 60 * DAY, timedelta(minutes=5), levels) == '"ds_1m"."flow"'
    assert series_source("flow", t, t + 60 * DAY, timedelta(seconds=30), levels) == '"flow"'
    old = t - timedelta(days=500)  # before what raw retention still holds, even over a short range
    assert series_source("balance", old, old + DAY, timedelta(hours=1), levels, raw_since=t) == '"ds_1h"."balance"'
    assert series_source("alert", t, t + 60 * DAY, timedelta(hours=1), levels) == '"alert"'


def test_a_report_reads_the_coarsest_level_within_the_gap_tolerance_that_splits_its_days() -> None:
    levels = [timedelta(minutes=1), timedelta(hours=1)]
    shanghai = [datetime(2026, 2, d, tzinfo=timezone(timedelta(hours=8))) for d in (1, 2)]
    assert report_level(levels, timedelta(minutes=10), shanghai) == timedelta(minutes=1)
    assert report_level(levels, timedelta(hours=2), shanghai) == timedelta(hours=1)
    kolkata = [datetime(2026, 2, d, tzinfo=timezone(timedelta(hours=5, minutes=30))) for d in (1, 2)]
    assert report_level(levels, timedelta(hours=2), kolkata) == timedelta(minutes=1)  # hours start at :30 there
    assert report_level(levels, timedelta(seconds=30), shanghai) is None  # a missed minute would go unseen
    assert report_level([], timedelta(hours=2), shanghai) is None
