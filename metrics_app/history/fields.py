"""What a source's data held over a range, or every source's HTTP statuses (GET /api/fields/),
and over the alert window and ever (GET /metrics): each field's items, filled and invalid, and
the navigations per HTTP status, read from the field and status rollups (metrics_app.rollups,
"What the data holds").

The range and its axis are the page's (metrics_app.history.overview): minutes for live and 1h,
hours for 24h and 7d, every bucket of the range present, the last one still filling.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Min, QuerySet, Sum
from django.utils import timezone

from metrics_app.data_models import StatusDay, StatusHour
from metrics_app.history import entities, overview
from metrics_app.rollups import FIELD_HOURS, FIELD_MINUTES, STATUS_HOURS, STATUS_MINUTES, DataGrain
from metrics_app.tally import iso


def share_parts(items: int, filled: int, invalid: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """A field's two shares, each as (part, whole): the one definition, read by the API, the
    Prometheus gauges and the field_broken rule alike. The filled share is the items that had
    the field filled, of the items; the valid share is the filled that passed its check, of the
    filled, not of all items: an empty field is the filled share's to tell, so a field half
    empty but always right reads 50 % filled, 100 % valid."""
    return (filled, items), (filled - invalid, filled)


def ratios(items: int, filled: int, invalid: int) -> tuple[float | None, float | None]:
    """The filled and valid shares as fractions; None where there is nothing to divide."""
    (filled_part, of_items), (valid_part, of_filled) = share_parts(items, filled, invalid)
    return (
        filled_part / of_items if of_items else None,
        valid_part / of_filled if of_filled else None,
    )


def fields(source: str, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """Each field of `source` over the range, by name: its totals, its shares and its buckets
    along the whole axis (zeros where the field was not reported); the source's navigations
    per HTTP status, commonest first; and its stale entities along the axis."""
    span = overview.RANGES[range_name]
    now = now or timezone.now()
    starts = overview.axis(span, now)
    end = now + timedelta(microseconds=1)
    by_field: dict[str, dict[datetime, tuple[int, int, int]]] = {}
    data_grain = FIELD_MINUTES if span.bucket == "minute" else FIELD_HOURS
    for at, name, items, filled, invalid in _rows(data_grain, starts[0], end, [source]).values_list(
        data_grain.grain.time_column, "field", "items", "filled", "invalid"
    ):
        by_field.setdefault(name, {})[at] = (items, filled, invalid)
    answer = []
    for name, slots in sorted(by_field.items()):
        items, filled, invalid = (sum(counts[n] for counts in slots.values()) for n in range(3))
        filled_share, valid_share = ratios(items, filled, invalid)
        answer.append({
            "field": name, "items": items, "filled": filled, "invalid": invalid,
            "filledRatio": filled_share, "validRatio": valid_share,
            "buckets": [_bucket(at, *slots.get(at, (0, 0, 0))) for at in starts],
        })  # fmt: skip
    statuses = _statuses(span, starts[0], end, [source]).get(source, [])
    return {
        "fields": answer,
        "statuses": statuses,
        "staleEntities": entities.stale_over_time(source, starts, end),
    }


def statuses_by_source(range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """Every source's navigations per HTTP status over the range, commonest first, the sources
    busiest first: the status mix per source, which needs no field names to compare."""
    span = overview.RANGES[range_name]
    now = now or timezone.now()
    found = _statuses(span, overview.axis(span, now)[0], now + timedelta(microseconds=1), None)
    totals = {source: sum(s["navigations"] for s in statuses) for source, statuses in found.items()}
    busiest = sorted(found, key=lambda source: (-totals[source], source))
    return {
        "sources": [
            {"source": source, "navigations": totals[source], "statuses": found[source]} for source in busiest
        ]
    }


def _statuses(
    span: overview.Range, start: datetime, end: datetime, sources: Iterable[str] | None
) -> dict[str, list[dict[str, int]]]:
    """Navigations per HTTP status of each source (of `sources`; None: all) over start … end,
    summed in the database, the commonest status first."""
    status_grain = STATUS_MINUTES if span.bucket == "minute" else STATUS_HOURS
    rows = (
        _rows(status_grain, start, end, sources)
        .values_list("scraper_source", "http_status")
        .annotate(n=Sum("navigations"))
        .order_by("scraper_source", "-n", "http_status")
    )
    found: dict[str, list[dict[str, int]]] = {}
    for source, code, n in rows:
        found.setdefault(source, []).append({"code": code, "navigations": n})
    return found


def _bucket(start: datetime, items: int, filled: int, invalid: int) -> dict[str, Any]:
    return {"start": iso(start), "items": items, "filled": filled, "invalid": invalid}


def window_ratios(
    start: datetime, end: datetime, sources: Iterable[str] | None
) -> list[tuple[str, str, float | None, float | None]]:
    """(source, field, filled share, valid share) over the whole minutes of start … end, every
    source's fields summed in the database (one grouped read, a row per source and field)."""
    rows = (
        _rows(FIELD_MINUTES, start.replace(second=0, microsecond=0), end, sources)
        .values_list("scraper_source", "field")
        .annotate(Sum("items"), Sum("filled"), Sum("invalid"))
        .order_by("scraper_source", "field")
    )
    return [(source, name, *ratios(items, filled, invalid)) for source, name, items, filled, invalid in rows]


def responses_ever(sources: Iterable[str] | None) -> dict[tuple[str, int], int]:
    """Navigations per source and HTTP status since the first record: a counter that only
    grows. Hours are trimmed after the retention window, hour by hour, and days are kept
    forever: the days before the first kept hour's day, then that day (its hours, or its
    summary when more of it was summarised than is left in hours), then the hours after."""
    first_hour = StatusHour.objects.aggregate(first=Min("hour"))["first"]
    if first_hour is None:
        return _summed(StatusDay.objects.all(), sources)
    first_day = timezone.localtime(first_hour).replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = first_day + timedelta(days=1)  # wall-clock arithmetic: the next local midnight
    found = _summed(StatusDay.objects.filter(metric_date__lt=first_day.date()), sources)
    summary = _summed(StatusDay.objects.filter(metric_date=first_day.date()), sources)
    partial = _summed(StatusHour.objects.filter(hour__gte=first_day, hour__lt=next_day), sources)
    for key in summary.keys() | partial.keys():
        found[key] = found.get(key, 0) + max(summary.get(key, 0), partial.get(key, 0))
    for key, n in _summed(StatusHour.objects.filter(hour__gte=next_day), sources).items():
        found[key] = found.get(key, 0) + n
    return found


def _summed(rows: QuerySet[Any], sources: Iterable[str] | None) -> dict[tuple[str, int], int]:
    """Navigations per (source, status) of status rows, summed in the database."""
    if sources is not None:
        rows = rows.filter(scraper_source__in=list(sources))
    grouped = rows.order_by().values_list("scraper_source", "http_status").annotate(Sum("navigations"))
    return {(source, code): n for source, code, n in grouped}


def _rows(
    data_grain: DataGrain, start: datetime, end: datetime, sources: Iterable[str] | None
) -> QuerySet[Any]:
    """The rows of the minutes or hours that start in start … end, of `sources` (None: all)."""
    column = data_grain.grain.time_column
    rows = data_grain.model._default_manager.filter(
        **{f"{column}__gte": start, f"{column}__lt": end}
    ).order_by()
    if sources is not None:
        rows = rows.filter(scraper_source__in=list(sources))
    return rows
