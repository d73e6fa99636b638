"""Daily summaries, built in the database from the hourly rollups.

One `INSERT … SELECT … GROUP BY` upsert per table and day: the rollups of the day's hours
(days cut in TIME_ZONE, which are whole rollup hours) are summed per source or scheduler, and
the p95 is read off the merged duration histogram with a running sum. Reading rollups instead
of the detailed rows keeps a 10-million-record day as cheap as a quiet one, and keeps days
past retention summarisable. Running it again gives the same rows.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from metrics_app.dialect import Merge, db_instant, upsert_clause
from metrics_app.histogram import upper_bound_sql
from metrics_app.models import (
    AggregatedDay,
    DailySummary,
    FieldDay,
    HourlyRollup,
    SchedulerDailySummary,
    StatusDay,
)
from metrics_app.rollups import FIELD_HOURS, STATUS_HOURS, DataGrain

# Per type: the day's totals and the bucket where the running count reaches 95 %.
_PER_TYPE = """
    SELECT {group}, SUM(n) AS n, SUM(ok) AS ok, SUM(dsum) AS dsum, MIN(dmin) AS dmin,
           MAX(dmax) AS dmax, SUM(retries) AS retries, SUM(items) AS items, SUM(bytes) AS bytes,
           MIN(CASE WHEN running >= 0.95 * total THEN duration_bucket END) AS p95_bucket
    FROM (
        SELECT b.*,
               SUM(n) OVER (PARTITION BY {group} ORDER BY duration_bucket) AS running,
               SUM(n) OVER (PARTITION BY {group}) AS total
        FROM (
            SELECT {group}, duration_bucket, SUM(records) AS n, SUM(successes) AS ok,
                   SUM(duration_sum) AS dsum, MIN(duration_min) AS dmin, MAX(duration_max) AS dmax,
                   SUM(retry_sum) AS retries, SUM(items_sum) AS items, SUM(bytes_sum) AS bytes
            FROM {rollups}
            WHERE hour >= %s AND hour < %s AND {where}
            GROUP BY {group}, duration_bucket
        ) AS b
    ) AS r
    GROUP BY {group}"""
_P95 = upper_bound_sql("p95_bucket")

# Averages multiply by 1e0 so they divide in floating point: MySQL's DECIMAL division keeps
# only four decimals.
_PAGE_COLUMNS = {
    "total_navigations": "SUM(CASE WHEN {nav} THEN n ELSE 0 END)",
    "successful_navigations": "SUM(CASE WHEN {nav} THEN ok ELSE 0 END)",
    "avg_navigation_duration_ms": "MAX(CASE WHEN {nav} THEN 1e0 * dsum / n END)",
    "min_navigation_duration_ms": "MAX(CASE WHEN {nav} THEN dmin END)",
    "max_navigation_duration_ms": "MAX(CASE WHEN {nav} THEN dmax END)",
    "avg_retry_count": "MAX(CASE WHEN {nav} THEN 1e0 * retries / n END)",
    "p95_navigation_duration_ms": "MAX(CASE WHEN {nav} THEN {p95} END)",
    "total_scrapes": "SUM(CASE WHEN {scrape} THEN n ELSE 0 END)",
    "successful_scrapes": "SUM(CASE WHEN {scrape} THEN ok ELSE 0 END)",
    "avg_scrape_duration_ms": "MAX(CASE WHEN {scrape} THEN 1e0 * dsum / n END)",
    "min_scrape_duration_ms": "MAX(CASE WHEN {scrape} THEN dmin END)",
    "max_scrape_duration_ms": "MAX(CASE WHEN {scrape} THEN dmax END)",
    "p95_scrape_duration_ms": "MAX(CASE WHEN {scrape} THEN {p95} END)",
    "total_items_extracted": "SUM(items)",
    "total_data_size": "SUM(bytes)",
    "error_count": "SUM(n - ok)",
}
_SCHEDULER_COLUMNS = {
    "total_runs": "SUM(n)",
    "successful_runs": "SUM(ok)",
    "error_count": "SUM(n - ok)",
    "avg_execution_duration_ms": "1e0 * SUM(dsum) / SUM(n)",
    "min_execution_duration_ms": "MIN(dmin)",
    "max_execution_duration_ms": "MAX(dmax)",
    "p95_execution_duration_ms": "MAX({p95})",
    "total_items_processed": "SUM(items)",
}


def _summary_sql(table: str, key: str, columns: dict[str, str], where: str, group: str) -> str:
    expressions = [
        sql.format(nav="metric_type = 'page_navigation'", scrape="metric_type = 'page_scrape'", p95=_P95)
        for sql in columns.values()
    ]
    names = [key, "metric_date", *columns, "updated_at"]
    merges: dict[str, Merge] = {name: "replace" for name in [*columns, "updated_at"]}
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT {key}, %s, {', '.join(expressions)}, %s "
        f"FROM ({_PER_TYPE.format(group=group, where=where, rollups=HourlyRollup._meta.db_table)}) AS t "
        f"WHERE true GROUP BY {key} " + upsert_clause([key, "metric_date"], merges)
    )


def _scheduler_summary_sql() -> str:
    return _summary_sql(
        SchedulerDailySummary._meta.db_table,
        "scheduler_name",
        _SCHEDULER_COLUMNS,
        where="metric_type = 'scheduler_run'",
        group="scheduler_name",
    )


def _page_summary_sql() -> str:
    return _summary_sql(
        DailySummary._meta.db_table,
        "scraper_source",
        _PAGE_COLUMNS,
        where="metric_type IN ('page_navigation', 'page_scrape')",
        group="scraper_source, metric_type",
    )


def _data_summary_sql(day_table: str, hours: DataGrain) -> str:
    """A day's field (or status) counts per source: the sums of its hours."""
    key = ["scraper_source", "metric_date", hours.key_column]
    sums = ", ".join(f"SUM({counter})" for counter in hours.counters)
    merges: dict[str, Merge] = {name: "replace" for name in [*hours.counters, "updated_at"]}
    return (
        f"INSERT INTO {day_table} ({', '.join([*key, *hours.counters, 'updated_at'])}) "
        f"SELECT scraper_source, %s, {hours.key_column}, {sums}, %s FROM {hours.table} "
        f"WHERE hour >= %s AND hour < %s GROUP BY scraper_source, {hours.key_column} "
        + upsert_clause(key, merges)
    )


