"""Raw SQL that works on both MySQL/MariaDB and SQLite: the multi-row INSERT, the upsert
clause (which they spell differently), and times in statements (as text, as epoch ms)."""

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from django.db import connection

Merge = Literal["replace", "sum", "min", "max"]

_MYSQL: Mapping[Merge, str] = {
    "replace": "{0} = VALUES({0})",
    "sum": "{0} = {0} + VALUES({0})",
    "min": "{0} = LEAST({0}, VALUES({0}))",
    "max": "{0} = GREATEST({0}, VALUES({0}))",
}
_SQLITE: Mapping[Merge, str] = {
    "replace": "{0} = excluded.{0}",
    "sum": "{0} = {0} + excluded.{0}",
    "min": "{0} = MIN({0}, excluded.{0})",
    "max": "{0} = MAX({0}, excluded.{0})",
}


@functools.lru_cache(maxsize=64)
def insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """A multi-row INSERT with placeholders: one round trip for many rows. Cached, since
    batches come in few sizes; bounded, since the text of 1000 rows is tens of KB and a
    fleet's batch sizes vary."""
    one_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return _insert_head(table, columns) + " " + ", ".join([one_row] * rows)


def _insert_head(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES"


def execute_rows(
    cursor: Any, table: str, columns: tuple[str, ...], rows: Sequence[tuple[int | str, ...]], tail: str = ""
) -> None:
    """A multi-row INSERT of `rows` of ints and strings into `table`, then `tail` (an upsert
    clause).

    For the rollups' upserts, whose rows hold only ints and strings the service formed itself
    (validated names, bucket times). On MySQL the VALUES are written out here: mysqlclient
    renders each parameter through a chain of Python calls (about 0.5 µs; a group of 150
    records with 10 fields per scrape has some 900 of them), while a batch repeats the same
    few names and times, so each distinct string goes through the driver's own escaping once.
    """
    if connection.vendor != "mysql":
        cursor.execute(f"{insert_sql(table, columns, len(rows))} {tail}", [v for row in rows for v in row])
        return
    escape = connection.connection.string_literal
    quoted: dict[str, str] = {}
    rendered = []
    for row in rows:
        values = []
        for value in row:
            if type(value) is int:
                values.append(str(value))
            elif type(value) is str:
                text = quoted.get(value)
                if text is None:
                    text = quoted[value] = escape(value.encode()).decode()
                values.append(text)
            else:
                raise TypeError(f"a rollup value must be an int or a str, not {type(value).__name__}")
        rendered.append("(" + ", ".join(values) + ")")
    # No parameters: mysqlclient sends the text as it is (a % in it is not a placeholder).
    cursor.execute(f"{_insert_head(table, columns)} {', '.join(rendered)} {tail}")


def upsert_clause(key: Sequence[str], merges: Mapping[str, Merge]) -> str:
    """What follows an INSERT so a row whose key exists is merged into it instead.

    With INSERT … SELECT on SQLite the SELECT needs a WHERE clause (`WHERE true` will do), or
    the parser takes ON CONFLICT for a join constraint."""
    if connection.vendor == "mysql":
        return "ON DUPLICATE KEY UPDATE " + ", ".join(_MYSQL[how].format(c) for c, how in merges.items())
    assignments = ", ".join(_SQLITE[how].format(c) for c, how in merges.items())
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {assignments}"


def db_datetime(ms: int) -> str:
    """recordedAt as the naive-UTC text both MySQL DATETIME(6) and Django's SQLite accept.

    Formatting here instead of passing a datetime through Django's adapters keeps the bulk
    insert a plain executemany that mysqlclient folds into one multi-row INSERT.
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def db_instant(value: datetime) -> str:
    """An aware datetime as a naive-UTC bound for raw SQL on either database, whole seconds:
    the form rollup hours are stored in (SQLite compares them as text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def db_start(ms: int) -> str:
    """A rollup bucket's start (hour or minute), given in ms since the epoch, as db_instant
    writes it."""
    return db_instant(datetime.fromtimestamp(ms / 1000, UTC))


def epoch_ms_sql(column: str) -> str:
    """A DATETIME column as milliseconds since the epoch, on either database, whatever the
    session's time zone (the columns hold naive UTC)."""
    if connection.vendor == "mysql":
        return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column}) DIV 1000"
    # SQLite's julianday() counts in whole milliseconds inside; ROUND undoes the float.
    return f"CAST(ROUND((julianday({column}) - 2440587.5) * 86400000) AS INTEGER)"


def force_index(name: str) -> str:
    """An index hint after a table's name in FROM: MySQL's planner misjudges some shapes (a long
    OR of ranges, each over the hinted index, it reads as a scan of another); SQLite's plans
    them right."""
    return f"FORCE INDEX ({name})" if connection.vendor == "mysql" else ""
