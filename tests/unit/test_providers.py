"""Provider adapters against httpx.MockTransport: wire shape, usage accounting, error tree."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.providers import (
    DEFAULT_BASE_URLS,
    AuthFailed,
    BadRequest,
    ChatRequest,
    MalformedResponse,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    QuotaExceeded,
    RateLimited,
    ServerError,
    make_provider,
    parse_retry_after,
)

KEY = "sk-test-SECRET-0123456789abcdef"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that replays one canned response and keeps the requests."""

    def __init__(self, response: httpx.Response | Handler) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self.response):
            return self.response(request)
        return self.response

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)  # type: ignore[no-any-return]


def provider_for(
    kind: str,
    response: httpx.Response | Handler,
    *,
    base_url: str | None = "http://llm.test/v1",
    api_key: str | None = KEY,
) -> tuple[Any, Recorder]:
    recorder = Recorder(response)
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return make_provider(kind, base_url=base_url, api_key=api_key, client=client), recorder


def openai_body(usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi!"},
                "finish_reason": "stop",
            }
        ],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def anthropic_body(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Hello "},
            {"type": "tool_use", "id": "t1", "name": "x", "input": {}},
            {"type": "text", "text": "world"},
        ],
        "stop_reason": "end_turn",
    }
    if usage is not None:
        body["usage"] = usage
    return body


REQUEST = ChatRequest(model="m-1", prompt="Summarise this", system="Be brief", temperature=0.2)


# --- success paths and usage accounting -------------------------------------------------


def test_openai_request_shape_and_usage_with_cached_tokens() -> None:
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    response = httpx.Response(200, json=openai_body(usage), headers={"x-request-id": "req_9"})
    provider, rec = provider_for("openai", response)

    result = provider.complete(ChatRequest(model="gpt-4o", prompt="Hi", max_tokens=50))

    sent = rec.requests[0]
    assert str(sent.url) == "http://llm.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert rec.body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 50,
    }
    assert result.text == "hi!"
    assert result.finish_reason == "stop"
    # prompt_tokens already includes the cached tokens: not added twice.
    assert (result.input_tokens, result.output_tokens) == (120, 7)
    assert (result.cached_input_tokens, result.cache_write_tokens) == (100, 0)
    assert result.request_id == "req_9"
    assert result.usage_reported is True
    assert result.latency_ms >= 0


def test_openai_style_servers_send_max_tokens_system_and_temperature() -> None:
    provider, rec = provider_for("groq", httpx.Response(200, json=openai_body()))
    provider.complete(
        ChatRequest(model="llama", prompt="p", system="s", max_tokens=9, temperature=0)
    )
    assert rec.body == {
        "model": "llama",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
        "temperature": 0,
        "max_tokens": 9,
    }


def test_openai_missing_usage_is_reported_not_estimated() -> None:
    provider, _ = provider_for("lmstudio", httpx.Response(200, json=openai_body()), api_key=None)
    result = provider.complete(REQUEST)
    assert result.usage_reported is False
    assert result.input_tokens is None and result.output_tokens is None
    assert result.cached_input_tokens == 0
    assert result.request_id == "chatcmpl-abc"  # from the body when no header


def test_openai_without_key_sends_no_authorization_header() -> None:
    provider, rec = provider_for(
        "openai_compatible", httpx.Response(200, json=openai_body()), api_key=None
    )
    provider.complete(REQUEST)
    assert "authorization" not in rec.requests[0].headers


def test_openai_null_content_is_empty_text() -> None:
    body = openai_body()
    body["choices"][0]["message"]["content"] = None
    provider, _ = provider_for("openai", httpx.Response(200, json=body))
    assert provider.complete(REQUEST).text == ""


def test_anthropic_request_shape_and_cache_token_normalisation() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    response = httpx.Response(200, json=anthropic_body(usage), headers={"request-id": "req_a"})
    provider, rec = provider_for("anthropic", response, base_url="https://api.test")

    result = provider.complete(REQUEST)

    sent = rec.requests[0]
    assert str(sent.url) == "https://api.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert rec.body == {
        "model": "m-1",
        "max_tokens": 1024,  # required by Anthropic; defaulted
        "messages": [{"role": "user", "content": "Summarise this"}],
        "system": "Be brief",
        "temperature": 0.2,
    }
    assert result.text == "Hello world"
    assert result.finish_reason == "end_turn"
    # Anthropic's input_tokens excludes cache reads and writes: the total is the sum.
    assert result.input_tokens == 130
    assert result.cached_input_tokens == 100
    assert result.cache_write_tokens == 20
    assert result.output_tokens == 5
    assert result.request_id == "req_a"
    assert result.usage_reported is True


