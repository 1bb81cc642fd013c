"""Timestamps as the API shows them: always timezone-aware UTC.

SQLite has no time zone type, so a `DateTime(timezone=True)` column reads back naive
there while PostgreSQL reads back aware; without this the same field would be
`...Z` on one database (and in a POST's answer) and zone-less on the other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _as_utc(value: datetime) -> datetime:
    """Every timestamp ownkey stores is UTC; a naive one only lost its zone on the way."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
