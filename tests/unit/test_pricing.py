from __future__ import annotations

import json
import logging
from datetime import date
from decimal import Decimal
from importlib import resources

import pytest

from shared.pricing import Price, price_for, shipped_price, shipped_prices_as_of, step_cost

D = Decimal


def test_prices_json_is_package_data_and_well_formed() -> None:
    document = json.loads(resources.files("shared").joinpath("prices.json").read_text())
    assert date.fromisoformat(document["as_of"]) == date.fromisoformat(shipped_prices_as_of())
    assert "override" in document["note"]
    seen = set()
    for entry in document["prices"]:
        key = (entry["provider"], entry["model"])
        assert key not in seen, key
        seen.add(key)
        assert entry["input"] > 0 and entry["output"] > 0
        if entry.get("cached_input") is not None:
            assert entry["cached_input"] <= entry["input"]
    assert {p for p, _ in seen} == {"anthropic", "openai", "mistral", "groq"}


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "o3-2025-04-16", "o3"),
        ("mistral", "mistral-large-2411", "mistral-large"),
        ("mistral", "mistral-small-latest", "mistral-small"),
        ("OpenAI", "GPT-4o-mini", "gpt-4o-mini"),
    ],
)
def test_dated_names_resolve_to_the_longest_known_name(
    provider: str, model: str, expected: str
) -> None:
    assert shipped_price(provider, model) == shipped_price(provider.lower(), expected)
    assert shipped_price(provider, model) is not None


def test_longest_prefix_wins_over_shorter() -> None:
    mini = shipped_price("openai", "gpt-4o-mini-2024-07-18")
    assert mini is not None
    assert mini.input == D("0.15")  # not gpt-4o's 2.50


def test_dated_snapshot_entry_wins_over_its_base() -> None:
    old = shipped_price("openai", "gpt-4o-2024-05-13")
    assert old is not None and old.input == D("5")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "o3-pro"),  # would be 10x too cheap priced as o3
        ("openai", "gpt-4o-audio-preview"),
        ("anthropic", "claude-opus-4-9"),  # a future model is not claude-opus-4
        ("openai", "gpt-4omni"),
        ("anthropic", "gpt-4o"),
        ("nobody", "gpt-4o"),
    ],
)
def test_unknown_models_have_no_price(provider: str, model: str) -> None:
    assert shipped_price(provider, model) is None
    assert price_for(provider, model, {}) is None


def test_anthropic_shipped_prices_include_cache_rates() -> None:
    price = shipped_price("anthropic", "claude-sonnet-4-5")
    assert price == Price(D("3"), D("15"), cached_input=D("0.30"), cache_write=D("3.75"))


@pytest.mark.parametrize("provider", ["ollama", "lmstudio", "Ollama"])
def test_local_providers_are_free(provider: str) -> None:
    price = price_for(provider, "llama3.1:8b", {})
    assert price == Price(D(0), D(0))
    assert step_cost(price=price, input_tokens=10_000, output_tokens=5_000) == D("0E-8")


def test_override_exact_match_wins() -> None:
    mine = Price(D("1"), D("2"))
    overrides = {("openai", "gpt-4o"): mine, ("ollama", "llama3"): Price(D("0.01"), D("0.01"))}
    assert price_for("openai", "gpt-4o", overrides) == mine
    # An override also prices the dated names of that model...
    assert price_for("openai", "gpt-4o-2024-11-20", overrides) == mine
    # ...but not a model that has its own, longer entry.
    assert price_for("openai", "gpt-4o-mini", overrides) == shipped_price("openai", "gpt-4o-mini")
    # A user may price their local hardware.
    assert price_for("ollama", "llama3", overrides) == Price(D("0.01"), D("0.01"))
    # An override makes an otherwise unknown model priceable.
    custom = {("openai", "my-finetune"): Price(D("3"), D("6"))}
    assert price_for("openai", "my-finetune", custom) == Price(D("3"), D("6"))