def test_anthropic_without_cache_fields_and_request_id_from_body() -> None:
    body = anthropic_body({"input_tokens": 12, "output_tokens": 3})
    provider, _ = provider_for("anthropic", httpx.Response(200, json=body))
    result = provider.complete(ChatRequest(model="c", prompt="x", max_tokens=7))
    assert (result.input_tokens, result.cached_input_tokens, result.cache_write_tokens) == (
        12,
        0,
        0,
    )
    assert result.request_id == "msg_01"


def test_anthropic_missing_usage() -> None:
    provider, _ = provider_for("anthropic", httpx.Response(200, json=anthropic_body()))
    result = provider.complete(REQUEST)
    assert result.usage_reported is False
    assert result.input_tokens is None and result.output_tokens is None


def test_ollama_request_shape_and_usage() -> None:
    body = {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "ok"},
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 26,
        "eval_count": 4,
    }
    provider, rec = provider_for("ollama", httpx.Response(200, json=body), base_url=None)
    result = provider.complete(ChatRequest(model="llama3.2", prompt="p", system="s", max_tokens=4))

    assert str(rec.requests[0].url) == "http://localhost:11434/api/chat"
    assert rec.body == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
        "stream": False,
        "options": {"num_predict": 4},
    }
    assert (result.text, result.finish_reason) == ("ok", "length")
    assert (result.input_tokens, result.output_tokens) == (26, 4)
    assert result.usage_reported is True


def test_ollama_cached_prompt_leaves_input_unknown() -> None:
    body = {"message": {"content": "ok"}, "done": True, "eval_count": 4}
    provider, _ = provider_for("ollama", httpx.Response(200, json=body))
    result = provider.complete(REQUEST)
    assert result.input_tokens is None and result.output_tokens == 4


def test_ollama_missing_usage() -> None:
    body = {"message": {"content": "ok"}, "done": True}
    provider, _ = provider_for("ollama", httpx.Response(200, json=body))
    assert provider.complete(REQUEST).usage_reported is False


def test_timeout_is_applied_per_call() -> None:
    provider, rec = provider_for("openai", httpx.Response(200, json=openai_body()))
    provider.complete(ChatRequest(model="m", prompt="p", timeout=42.0))
    provider.complete(ChatRequest(model="m", prompt="p", timeout=3.0))
    first, second = (r.extensions["timeout"] for r in rec.requests)
    assert first == {"connect": 10.0, "read": 42.0, "write": 42.0, "pool": 42.0}
    assert second == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}


# --- base URLs and model lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "base", "expected"),
    [
        ("openai", "http://h/v1", "http://h/v1/chat/completions"),
        ("openai", "http://h/v1/", "http://h/v1/chat/completions"),
        ("mistral", None, "https://api.mistral.ai/v1/chat/completions"),
        ("groq", None, "https://api.groq.com/openai/v1/chat/completions"),
        ("lmstudio", "http://h:1234/v1/", "http://h:1234/v1/chat/completions"),
        ("anthropic", "http://h", "http://h/v1/messages"),
        ("anthropic", "http://h/", "http://h/v1/messages"),
        ("anthropic", "http://h/v1/", "http://h/v1/messages"),
        ("ollama", "http://h:11434/", "http://h:11434/api/chat"),
        ("ollama", "http://h:11434/v1", "http://h:11434/api/chat"),
    ],
)
def test_base_urls_with_and_without_trailing_slash(
    kind: str, base: str | None, expected: str
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json=anthropic_body())
        if request.url.path.endswith("/api/chat"):
            return httpx.Response(200, json={"message": {"content": "x"}})
        return httpx.Response(200, json=openai_body())

    provider, rec = provider_for(kind, reply, base_url=base)
    provider.complete(REQUEST)
    assert str(rec.requests[0].url) == expected


