"""Aggregation, retention and history at scale, on MariaDB (its SEQUENCE engine makes the rows).

    DATABASE_URL=mysql://root@127.0.0.1:3306/wealthmetrics_bench .venv/bin/python bench/aggregate.py

The database named in DATABASE_URL (its name must contain "bench") is dropped and created.
It loads one expired day of --expired-rows detailed rows (nine days ago) and seven recent
days of --recent-rows in all, into tables partitioned by day as a running installation has
them, then times:
  - rebuilding the hourly rollups of the big day from its detailed rows (the repair path);
  - the daily aggregation of the big day (the nightly path, from the rollups);
  - a 7-day hourly history query for one source and for all, with every row present;
  - the cleanup that removes the expired day, while a thread stores 100-record batches every
    20 ms and measures each store (the longest is the insert stall).
With --keep-data it skips the cleanup and leaves every row in place, for bench/browser.py
--history to draw.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")


from bench.common import fresh_bench_database, machine  # noqa: E402

CHUNK = 500_000
DAY_US = 86_400_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expired-rows", type=int, default=10_000_000, help="rows of the expired day")
    parser.add_argument("--recent-rows", type=int, default=7_000_000, help="rows over the last 7 days")
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each timed query (median)")
    parser.add_argument("--keep-data", action="store_true", help="skip the cleanup: leave every row in place")
    args = parser.parse_args()

    fresh_bench_database()

    today = datetime.now(UTC).date()
    expired = today - timedelta(days=9)
    recent = [today - timedelta(days=n) for n in range(7, 0, -1)]
    print(f"machine: {machine()}, {server_version()}")
    split_partitions(expired, today)

    began = time.perf_counter()
    load_day(expired, args.expired_rows, args.sources)
    for day in recent:
        load_day(day, args.recent_rows // 7, args.sources)
    total = args.expired_rows + args.recent_rows
    print(f"loaded {total:,} rows in {time.perf_counter() - began:.0f} s")

    from metrics_app import db

    with db.long_queries():  # as aggregate_daily does: maintenance outlasts a request's timeout
        measure(expired, recent, total, args.repeat)
    if not args.keep_data:
        cleanup_under_load()


def measure(expired: date, recent: list[date], total: int, repeat: int) -> None:
    from metrics_app import rollups
    from metrics_app.history import reads, summaries

    timings: dict[str, Any] = {}
    start = datetime.combine(expired, datetime.min.time(), tzinfo=UTC)
    seconds, rolled = timed(lambda: rollups.rebuild(start, start + timedelta(days=1)))
    print(f"rollups of the {rolled:,}-record day rebuilt from detailed rows: {seconds:.2f} s")
    for day in recent:
        day_start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        rollups.rebuild(day_start, day_start + timedelta(days=1))

    runs = [timed(lambda: summaries.aggregate_day(expired))[0] for _ in range(repeat)]
    timings["aggregate"] = statistics.median(runs)
    print(f"daily aggregation of the {rolled:,}-record day: median {1000 * timings['aggregate']:.1f} ms "
          f"(runs {', '.join(f'{1000 * r:.1f}' for r in runs)})")  # fmt: skip

    now = datetime.now(UTC)
    for label, source in (("one source", "source-3"), ("all sources", None)):
        runs, buckets = [], []
        for _ in range(repeat * 4):
            began = time.perf_counter()
            buckets = reads.history(source, None, now - timedelta(days=7), now, "hour")
            runs.append(time.perf_counter() - began)
        print(
            f"7-day hourly history, {label}, {total:,} rows present: "
            f"median {1000 * statistics.median(runs):.1f} ms, max {1000 * max(runs):.1f} ms, "
            f"{len(buckets)} buckets"
        )


def server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION(), @@innodb_buffer_pool_size, @@innodb_flush_log_at_trx_commit")
        version, pool, flush = cursor.fetchone()
    return f"MariaDB {version}, buffer pool {int(pool) >> 20} MiB, flush_log_at_trx_commit={flush}"


def split_partitions(first: date, today: date) -> None:
    """Give every day from `first` its own partition, as the daily cleanup does on a server
    that has been running; the migration put everything before its own day in p_past."""
    from django.db import connection

    from metrics_app import retention

    days = [first + timedelta(days=n) for n in range((today - first).days)]
    for table in retention.DETAILED_TABLES:
        parts = ", ".join(
            f"PARTITION {retention.partition_name(d)} "
            f"VALUES LESS THAN ({retention.to_days(d + timedelta(days=1))})"
            for d in days
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {table} REORGANIZE PARTITION {retention.PAST} INTO "
                f"(PARTITION {retention.PAST} VALUES LESS THAN ({retention.to_days(first)}), {parts})"
            )


def load_day(day: date, rows: int, sources: int) -> None:
    """Insert `rows` page records spread over the day, half navigations and half scrapes,
    with lognormal durations; and a scheduler run per minute. Built in the server."""
    from django.db import connection

    midnight = f"{day.isoformat()} 00:00:00"
    began = time.perf_counter()
    duration = "CAST(EXP(5.5 + 0.8 * SQRT(-2 * LN(1 - RAND())) * COS(2 * PI() * RAND())) AS UNSIGNED)"
    with connection.cursor() as cursor:
        for first in range(0, rows, CHUNK):
            last = min(rows, first + CHUNK) - 1
            cursor.execute(
                f"""INSERT INTO scraper_page_performance (scraper_source, metric_type, page_url,
                    navigation_duration_ms, retry_count, scrape_duration_ms, items_extracted, data_size,
                    success, error, created_at)
                SELECT CONCAT('source-', seq % {sources}), IF(seq % 2, 'page_scrape', 'page_navigation'),
                       CONCAT('https://example.com/quotes/', seq % 5000),
                       IF(seq % 2, NULL, d), IF(seq % 2, NULL, seq % 3),
                       IF(seq % 2, d, NULL), IF(seq % 2, seq % 50, NULL),
                       IF(seq % 2, 20000 + seq % 9000, NULL),
                       seq % 20 <> 0, IF(seq % 20 = 0, 'net::ERR_TIMED_OUT', NULL),
                       TIMESTAMPADD(MICROSECOND, seq * {DAY_US // rows}, '{midnight}')
                FROM (SELECT seq, {duration} AS d FROM seq_{first}_to_{last}) AS s"""
            )
        cursor.execute(
            f"""INSERT INTO scheduler_metrics (scheduler_name, scraper_source, execution_duration_ms,
                items_processed, success, error, created_at)
            SELECT 'every-minute', NULL, 1000 + seq % 4000, seq % 200, seq % 30 <> 0, NULL,
                   TIMESTAMPADD(MINUTE, seq, '{midnight}')
            FROM seq_0_to_1439"""
        )
    seconds = time.perf_counter() - began
    print(f"  {day}: {rows:,} rows in {seconds:.0f} s ({rows / seconds:,.0f} rows/s)", flush=True)


def timed(work: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = work()
    return time.perf_counter() - began, result


class Inserter(threading.Thread):
    """Stores 100-record batches every 20 ms, as scrapers would, timing each store."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (started, seconds)

    def run(self) -> None:
        from django.db import connection

        from metrics_app.ingest.storage import store_metrics
        from metrics_app.records import now_ms, validate_records

        try:
            while not self.stop.is_set():
                records = validate_records(
                    [{"type": "page_navigation", "scraperSource": f"live-{i % 4}", "url": "https://x/",
                      "navigationDurationMs": 100 + i, "recordedAt": now_ms()} for i in range(100)]
                )  # fmt: skip
                began = time.perf_counter()
                store_metrics(records)
                self.latencies.append((began, time.perf_counter() - began))
                time.sleep(0.02)
        finally:
            connection.close()

    def between(self, start: float, end: float) -> list[float]:
        return [seconds for began, seconds in self.latencies if start <= began + seconds and began <= end]


def cleanup_under_load() -> None:
    from metrics_app import db, retention

    inserter = Inserter()
    inserter.start()
    time.sleep(5)
    began = time.perf_counter()
    with db.long_queries():  # as cleanup_metrics does
        report = retention.cleanup(8)
    ended = time.perf_counter()
    time.sleep(2)
    inserter.stop.set()
    inserter.join()
    during = inserter.between(began, ended)
    before = inserter.between(0, began)
    print(f"cleanup (keep 8 days): {ended - began:.2f} s, deleted {report.deleted:,} rows")
    for table in report.tables:
        print(f"  {table}")
    print(
        f"inserts meanwhile: {len(during)} batches, longest {1000 * max(during, default=0):.0f} ms "
        f"(before the cleanup: {len(before)} batches, longest {1000 * max(before, default=0):.0f} ms, "
        f"median {1000 * statistics.median(before):.1f} ms)"
    )


if __name__ == "__main__":
    main()