def test_anthropic_override_without_cache_write_gets_125_percent() -> None:
    overrides = {("anthropic", "claude-haiku-4-5"): Price(D("2"), D("10"))}
    price = price_for("anthropic", "claude-haiku-4-5", overrides)
    assert price is not None and price.cache_write == D("2.50")
    other = price_for("mistral", "x", {("mistral", "x"): Price(D("2"), D("10"))})
    assert other is not None and other.effective_cache_write == D("2")


def test_anthropic_style_usage() -> None:
    # Anthropic reports input_tokens=100 (uncached only) + cache_read_input_tokens=900;
    # normalized that is 1000 input tokens of which 900 were cache reads.
    price = shipped_price("anthropic", "claude-sonnet-4-5-20250929")
    cost = step_cost(price=price, input_tokens=1000, output_tokens=500, cached_input_tokens=900)
    # 100 * 3 + 900 * 0.30 + 500 * 15 = 300 + 270 + 7500 = 8070 per million
    assert cost == D("0.00807000")


def test_anthropic_cache_write() -> None:
    price = shipped_price("anthropic", "claude-opus-4-1")
    cost = step_cost(
        price=price,
        input_tokens=12_000,
        output_tokens=1_000,
        cached_input_tokens=0,
        cache_write_tokens=10_000,
    )
    # 2000 * 15 + 10000 * 18.75 + 1000 * 75 = 30000 + 187500 + 75000 = 292500 per million
    assert cost == D("0.29250000")


def test_openai_style_usage() -> None:
    # OpenAI's prompt_tokens=1000 already includes cached_tokens=900.
    price = shipped_price("openai", "gpt-4o")
    cost = step_cost(price=price, input_tokens=1000, output_tokens=200, cached_input_tokens=900)
    # 100 * 2.50 + 900 * 1.25 + 200 * 10 = 250 + 1125 + 2000 = 3375 per million
    assert cost == D("0.00337500")


def test_no_cached_price_means_input_price() -> None:
    price = Price(D("5"), D("15"))
    assert step_cost(
        price=price, input_tokens=1000, output_tokens=0, cached_input_tokens=1000
    ) == step_cost(price=price, input_tokens=1000, output_tokens=0)


def test_cost_to_the_cent_over_a_month() -> None:
    price = shipped_price("openai", "gpt-4o-mini")
    per_step = step_cost(price=price, input_tokens=3_000, output_tokens=700)
    # 3000 * 0.15 + 700 * 0.60 = 450 + 420 = 870 per million = $0.00087
    assert per_step == D("0.00087000")
    assert per_step is not None and per_step * 10_000 == D("8.70")


def test_rounds_half_up_to_1e8() -> None:
    price = Price(D("0.015"), D("0"))
    # 1 token * 0.015 / 1e6 = 1.5e-8 -> 2e-8
    assert step_cost(price=price, input_tokens=1, output_tokens=0) == D("0.00000002")


@pytest.mark.parametrize(("input_tokens", "output_tokens"), [(None, 10), (10, None), (None, None)])
def test_unknown_usage_is_unknown_cost(input_tokens: int | None, output_tokens: int | None) -> None:
    price = Price(D("1"), D("1"))
    assert step_cost(price=price, input_tokens=input_tokens, output_tokens=output_tokens) is None


def test_unknown_price_is_unknown_cost_never_zero() -> None:
    assert step_cost(price=None, input_tokens=100, output_tokens=100) is None


def test_unnormalized_usage_is_logged_and_unknown(caplog: pytest.LogCaptureFixture) -> None:
    # Anthropic's raw input_tokens (100) passed without adding the cache reads (900).
    price = Price(D("3"), D("15"), cached_input=D("0.3"))
    with caplog.at_level(logging.WARNING, logger="shared.pricing"):
        cost = step_cost(price=price, input_tokens=100, output_tokens=1, cached_input_tokens=900)
    assert cost is None
    assert "not normalized" in caplog.text
    assert step_cost(price=price, input_tokens=-1, output_tokens=1) is None