def test_openai_model_list() -> None:
    body = {"object": "list", "data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}
    provider, rec = provider_for("openai", httpx.Response(200, json=body), base_url="http://h/v1/")
    assert provider.list_models() == ["gpt-4o", "gpt-4o-mini"]
    assert str(rec.requests[0].url) == "http://h/v1/models"


def test_anthropic_model_list_follows_pages() -> None:
    pages = iter(
        [
            {"data": [{"id": "a"}, {"id": "b"}], "has_more": True, "last_id": "b"},
            {"data": [{"id": "c"}], "has_more": False, "last_id": "c"},
        ]
    )
    provider, rec = provider_for(
        "anthropic", lambda r: httpx.Response(200, json=next(pages)), base_url="http://h/"
    )
    assert provider.list_models() == ["a", "b", "c"]
    assert rec.requests[1].url.params["after_id"] == "b"
    assert rec.requests[0].url.path == "/v1/models"


def test_ollama_model_list() -> None:
    body = {"models": [{"name": "llama3.2:latest"}, {"name": "qwen2.5:7b"}]}
    provider, rec = provider_for("ollama", httpx.Response(200, json=body), base_url="http://h/")
    assert provider.list_models() == ["llama3.2:latest", "qwen2.5:7b"]
    assert str(rec.requests[0].url) == "http://h/api/tags"


def test_check_raises_auth_failed_on_bad_key() -> None:
    body = {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    provider, _ = provider_for("anthropic", httpx.Response(401, json=body))
    with pytest.raises(AuthFailed, match="invalid x-api-key"):
        provider.check()


# --- registry -----------------------------------------------------------------------------


def test_make_provider_refuses_bad_configuration() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(BadRequest, match="unknown provider kind"):
        make_provider("nope", base_url=None, api_key=None, client=client)
    with pytest.raises(AuthFailed, match="no API key"):
        make_provider("openai", base_url=None, api_key=None, client=client)
    with pytest.raises(BadRequest, match="base URL is required"):
        make_provider("openai_compatible", base_url=None, api_key="k", client=client)
    assert set(DEFAULT_BASE_URLS) == {
        "anthropic", "openai", "mistral", "groq", "ollama", "lmstudio", "openai_compatible"
    }  # fmt: skip


# --- the error tree -----------------------------------------------------------------------


def oa_error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


ANTHROPIC_CREDIT = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "Your credit balance is too low"},
}
ANTHROPIC_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}
QUOTA_429 = oa_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable", "detail"),
    [
        (401, oa_error("Incorrect API key provided"), AuthFailed, False, "Incorrect API key"),
        (403, oa_error("Country not supported"), AuthFailed, False, "Country not supported"),
        (402, {"detail": "Payment required"}, QuotaExceeded, False, "Payment required"),
        (429, oa_error("Rate limit reached", "requests"), RateLimited, True, "Rate limit reached"),
        (429, QUOTA_429, QuotaExceeded, False, "exceeded your current quota"),
        (429, oa_error("Monthly spend limit reached"), QuotaExceeded, False, "spend limit"),
        (400, ANTHROPIC_CREDIT, QuotaExceeded, False, "credit balance is too low"),
        (400, oa_error("bad temperature"), BadRequest, False, "bad temperature"),
        (404, oa_error("The model `gpt-9` does not exist"), BadRequest, False, "`gpt-9`"),
        (404, {"error": "model 'llama9' not found"}, BadRequest, False, "model 'llama9'"),
        (422, {"detail": [{"msg": "field required"}]}, BadRequest, False, "field required"),
        (408, oa_error("too slow"), ProviderTimeout, True, "too slow"),
        (500, oa_error("The server had an error"), ServerError, True, "server had an error"),
        (502, "<html>Bad gateway</html>", ServerError, True, "Bad gateway"),
        (503, oa_error("The engine is overloaded"), Overloaded, True, "engine is overloaded"),
        (529, ANTHROPIC_OVERLOADED, Overloaded, True, "Busy"),
    ],
)
def test_status_codes_map_to_the_error_tree(
    status: int, body: Any, cls: type[ProviderError], retryable: bool, detail: str
) -> None:
    if isinstance(body, str):
        response = httpx.Response(status, text=body)
    else:
        response = httpx.Response(status, json=body)
    provider, _ = provider_for("openai", response)
    with pytest.raises(cls) as info:
        provider.complete(REQUEST)
    error = info.value
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.status_code == status
    assert str(error).startswith("openai: ")
    assert f"HTTP {status}" in str(error)
    assert detail in str(error)  # the provider's own words are passed on


def test_rate_limited_carries_retry_after_and_raw_headers() -> None:
    headers = {
        "retry-after": "7",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-tokens": "1500",
        "x-ratelimit-reset-tokens": "20ms",
        "content-type": "application/json",
    }
    provider, _ = provider_for(
        "openai", httpx.Response(429, json=oa_error("slow"), headers=headers)
    )
    with pytest.raises(RateLimited) as info:
        provider.complete(REQUEST)
    error = info.value
    assert error.retry_after == 7.0
    assert error.remaining_requests == "0" and error.reset_requests == "6m0s"
    assert error.remaining_tokens == "1500" and error.reset_tokens == "20ms"
    assert "content-type" not in error.rate_limit_headers
    assert error.rate_limit_headers["retry-after"] == "7"


