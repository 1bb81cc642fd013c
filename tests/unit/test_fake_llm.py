"""The fake LLM server, served for real on a free port, driven by the real adapters."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.fake_llm import FakeConfig, running_fake_llm
from shared.providers import (
    AuthFailed,
    ChatRequest,
    MalformedResponse,
    Overloaded,
    Provider,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    ServerError,
    make_provider,
)

KEY = "sk-fake-GOOD-key-000111222"
# Runtime-settable fields back to their defaults between tests; the hang is short so that
# a test of the timeout fault does not keep the server busy for five minutes.
DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(FakeConfig)
    if f.name not in ("max_recorded_calls", "valid_keys", "models")
}
DEFAULTS.update({"valid_keys": [], "models": [], "timeout_sleep_seconds": 3.0})


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    with running_fake_llm(FakeConfig(timeout_sleep_seconds=3.0)) as url:
        yield url


@pytest.fixture
def http(fake_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_url, timeout=10) as client:
        client.delete("/_fake/calls").raise_for_status()
        client.post("/_fake/config", json=DEFAULTS).raise_for_status()
        yield client


def adapter(
    http: httpx.Client, kind: str, *, api_key: str | None = KEY, suffix: str = ""
) -> Provider:
    base = str(http.base_url).rstrip("/")
    if kind not in ("anthropic", "ollama"):
        base += "/v1"
    return make_provider(kind, base_url=base + suffix, api_key=api_key, client=http)


def calls(http: httpx.Client) -> dict[str, Any]:
    return http.get("/_fake/calls").json()  # type: ignore[no-any-return]


# --- data flow through every adapter ----------------------------------------------------

FORMATS = {"openai": "openai", "groq": "openai", "lmstudio": "openai", "anthropic": "anthropic",
           "ollama": "ollama"}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(FORMATS))
@pytest.mark.parametrize("suffix", ["", "/"])
def test_each_adapter_end_to_end(http: httpx.Client, kind: str, suffix: str) -> None:
    provider = adapter(http, kind, suffix=suffix)
    result = provider.complete(ChatRequest(model="m-1", prompt="count these four", system="sys"))

    assert result.text == "[m-1] count these four"
    assert result.finish_reason in ("stop", "end_turn")
    assert result.input_tokens == 4  # "sys" + "count these four"
    assert result.output_tokens == 4
    assert result.usage_reported is True
    if kind != "ollama":
        assert result.request_id and result.request_id.startswith("req_fake")
    recorded = calls(http)
    assert recorded["count"] == 1
    (call,) = recorded["calls"]
    assert call["format"] == FORMATS[kind]
    assert (call["model"], call["prompt"], call["status"]) == ("m-1", "count these four", 200)
    assert call["t"] == pytest.approx(time.time(), abs=30)


def test_cached_tokens_openai_and_anthropic(http: httpx.Client) -> None:
    http.post("/_fake/config", json={"input_tokens": 500, "cached_tokens": 300})
    openai = adapter(http, "openai").complete(ChatRequest(model="gpt-4o", prompt="hi"))
    assert (openai.input_tokens, openai.cached_input_tokens) == (500, 300)

    http.post("/_fake/config", json={"cache_write_tokens": 50})
    raw = http.post(
        "/v1/messages",
        json={"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert raw["usage"]["input_tokens"] == 150  # reported apart from cache reads and writes
    assert raw["usage"]["cache_read_input_tokens"] == 300
    anthropic = adapter(http, "anthropic").complete(ChatRequest(model="c", prompt="hi"))
    assert anthropic.input_tokens == 500  # normalised back to the total
    assert (anthropic.cached_input_tokens, anthropic.cache_write_tokens) == (300, 50)


def test_fixed_token_counts_from_config(http: httpx.Client) -> None:
    http.post("/_fake/config", json={"input_tokens": 1234, "output_tokens": 56})
    result = adapter(http, "ollama").complete(ChatRequest(model="llama3.2", prompt="x"))
    assert (result.input_tokens, result.output_tokens) == (1234, 56)


@pytest.mark.parametrize(
    ("kind", "reason"), [("openai", "length"), ("anthropic", "max_tokens"), ("ollama", "length")]
)
def test_max_tokens_truncates_reply(http: httpx.Client, kind: str, reason: str) -> None:
    request = ChatRequest(model="m", prompt="one two three four five", max_tokens=3)
    result = adapter(http, kind).complete(request)
    assert result.text == "[m] one two"
    assert (result.finish_reason, result.output_tokens) == (reason, 3)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_usage_can_be_omitted(http: httpx.Client, kind: str) -> None:
    http.post("/_fake/config", json={"report_usage": False})
    result = adapter(http, kind).complete(ChatRequest(model="m", prompt="x"))
    assert result.usage_reported is False and result.input_tokens is None


def test_anthropic_requires_max_tokens(http: httpx.Client) -> None:
    body = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_keys_are_checked_and_never_echoed(http: httpx.Client, kind: str) -> None:
    http.post("/_fake/config", json={"valid_keys": [KEY]})
    assert adapter(http, kind).complete(ChatRequest(model="m", prompt="x")).text == "[m] x"
    wrong = "sk-fake-WRONG-key-999888777"
    with pytest.raises(AuthFailed) as info:
        adapter(http, kind, api_key=wrong).complete(ChatRequest(model="m", prompt="x"))
    assert wrong not in str(info.value)
    with pytest.raises(AuthFailed):
        adapter(http, kind, api_key=wrong).check()
    assert KEY not in http.get("/_fake/config").text
    assert [c["status"] for c in calls(http)["calls"]] == [200, 401, 401]


def test_no_keys_configured_accepts_no_key(http: httpx.Client) -> None:
    provider = adapter(http, "openai_compatible", api_key=None)
    assert provider.complete(ChatRequest(model="m", prompt="x")).text == "[m] x"


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "model", "error"),
    [
        ("openai", "fault-429", RateLimited),
        ("anthropic", "fault-429", RateLimited),
        ("openai", "fault-500", ServerError),
        ("anthropic", "fault-529", Overloaded),
        ("openai", "fault-401", AuthFailed),
        ("openai", "fault-quota", QuotaExceeded),
        ("anthropic", "fault-quota", QuotaExceeded),
        ("ollama", "fault-quota", QuotaExceeded),
        ("openai", "fault-malformed", MalformedResponse),
        ("anthropic", "fault-malformed", MalformedResponse),
        ("ollama", "fault-malformed", MalformedResponse),
    ],
)
def test_magic_model_faults(http: httpx.Client, kind: str, model: str, error: type) -> None:
    with pytest.raises(error):
        adapter(http, kind).complete(ChatRequest(model=model, prompt="x"))


def test_rate_limit_headers(http: httpx.Client) -> None:
    with pytest.raises(RateLimited) as info:
        adapter(http, "openai").complete(ChatRequest(model="fault-429", prompt="x"))
    assert info.value.retry_after == 1.0
    assert info.value.remaining_requests == "0"
    assert info.value.reset_requests == "1s"


def test_529_uses_anthropic_overloaded_shape(http: httpx.Client) -> None:
    body = {"model": "fault-529", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 529
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_timeout_fault(http: httpx.Client) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        adapter(http, "openai").complete(
            ChatRequest(model="fault-timeout", prompt="x", timeout=0.3)
        )
    assert time.monotonic() - started < 2


def test_queued_faults_hit_the_next_n_calls(http: httpx.Client) -> None:
    response = http.post("/_fake/faults", json={"status": 429, "count": 2, "retry_after": 3})
    assert response.json()["queued"][0]["count"] == 2
    http.post("/_fake/faults", json={"kind": "server", "count": 1})
    provider = adapter(http, "anthropic")
    request = ChatRequest(model="m", prompt="x")
    for _ in range(2):
        with pytest.raises(RateLimited) as info:
            provider.complete(request)
        assert info.value.retry_after == 3.0
    with pytest.raises(ServerError):
        provider.complete(request)
    assert provider.complete(request).text == "[m] x"
    assert [c["status"] for c in calls(http)["calls"]] == [429, 429, 500, 200]


def test_fault_window(http: httpx.Client) -> None:
    http.post("/_fake/faults", json={"status": 503, "for_seconds": 0.5})
    provider = adapter(http, "openai")
    request = ChatRequest(model="m", prompt="x")
    for _ in range(3):
        with pytest.raises(Overloaded):
            provider.complete(request)
    time.sleep(0.6)
    assert provider.complete(request).text == "[m] x"


def test_reset_clears_calls_and_faults(http: httpx.Client) -> None:
    http.post("/_fake/faults", json={"status": 500, "count": 5})
    http.post("/_fake/faults", json={"status": 500, "for_seconds": 60})
    with pytest.raises(ServerError):
        adapter(http, "openai").complete(ChatRequest(model="m", prompt="x"))
    assert http.delete("/_fake/calls").json() == {"count": 0, "calls": []}
    assert http.get("/_fake/faults").json() == {"queued": [], "windows": []}
    assert adapter(http, "openai").complete(ChatRequest(model="m", prompt="x")).text == "[m] x"


@pytest.mark.parametrize(
    "spec",
    [{}, {"status": 200}, {"kind": "nope"}, {"status": "x"}, {"status": 429, "count": "many"}],
)
def test_bad_fault_specs_are_refused(http: httpx.Client, spec: dict[str, Any]) -> None:
    assert http.post("/_fake/faults", json=spec).status_code == 400
    assert http.get("/_fake/faults").json()["queued"] == []


def test_unknown_config_field_is_refused(http: httpx.Client) -> None:
    response = http.post("/_fake/config", json={"latency": 1})
    assert response.status_code == 400
    assert "latency" in response.json()["error"]


# --- latency --------------------------------------------------------------------------------


def test_latency_header_overrides_config(http: httpx.Client) -> None:
    http.post("/_fake/config", json={"latency_seconds": 5})
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    started = time.monotonic()
    response = http.post("/v1/chat/completions", json=body, headers={"x-fake-latency": "0.3"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.3 <= elapsed < 2


def test_calls_record_when_the_answer_was_done(http: httpx.Client) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    http.post("/v1/chat/completions", json=body, headers={"x-fake-latency": "0.2"})
    http.get("/v1/models")
    chat, listing = calls(http)["calls"]
    # Same wall clock as t (arrival to answer); asyncio sleeps on the monotonic clock.
    assert chat["t_done"] - chat["t"] >= 0.15
    assert listing["t_done"] is None  # only completion calls carry it


def test_configured_latency_overlaps_across_concurrent_calls(fake_url: str) -> None:
    limits = httpx.Limits(max_connections=40)
    with httpx.Client(base_url=fake_url, limits=limits) as client:
        client.delete("/_fake/calls")
        client.post("/_fake/config", json={**DEFAULTS, "latency_seconds": 0.4})
        provider = make_provider("openai", base_url=f"{fake_url}/v1", api_key=KEY, client=client)
        started = time.monotonic()
        with ThreadPoolExecutor(40) as pool:
            results = list(
                pool.map(
                    lambda i: provider.complete(ChatRequest(model="m", prompt=f"n{i}")), range(40)
                )
            )
        elapsed = time.monotonic() - started
        client.post("/_fake/config", json=DEFAULTS)
        assert sorted(r.text for r in results) == sorted(f"[m] n{i}" for i in range(40))
        assert all(r.latency_ms >= 400 for r in results)
        assert 0.4 <= elapsed < 2.0  # 40 x 0.4 s in sequence would be 16 s
        assert client.get("/_fake/calls").json()["count"] == 40


# --- model lists and control API ----------------------------------------------------------


def test_model_lists_per_format(http: httpx.Client) -> None:
    http.post("/_fake/config", json={"models": ["extra-model"]})
    assert adapter(http, "openai").list_models() == ["gpt-4o-mini", "gpt-4o", "extra-model"]
    assert adapter(http, "anthropic").list_models() == [
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-5",
        "extra-model",
    ]
    assert adapter(http, "ollama").list_models() == ["llama3.2", "extra-model"]
    anthropic_shape = http.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic_shape["has_more"] is False
    assert anthropic_shape["data"][0]["type"] == "model"
    assert http.get("/v1/models").json()["object"] == "list"


def test_calls_limit(http: httpx.Client) -> None:
    provider = adapter(http, "openai")
    for i in range(3):
        provider.complete(ChatRequest(model="m", prompt=f"p{i}"))
    assert [c["prompt"] for c in http.get("/_fake/calls?limit=2").json()["calls"]] == ["p1", "p2"]
    assert http.get("/_fake/calls?limit=0").json() == {"count": 3, "calls": []}


def test_health(http: httpx.Client) -> None:
    assert http.get("/_fake/health").json() == {"status": "ok"}
