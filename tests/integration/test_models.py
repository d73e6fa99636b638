"""Tables, columns and indexes as documented (README, docs/api.md); models match migrations."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection


def test_models_match_migrations(db: None) -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def index_columns(table: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]


@pytest.mark.django_db
def test_tables_have_the_documented_columns() -> None:
    assert columns("scraper_page_performance") >= {
        "id",
        "scraper_source",
        "metric_type",
        "page_url",
        "navigation_duration_ms",
        "retry_count",
        "scrape_duration_ms",
        "items_extracted",
        "data_size",
        "success",
        "error",
        "created_at",
    }
    assert columns("scheduler_metrics") >= {
        "id",
        "scheduler_name",
        "scraper_source",
        "execution_duration_ms",
        "items_processed",
        "success",
        "error",
        "created_at",
    }
    assert columns("scraper_daily_summary") >= {
        "scraper_source",
        "metric_date",
        "total_navigations",
        "successful_navigations",
        "avg_navigation_duration_ms",
        "min_navigation_duration_ms",
        "max_navigation_duration_ms",
        "avg_retry_count",
        "total_scrapes",
        "successful_scrapes",
        "avg_scrape_duration_ms",
        "total_items_extracted",
    }


@pytest.mark.django_db
def test_tables_have_the_documented_indexes() -> None:
    assert ["scraper_source", "created_at"] in index_columns("scraper_page_performance")
    assert ["metric_type", "scraper_source", "created_at"] in index_columns("scraper_page_performance")
    assert ["scheduler_name", "created_at"] in index_columns("scheduler_metrics")
    assert ["scraper_source", "metric_date"] in index_columns("scraper_daily_summary")