def test_anthropic_rate_limit_headers() -> None:
    headers = {"retry-after": "3", "anthropic-ratelimit-requests-remaining": "0"}
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    provider, _ = provider_for("anthropic", httpx.Response(429, json=body, headers=headers))
    with pytest.raises(RateLimited) as info:
        provider.complete(REQUEST)
    assert info.value.retry_after == 3.0
    assert info.value.remaining_requests == "0"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
        ({"x-ratelimit-reset-requests": "1s"}, 1.0),
        ({"x-ratelimit-reset-requests": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-reset-requests": "20ms"}, 0.02),
        ({"x-ratelimit-reset-tokens": "2s"}, 2.0),
        ({"x-ratelimit-reset-requests": "soon"}, None),
        ({"retry-after": "garbage"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == pytest.approx(expected)


def test_parse_retry_after_http_date() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


def test_retry_after_falls_back_to_reset_header_on_429() -> None:
    response = httpx.Response(
        429, json=oa_error("slow"), headers={"x-ratelimit-reset-requests": "2s"}
    )
    provider, _ = provider_for("groq", response)
    with pytest.raises(RateLimited) as info:
        provider.complete(REQUEST)
    assert info.value.retry_after == 2.0


def test_429_without_any_hint_has_no_retry_after() -> None:
    provider, _ = provider_for("openai", httpx.Response(429, json=oa_error("slow")))
    with pytest.raises(RateLimited) as info:
        provider.complete(REQUEST)
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_key_echoed_by_the_provider_is_scrubbed(status: int) -> None:
    body = oa_error(f"Incorrect API key provided: {KEY}. Find yours at platform.example")
    provider, _ = provider_for("openai", httpx.Response(status, json=body))
    with pytest.raises(ProviderError) as info:
        provider.complete(REQUEST)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value.args)
    assert "***" in str(info.value)


def test_provider_detail_is_truncated() -> None:
    provider, _ = provider_for("openai", httpx.Response(400, json=oa_error("x" * 5000)))
    with pytest.raises(BadRequest) as info:
        provider.complete(REQUEST)
    assert 300 <= len(str(info.value)) < 400


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (httpx.ReadTimeout(f"read timed out {KEY}"), ProviderTimeout, True),
        (httpx.ConnectTimeout("connect timed out"), ProviderTimeout, True),
        (httpx.PoolTimeout("pool"), ProviderTimeout, True),
        (httpx.ConnectError(f"[Errno 111] Connection refused {KEY}"), ProviderUnreachable, True),
        (httpx.RemoteProtocolError("Server disconnected"), ProviderUnreachable, True),
        (httpx.ReadError("reset by peer"), ProviderUnreachable, True),
        (httpx.UnsupportedProtocol("Request URL is missing a scheme"), BadRequest, False),
    ],
)
def test_transport_errors_map_to_the_tree(
    exc: Exception, cls: type[ProviderError], retryable: bool
) -> None:
    provider, _ = provider_for("anthropic", raising(exc))
    with pytest.raises(cls) as info:
        provider.complete(REQUEST)
    assert info.value.retryable is retryable
    assert KEY not in str(info.value)
    assert info.value.__cause__ is None  # the httpx request (with headers) is not attached
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    ("kind", "response"),
    [
        ("openai", httpx.Response(200, content=b'{"id": "x", "choices": [{"mess')),
        ("openai", httpx.Response(200, content=b"<html>proxy login</html>")),
        ("openai", httpx.Response(200, json=["not", "an", "object"])),
        ("openai", httpx.Response(200, json={"id": "x"})),
        ("openai", httpx.Response(200, json={"choices": []})),
        ("openai", httpx.Response(200, json={"choices": [{"message": "str"}]})),
        ("anthropic", httpx.Response(200, json={"id": "x"})),
        ("anthropic", httpx.Response(200, json={"content": [{"type": "text"}]})),
        ("ollama", httpx.Response(200, json={"done": True})),
        ("ollama", httpx.Response(200, json={"message": {"content": 3}})),
    ],
)
def test_malformed_responses(kind: str, response: httpx.Response) -> None:
    provider, _ = provider_for(kind, response)
    with pytest.raises(MalformedResponse) as info:
        provider.complete(REQUEST)
    assert info.value.retryable is False


def test_malformed_model_list() -> None:
    provider, _ = provider_for("openai", httpx.Response(200, json={"models": []}))
    with pytest.raises(MalformedResponse):
        provider.list_models()


def test_error_object_in_a_200_response_is_surfaced() -> None:
    body = {"error": {"message": f"upstream failed for key {KEY}", "code": 502}}
    provider, _ = provider_for("openai_compatible", httpx.Response(200, json=body))
    with pytest.raises(MalformedResponse, match="upstream failed") as info:
        provider.complete(REQUEST)
    assert KEY not in str(info.value)