@dataclass(frozen=True)
class DayResult:
    day: date
    sources: int
    schedulers: int
    records: int

    def __str__(self) -> str:
        return f"{self.day}: {self.records} records, {self.sources} sources, {self.schedulers} schedulers"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The day's first instant and the next day's, in TIME_ZONE (23 or 25 hours across DST)."""
    zone = timezone.get_current_timezone()
    return (
        datetime.combine(day, time(), tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time(), tzinfo=zone),
    )


def aggregate_day(day: date) -> DayResult:
    """Build (or rebuild) the page and scheduler summaries of one day."""
    start, end = day_bounds(day)
    bounds = [db_instant(start), db_instant(end)]
    now = db_instant(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_page_summary_sql(), [day.isoformat(), now, *bounds])
        cursor.execute(_scheduler_summary_sql(), [day.isoformat(), now, *bounds])
        for day_table, hours in (
            (FieldDay._meta.db_table, FIELD_HOURS),
            (StatusDay._meta.db_table, STATUS_HOURS),
        ):
            cursor.execute(_data_summary_sql(day_table, hours), [day.isoformat(), now, *bounds])
        cursor.execute(
            "SELECT COUNT(DISTINCT CASE WHEN metric_type <> 'scheduler_run' THEN scraper_source END),"
            " COUNT(DISTINCT CASE WHEN metric_type = 'scheduler_run' THEN scheduler_name END),"
            f" SUM(records) FROM {HourlyRollup._meta.db_table} WHERE hour >= %s AND hour < %s",
            bounds,
        )
        sources, schedulers, records = cursor.fetchone()
        cursor.execute(
            f"INSERT INTO {AggregatedDay._meta.db_table} (metric_date, sources, aggregated_at) "
            "VALUES (%s, %s, %s) "
            + upsert_clause(["metric_date"], {"sources": "replace", "aggregated_at": "replace"}),
            [day.isoformat(), sources + schedulers, now],
        )
    return DayResult(day, sources, schedulers, int(records or 0))


def days_to_aggregate(today: date | None = None) -> list[date]:
    """Every day up to yesterday that has rollups but no summaries yet, and yesterday itself
    (records may arrive late). Missed nights are caught up this way."""
    yesterday = (today or timezone.localdate()) - timedelta(days=1)
    first_hour = HourlyRollup.objects.aggregate(first=Min("hour"))["first"]
    if first_hour is None:
        return []
    first = timezone.localdate(first_hour)
    done = set(AggregatedDay.objects.filter(metric_date__gte=first).values_list("metric_date", flat=True))
    days = (first + timedelta(days=n) for n in range((yesterday - first).days + 1))
    return [day for day in days if day not in done or day == yesterday]


def catch_up(progress: Callable[[DayResult], None] | None = None) -> list[DayResult]:
    """The nightly job: summarise every day that needs it."""
    results = []
    for day in days_to_aggregate():
        result = aggregate_day(day)
        if progress is not None:
            progress(result)
        results.append(result)
    return results
