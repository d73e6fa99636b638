"""The duration bucket is one rule written three ways (metrics_app.histogram): in Python for
live records and ingest rollups, in raw SQL for the rollup rebuild, and as an ORM expression for
reads of detailed rows. All three give the same bucket on this database, edges included."""

import pytest
from django.db import connection

from metrics_app import histogram
from metrics_app.models import PagePerformance
from tests.support.db import store
from tests.support.records import navigation

pytestmark = pytest.mark.django_db

# every edge of every bucket, one below and one above, and values far past the last edge
EDGES = {round(histogram.upper_bound(b)) + d for b in range(histogram.BUCKETS) for d in (-1, 0, 1)}
DURATIONS = sorted({0, 1, 2, 3, 2**31 - 1, 10**9} | {d for d in EDGES if 0 <= d < 2**31})


def test_python_sql_and_the_orm_agree_on_every_bucket() -> None:
    store(*(navigation(url=f"u{d}", navigationDurationMs=d) for d in DURATIONS))
    in_python = {d: histogram.bucket_of(d) for d in DURATIONS}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT navigation_duration_ms, {histogram.bucket_sql('navigation_duration_ms')} "
            f"FROM {PagePerformance._meta.db_table}"
        )
        in_sql = {int(d): int(b) for d, b in cursor.fetchall()}
    in_orm = dict(
        PagePerformance.objects.annotate(b=histogram.bucket_expression("navigation_duration_ms")).values_list(
            "navigation_duration_ms", "b"
        )
    )
    assert in_sql == in_python
    assert in_orm == in_python


def test_the_upper_edge_in_sql_is_pythons_rounded() -> None:
    buckets = range(histogram.BUCKETS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(histogram.upper_bound_sql(str(b)) for b in buckets))
        edges = [float(v) for v in cursor.fetchone()]
    assert edges == [round(histogram.upper_bound(b), 1) for b in buckets]
