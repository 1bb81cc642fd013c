"""Price lookup for the worker: the user's overrides in SQL over the shipped table.

Overrides change rarely and every step needs a price, so each process keeps them for
a few seconds instead of asking the database per step.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from sqlmodel import select

from shared.db import read_session
from shared.models import ModelPrice
from shared.pricing import Price, price_for

__all__ = ["forget_cached_prices", "price_lookup"]

CACHE_SECONDS = 10.0
# A model with no price at all is looked up again this soon: a price just added for it
# applies to the next step, while changes to a known price apply within CACHE_SECONDS.
MISS_RELOAD_SECONDS = 1.0

_lock = threading.Lock()
_cache: tuple[float, dict[tuple[str, str], Price]] | None = None


def price_from_row(row: ModelPrice) -> Price:
    return Price(
        input=Decimal(row.input_per_mtok),
        output=Decimal(row.output_per_mtok),
        cached_input=None
        if row.cached_input_per_mtok is None
        else Decimal(row.cached_input_per_mtok),
    )


def load_overrides() -> dict[tuple[str, str], Price]:
    with read_session() as session:
        rows = session.exec(select(ModelPrice)).all()
        return {(row.provider, row.model): price_from_row(row) for row in rows}


def _overrides(max_age: float) -> dict[tuple[str, str], Price]:
    global _cache
    now = time.monotonic()
    with _lock:
        if _cache is None or now - _cache[0] > max_age:
            _cache = (now, load_overrides())
        return _cache[1]


def price_lookup(provider: str, model: str) -> Price | None:
    price = price_for(provider, model, _overrides(CACHE_SECONDS))
    if price is None:
        price = price_for(provider, model, _overrides(MISS_RELOAD_SECONDS))
    return price


def forget_cached_prices() -> None:
    global _cache
    with _lock:
        _cache = None
