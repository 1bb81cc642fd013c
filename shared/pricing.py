"""List prices per model and the cost of one step.

Prices are USD per million tokens. ``prices.json`` ships a table of public list
prices with its ``as_of`` date; users override entries through the API, and
``price_for`` takes those overrides first.

Cost is computed on *normalized* usage, where ``input_tokens`` counts every
input token, cache reads and cache writes included. That is OpenAI's
``prompt_tokens`` as is; for Anthropic it is ``input_tokens +
cache_read_input_tokens + cache_creation_input_tokens`` (Anthropic's own
``input_tokens`` excludes both). Getting this wrong is the classic LLM-gateway
cost bug, so the provider adapters normalize and this module trusts one shape.

An unknown price gives an unknown cost (None), never zero: a report that says
$0.00 for a model we cannot price would be a lie.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

__all__ = [
    "LOCAL_PROVIDERS",
    "NANOS_PER_USD",
    "Price",
    "nanos_to_usd",
    "price_for",
    "shipped_price",
    "shipped_prices",
    "shipped_prices_as_of",
    "step_cost",
    "usd_to_nanos",
]

log = logging.getLogger(__name__)

LOCAL_PROVIDERS = frozenset({"ollama", "lmstudio"})
# Anthropic bills a (5-minute) cache write at 1.25 x the input price.
ANTHROPIC_CACHE_WRITE_FACTOR = Decimal("1.25")

_PER_MILLION = Decimal(1_000_000)
_COST_QUANTUM = Decimal("0.00000001")
# What may follow a known model name for the longer name to share its price:
# a snapshot date (20241022, 2024-07-18, Mistral's 2411) or "-latest".
_ALIAS_SUFFIX = re.compile(r"-(?:latest|\d{8}|\d{4}-\d{2}-\d{2}|\d{4})")


@dataclass(frozen=True)
class Price:
    """USD per million tokens.

    ``cached_input`` None means a cache read costs the input price.
    ``cache_write`` None means a cache write costs the input price; ``price_for``
    fills in Anthropic's 1.25 x input for Anthropic models, so an override that
    leaves it out still prices Anthropic cache writes correctly.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None

    @property
    def effective_cached_input(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def effective_cache_write(self) -> Decimal:
        return self.input if self.cache_write is None else self.cache_write


_FREE = Price(input=Decimal(0), output=Decimal(0))


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _key(provider: str, model: str) -> tuple[str, str]:
    return provider.strip().lower(), model.strip().lower()


def _load_document() -> dict[str, Any]:
    text = resources.files("shared").joinpath("prices.json").read_text(encoding="utf-8")
    # Decimal straight from the JSON text: 0.075 stays exactly 0.075.
    document: dict[str, Any] = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    return document


@functools.cache
def _shipped_table() -> dict[tuple[str, str], Price]:
    table: dict[tuple[str, str], Price] = {}
    for entry in _load_document()["prices"]:
        table[_key(entry["provider"], entry["model"])] = Price(
            input=Decimal(entry["input"]),
            output=Decimal(entry["output"]),
            cached_input=_decimal_or_none(entry.get("cached_input")),
            cache_write=_decimal_or_none(entry.get("cache_write")),
        )
    return table


def shipped_prices() -> Mapping[tuple[str, str], Price]:
    """The whole shipped table, keyed by (provider, model)."""
    return _shipped_table()


@functools.cache
def shipped_prices_as_of() -> str:
    """The date the shipped list prices were taken (ISO format)."""
    return str(_load_document()["as_of"])


def _resolve(table: Mapping[tuple[str, str], Price], provider: str, model: str) -> Price | None:
    """Exact name first, then the longest known name the model extends by an alias suffix.

    Plain longest-prefix matching would price ``o3-pro`` as ``o3`` (10x too cheap)
    and a future ``claude-opus-4-6`` as ``claude-opus-4``; requiring a date or
    ``-latest`` after the prefix turns those into "unknown" instead.
    """
    exact = table.get((provider, model))
    if exact is not None:
        return exact
    best: tuple[int, Price] | None = None
    for (known_provider, known_model), price in table.items():
        if (
            known_provider == provider
            and model.startswith(known_model)
            and _ALIAS_SUFFIX.fullmatch(model, len(known_model))
            and (best is None or len(known_model) > best[0])
        ):
            best = (len(known_model), price)
    return None if best is None else best[1]


def _with_provider_defaults(provider: str, price: Price) -> Price:
    if provider == "anthropic" and price.cache_write is None:
        return replace(price, cache_write=price.input * ANTHROPIC_CACHE_WRITE_FACTOR)
    return price


def shipped_price(provider: str, model: str) -> Price | None:
    """The shipped list price of a model, or None when the table does not know it."""
    provider, model = _key(provider, model)
    price = _resolve(_shipped_table(), provider, model)
    return None if price is None else _with_provider_defaults(provider, price)


def price_for(
    provider: str, model: str, overrides: Mapping[tuple[str, str], Price]
) -> Price | None:
    """The price to charge a step at, or None when unknown.

    Order: a user override for exactly this (provider, model); then zero for local
    providers (ollama, lmstudio: the user's own hardware); then the shipped table
    merged with the overrides, matched by exact name then alias suffix, so an
    override of ``gpt-4o`` also prices ``gpt-4o-2024-08-06``.
    """
    provider, model = _key(provider, model)
    normalized = {_key(p, m): price for (p, m), price in overrides.items()}
    override = normalized.get((provider, model))
    if override is not None:
        return _with_provider_defaults(provider, override)
    if provider in LOCAL_PROVIDERS:
        return _FREE
    price = _resolve({**_shipped_table(), **normalized}, provider, model)
    return None if price is None else _with_provider_defaults(provider, price)


NANOS_PER_USD = Decimal(1_000_000_000)


def usd_to_nanos(cost: Decimal) -> int:
    """Costs are stored as integer nano-dollars: exact sums on every database."""
    return int(cost * NANOS_PER_USD)


def nanos_to_usd(nanos: int | None) -> float | None:
    return None if nanos is None else float(Decimal(nanos) / NANOS_PER_USD)


def step_cost(
    *,
    price: Price | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    """Cost of one call in USD, quantized to 1e-8, or None when it cannot be known.

    ``input_tokens`` is normalized: it includes ``cached_input_tokens`` (cache
    reads) and ``cache_write_tokens``. Counts that cannot be normalized usage
    (negative, or cache tokens exceeding the input) point at an adapter bug: they
    are logged and give None rather than an exception, because this runs after a
    paid provider call whose output must not be lost (nor the call retried) over
    bookkeeping.
    """
    if price is None or input_tokens is None or output_tokens is None:
        return None
    uncached = input_tokens - cached_input_tokens - cache_write_tokens
    counts = (input_tokens, output_tokens, cached_input_tokens, cache_write_tokens)
    if min(counts) < 0 or uncached < 0:
        log.warning(
            "usage is not normalized (input=%d output=%d cached=%d cache_write=%d): "
            "input_tokens must include cached and cache-write tokens; cost left unknown",
            *counts,
        )
        return None
    total = (
        uncached * price.input
        + cached_input_tokens * price.effective_cached_input
        + cache_write_tokens * price.effective_cache_write
        + output_tokens * price.output
    )
    return (total / _PER_MILLION).quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)
