"""dialect.execute_rows writes the rollups' VALUES itself on MySQL: every string must arrive
exactly as given, whatever it holds, and anything but ints and strings is refused."""

import pytest
from django.db import connection

from metrics_app.dialect import execute_rows
from metrics_app.models import FieldMinute

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = ("it's", 'say "hi"', "back\\slash", "100% %s %(x)s", "a;b -- c", "ünï\u00e7ødé", "\\'; DROP")


def test_strings_arrive_exactly_as_given() -> None:
    table, columns = (
        "scraper_fields_minute",
        ("minute", "scraper_source", "field", "items", "filled", "invalid"),
    )
    rows = [("2026-12-07 10:00:00", "src", name, 3, 2, 1) for name in AWKWARD]
    with connection.cursor() as cursor:
        execute_rows(cursor, table, columns, rows)
        assert FieldMinute.objects.count() == len(AWKWARD)
        if connection.vendor == "mysql":  # elsewhere the driver binds them as parameters
            with pytest.raises(TypeError):
                execute_rows(cursor, table, columns, [("2026-12-07 10:00:00", "src", "f", True, 2, 1)])

    stored = dict(FieldMinute.objects.values_list("field", "items"))
    assert stored == dict.fromkeys(AWKWARD, 3)
