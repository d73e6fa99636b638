"""Browsing metrics in the admin: read-only rows, filters, search, and API key management."""

from datetime import datetime, timedelta
from typing import Any, Final

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from metrics_app import histogram
from metrics_app.alerts.models import Verdict
from metrics_app.models import (
    Alert,
    AlertEvent,
    ApiKey,
    DailySummary,
    HourlyRollup,
    Notification,
    PagePerformance,
    SchedulerDailySummary,
    SchedulerMetric,
    Silence,
    Source,
    Threshold,
)


def duration(ms: float | None) -> str:
    """A duration as the page writes it: ms below a second, s above, 2-3 significant figures."""
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.3g} ms"
    return f"{ms / 1000:.2g} s" if ms < 10_000 else f"{ms / 1000:.0f} s"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def size(n: int | None) -> str:
    """Bytes as the page writes them: "56.4 KB", not "56375"."""
    if n is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def shortened(text: str | None, at: int = 80) -> str:
    return "–" if not text else text if len(text) <= at else text[: at - 1] + "…"


def moment(value: datetime | None) -> str:
    """A time in TIME_ZONE, to the second."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "–"


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT rows: a COUNT(*) over ten million rows costs seconds on every
    page. Past the limit the admin offers the first pages and says "10,000+"; filter to narrow."""

    COUNT_LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        return int(self.object_list[: self.COUNT_LIMIT].count())  # type: ignore[attr-defined]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Metrics are facts recorded by scrapers: the admin shows them, it does not add, change or
    delete them (retention deletes; deleting here would make rollups disagree with the rows)."""

    list_per_page = 100
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DetailedRowsAdmin(ReadOnlyAdmin):
    """Tables of millions of rows: a bounded count, filters the indexes serve, and a date
    hierarchy of the days the table holds (its first and last row: two index lookups) instead
    of Django's, which reads every row's date."""

    date_hierarchy = "created_at"
    paginator = BoundedCountPaginator
    change_list_template = "admin/metrics_app/detailed_change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        span = self.model.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
        days = []
        if span["first"] is not None:
            day, last = timezone.localdate(span["first"]), timezone.localdate(span["last"])
            while day <= last:
                query = (
                    f"?created_at__year={day.year}&created_at__month={day.month}&created_at__day={day.day}"
                )
                days.append({"title": day.strftime("%a %d %b"), "link": query})
                day += timedelta(days=1)
        return super().changelist_view(request, {**(extra_context or {}), "days": days})

    @admin.display(description="recorded at", ordering="created_at")
    def recorded(self, obj: Any) -> str:
        return moment(obj.created_at)


@admin.register(PagePerformance)
class PagePerformanceAdmin(DetailedRowsAdmin):
    # What a person looks for first (did it fail, and why) before the URL, which is long: the
    # list reads at 1440 px without scrolling sideways.
    list_display = ("recorded", "scraper_source", "metric_type", "success", "error_text", "duration",
                    "items_extracted", "size", "retry_count", "page")  # fmt: skip
    list_filter = ("scraper_source", "metric_type", "success", "created_at")
    search_fields = ("page_url", "error", "scraper_source")
    ordering = ("-created_at", "-id")

    @admin.display(description="duration")
    def duration(self, obj: PagePerformance) -> str:
        return duration(
            obj.navigation_duration_ms if obj.navigation_duration_ms is not None else obj.scrape_duration_ms
        )

    @admin.display(description="error", ordering="error")
    def error_text(self, obj: PagePerformance) -> str:
        return shortened(obj.error)

    @admin.display(description="data size", ordering="data_size")
    def size(self, obj: PagePerformance) -> str:
        return size(obj.data_size)

    @admin.display(description="page url", ordering="page_url")
    def page(self, obj: PagePerformance) -> str:
        return shortened(obj.page_url, 60)


@admin.register(SchedulerMetric)
class SchedulerMetricAdmin(DetailedRowsAdmin):
    list_display = (
        "recorded",
        "scheduler_name",
        "scraper_source",
        "duration",
        "items_processed",
        "success",
        "error",
    )
    list_filter = ("scheduler_name", "scraper_source", "success", "created_at")
    search_fields = ("scheduler_name", "scraper_source", "error")
    ordering = ("-created_at", "-id")

    @admin.display(description="duration", ordering="execution_duration_ms")
    def duration(self, obj: SchedulerMetric) -> str:
        return duration(obj.execution_duration_ms)


@admin.register(DailySummary)
class DailySummaryAdmin(ReadOnlyAdmin):
    date_hierarchy = "metric_date"
    list_display = ("metric_date", "scraper_source", "total_navigations", "navigation_success",
                    "navigation_avg", "navigation_p95", "total_scrapes", "scrape_success", "scrape_avg",
                    "scrape_p95", "total_items_extracted", "error_count")  # fmt: skip
    list_filter = ("scraper_source", "metric_date")
    search_fields = ("scraper_source",)
    ordering = ("-metric_date", "scraper_source")

    @admin.display(description="navigations ok")
    def navigation_success(self, obj: DailySummary) -> str:
        return percent(obj.successful_navigations, obj.total_navigations)

    @admin.display(description="navigation avg")
    def navigation_avg(self, obj: DailySummary) -> str:
        return duration(obj.avg_navigation_duration_ms)

    @admin.display(description="navigation p95")
    def navigation_p95(self, obj: DailySummary) -> str:
        return duration(obj.p95_navigation_duration_ms)

    @admin.display(description="scrapes ok")
    def scrape_success(self, obj: DailySummary) -> str:
        return percent(obj.successful_scrapes, obj.total_scrapes)

    @admin.display(description="scrape avg")
    def scrape_avg(self, obj: DailySummary) -> str:
        return duration(obj.avg_scrape_duration_ms)

    @admin.display(description="scrape p95")
    def scrape_p95(self, obj: DailySummary) -> str:
        return duration(obj.p95_scrape_duration_ms)


@admin.register(SchedulerDailySummary)
class SchedulerDailySummaryAdmin(ReadOnlyAdmin):
    date_hierarchy = "metric_date"
    list_display = ("metric_date", "scheduler_name", "total_runs", "run_success", "error_count", "avg", "p95",
                    "total_items_processed")  # fmt: skip
    list_filter = ("scheduler_name", "metric_date")
    search_fields = ("scheduler_name",)
    ordering = ("-metric_date", "scheduler_name")

    @admin.display(description="runs ok")
    def run_success(self, obj: SchedulerDailySummary) -> str:
        return percent(obj.successful_runs, obj.total_runs)

    @admin.display(description="avg")
    def avg(self, obj: SchedulerDailySummary) -> str:
        return duration(obj.avg_execution_duration_ms)

    @admin.display(description="p95")
    def p95(self, obj: SchedulerDailySummary) -> str:
        return duration(obj.p95_execution_duration_ms)


@admin.register(HourlyRollup)
class HourlyRollupAdmin(ReadOnlyAdmin):
    date_hierarchy = "hour"
    list_display = ("hour_start", "scraper_source", "metric_type", "scheduler_name", "durations", "records",
                    "successes", "average", "items_sum")  # fmt: skip
    list_filter = ("metric_type", "scraper_source")
    search_fields = ("scraper_source", "scheduler_name")
    ordering = ("-hour", "scraper_source")

    @admin.display(description="hour", ordering="hour")
    def hour_start(self, obj: HourlyRollup) -> str:
        return moment(obj.hour)

    @admin.display(description="durations", ordering="duration_bucket")
    def durations(self, obj: HourlyRollup) -> str:
        """The bucket as the range of durations it holds: "1.2 s–1.4 s"."""
        bucket = obj.duration_bucket
        if bucket == 0:
            return "0 ms"
        return f"{duration(histogram.upper_bound(bucket - 1))}–{duration(histogram.upper_bound(bucket))}"

    @admin.display(description="average")
    def average(self, obj: HourlyRollup) -> str:
        return duration(obj.duration_sum / obj.records if obj.records else None)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    """The names records have been sent under, counted against METRICS_MAX_SOURCES. Deleting
    one (a typo's) makes room; it comes back if records are sent under it again."""

    list_display = ("name", "created_at")
    search_fields = ("name",)
    date_hierarchy = "created_at"
    readonly_fields = ("name", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # names come with records


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here (the key is shown once, in a message) and revoked, never edited."""

    list_display = (
        "name",
        "prefix",
        "scope",
        "sources",
        "created_at",
        "last_used_at",
        "revoked_at",
        "active",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "scope")
    search_fields = ("name", "prefix")
    fields = ("name", "scope", "sources", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)
    ordering = ("-created_at",)

    @admin.display(boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "scope", "sources"])
            return
        api_key, key = ApiKey.issue(obj.name, obj.scope, obj.source_list or ())
        obj.pk, obj.prefix, obj.key_hash = api_key.pk, api_key.prefix, api_key.key_hash
        obj.created_at = api_key.created_at
        messages.warning(request, f"The new key (shown only now; copy it): {key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:  # one by one, so this process's key cache hears of each
            api_key.revoke()
        messages.success(request, f"Revoked {len(active)} key(s).")


# --- Alerts ----------------------------------------------------------------------------------


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    # the numbers at each transition (the alert's own are the current ones)
    fields = ("status", "when", "summary", "measured", "compared_with")
    readonly_fields = fields
    can_delete = False

    @admin.display(description="at")
    def when(self, event: AlertEvent) -> str:
        return moment(event.at)

    @admin.display(description="value")
    def measured(self, event: AlertEvent) -> str:
        return figure(event.alert.verdict, event.value)

    @admin.display(description="threshold")
    def compared_with(self, event: AlertEvent) -> str:
        return figure(event.alert.verdict, event.threshold)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Every alert the evaluator raised, with its transitions: the record of what broke."""

    # The summary says what broke: it gets the room (the times and counts are short).
    list_display = (
        "verdict",
        "name",
        "severity",
        "state",
        "summary",
        "started",
        "ended",
        "flaps",
        "silenced",
    )
    list_filter = ("state", "verdict", "severity", "silenced")
    search_fields = ("scraper_source", "scheduler_name", "summary")
    inlines = (AlertEventInline,)
    fields = ("verdict", "scraper_source", "scheduler_name", "sources", "severity", "state", "summary",
              "measured", "compared_with", "threshold_source", "pending_since", "starts_at", "ends_at",
              "last_held_at", "flaps", "silenced")  # fmt: skip
    readonly_fields = fields

    @admin.display(description="source or scheduler")
    def name(self, alert: Alert) -> str:
        return alert.scraper_source or alert.scheduler_name or ", ".join(alert.sources) or "–"

    @admin.display(description="value")
    def measured(self, alert: Alert) -> str:
        return figure(alert.verdict, alert.value)

    @admin.display(description="threshold")
    def compared_with(self, alert: Alert) -> str:
        return figure(alert.verdict, alert.threshold)

    @admin.display(description="started firing", ordering="starts_at")
    def started(self, alert: Alert) -> str:
        return moment(alert.starts_at)

    @admin.display(description="resolved", ordering="ends_at")
    def ended(self, alert: Alert) -> str:
        return moment(alert.ends_at)


# What an alert's value and threshold measure (docs/alerts.md): a share of records, a duration,
# seconds of silence, or a count of what it says.
RATES: Final = {Verdict.SITE_DOWN, Verdict.BLOCKED, Verdict.ERROR_RATE}
SECONDS: Final = {Verdict.NO_DATA, Verdict.SCHEDULER_LATE}


def figure(verdict: str, number: float | None) -> str:
    """A value or threshold as the summary writes it: "59.9 %", not 0.599009900990099."""
    if number is None:
        return "–"
    if verdict in RATES:
        return f"{100 * number:.1f} %"
    if verdict == Verdict.SLOW:
        return duration(number)
    if verdict in SECONDS:
        return duration(1000 * number)
    return f"{number:.3g}"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Deliveries to webhooks and email: what was sent, what is being retried, what gave up."""

    list_display = ("event", "target", "state", "attempts", "next_attempt", "sent", "last_error")
    list_filter = ("state",)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, notification: Notification) -> str:
        return moment(notification.next_attempt_at)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, notification: Notification) -> str:
        return moment(notification.sent_at)


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    """Mute a source, a scheduler or a verdict (or a combination) for a while; alerts are still
    recorded, not notified."""

    list_display = ("__str__", "scraper_source", "scheduler_name", "verdict", "starts_at", "ends_at",
                    "created_by", "reason")  # fmt: skip
    readonly_fields = ("created_by",)

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(Threshold)
class ThresholdAdmin(admin.ModelAdmin):
    """Fixed thresholds, in force beside the learned ones."""

    list_display = ("__str__", "scraper_source", "signal", "value")
