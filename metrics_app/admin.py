"""Browsing metrics in the admin: read-only rows, filters, search, and API key management."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from metrics_app.models import (
    ApiKey,
    DailySummary,
    HourlyRollup,
    PagePerformance,
    SchedulerDailySummary,
    SchedulerMetric,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Metrics are facts recorded by scrapers: the admin shows them, it does not edit them."""

    list_per_page = 100
    date_hierarchy = "created_at"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PagePerformance)
class PagePerformanceAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
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
    )
    list_filter = ("scraper_source", "metric_type", "success", "created_at")
    search_fields = ("page_url", "error", "scraper_source")
    ordering = ("-created_at", "-id")


@admin.register(SchedulerMetric)
class SchedulerMetricAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "scheduler_name",
        "scraper_source",
        "execution_duration_ms",
        "items_processed",
        "success",
        "error",
    )
    list_filter = ("scheduler_name", "scraper_source", "success", "created_at")
    search_fields = ("scheduler_name", "scraper_source", "error")
    ordering = ("-created_at", "-id")


@admin.register(DailySummary)
class DailySummaryAdmin(ReadOnlyAdmin):
    date_hierarchy = "metric_date"
    list_display = (
        "metric_date",
        "scraper_source",
        "total_navigations",
        "successful_navigations",
        "avg_navigation_duration_ms",
        "total_scrapes",
        "successful_scrapes",
        "avg_scrape_duration_ms",
        "p95_navigation_duration_ms",
        "p95_scrape_duration_ms",
        "total_items_extracted",
        "error_count",
    )
    list_filter = ("scraper_source", "metric_date")
    search_fields = ("scraper_source",)
    ordering = ("-metric_date", "scraper_source")


@admin.register(SchedulerDailySummary)
class SchedulerDailySummaryAdmin(ReadOnlyAdmin):
    date_hierarchy = "metric_date"
    list_display = (
        "metric_date",
        "scheduler_name",
        "total_runs",
        "successful_runs",
        "error_count",
        "avg_execution_duration_ms",
        "p95_execution_duration_ms",
        "total_items_processed",
    )
    list_filter = ("scheduler_name", "metric_date")
    search_fields = ("scheduler_name",)
    ordering = ("-metric_date", "scheduler_name")


@admin.register(HourlyRollup)
class HourlyRollupAdmin(ReadOnlyAdmin):
    date_hierarchy = "hour"
    list_display = (
        "hour",
        "scraper_source",
        "metric_type",
        "scheduler_name",
        "duration_bucket",
        "records",
        "successes",
        "duration_sum",
        "items_sum",
    )
    list_filter = ("metric_type", "scraper_source")
    search_fields = ("scraper_source", "scheduler_name")
    ordering = ("-hour", "scraper_source")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here (the key is shown once, in a message) and revoked, never edited."""

    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at", "active")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)
    ordering = ("-created_at",)

    @admin.display(boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        api_key, key = ApiKey.issue(obj.name)
        obj.pk, obj.prefix, obj.key_hash = api_key.pk, api_key.prefix, api_key.key_hash
        obj.created_at = api_key.created_at
        messages.warning(request, f"The new key (shown only now; copy it): {key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:  # one by one, so this process's key cache hears of each
            api_key.revoke()
        messages.success(request, f"Revoked {len(active)} key(s).")
