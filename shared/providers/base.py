"""The provider interface every adapter implements, and the one HTTP call they all share.

Adapters are thin: build a dict, call :func:`send_json`, read a dict, build a
:class:`Completion`. No response models are validated on this path, because a worker
holds hundreds of calls in flight and the adapter's CPU per call must stay close to a
bare ``httpx.post`` + ``json.loads``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Protocol

import httpx

from shared.providers.errors import (
    MAX_DETAIL_CHARS,
    MalformedResponse,
    error_from_response,
    scrub,
    translate_transport_errors,
)

__all__ = [
    "DEFAULT_BASE_URLS",
    "LOCAL_PROVIDERS",
    "NEEDS_SECRET",
    "ChatRequest",
    "Completion",
    "Provider",
    "ProviderKind",
    "join_url",
    "malformed",
    "send_json",
    "timeout_for",
]

ProviderKind = Literal[
    "anthropic", "openai", "mistral", "groq", "ollama", "lmstudio", "openai_compatible"
]

DEFAULT_BASE_URLS: dict[str, str | None] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "groq": "https://api.groq.com/openai/v1",
    "ollama": "http://localhost:11434",
    "lmstudio": "http://localhost:1234/v1",
    "openai_compatible": None,
}
# openai_compatible takes an optional secret; ollama and lmstudio take none.
NEEDS_SECRET = frozenset({"anthropic", "openai", "mistral", "groq"})
# Calls to these cost nothing at list price.
LOCAL_PROVIDERS = frozenset({"ollama", "lmstudio"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    prompt: str  # the rendered user message
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 120.0  # seconds, for the whole call


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str | None
    # ALL input tokens, cached reads and cache writes included (OpenAI's convention), so
    # pricing code never has to know which provider it is looking at.
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int  # cache reads, a subset of input_tokens
    cache_write_tokens: int  # Anthropic cache_creation_input_tokens, a subset of input_tokens
    request_id: str | None
    latency_ms: int
    usage_reported: bool  # False when the provider sent no usage; token fields are then None


class Provider(Protocol):
    def complete(self, request: ChatRequest) -> Completion: ...

    def list_models(self) -> list[str]: ...

    def check(self) -> None:
        """Verify the key cheaply; raise ProviderError on failure."""
        ...


@lru_cache(maxsize=64)
def timeout_for(seconds: float) -> httpx.Timeout:
    """Connect fails fast (a dead host should not eat the whole budget); the rest waits."""
    return httpx.Timeout(seconds, connect=min(10.0, seconds))


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def base_without_v1(base_url: str) -> str:
    """A native API's base URL: people paste both "https://host" and "https://host/v1"."""
    base = base_url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def post_chat(
    client: httpx.Client,
    url: str,
    *,
    provider: str,
    api_key: str | None,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout: float,
) -> tuple[dict[str, Any], httpx.Response, int]:
    """POST one chat request: the JSON answer, the response and the latency in ms."""
    started = time.perf_counter()
    data, response = send_json(
        client,
        "POST",
        url,
        provider=provider,
        api_key=api_key,
        headers=headers,
        body=body,
        timeout=timeout,
    )
    return data, response, int((time.perf_counter() - started) * 1000)


def send_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    provider: str,
    api_key: str | None,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> tuple[dict[str, Any], httpx.Response]:
    """One HTTP exchange, with every failure already translated into ProviderError."""
    with translate_transport_errors(provider=provider, api_key=api_key):
        response = client.request(
            method, url, headers=headers, json=body, timeout=timeout_for(timeout)
        )
    if not 200 <= response.status_code < 300:
        raise error_from_response(response, provider=provider, api_key=api_key)
    try:
        data = json.loads(response.content)
    except ValueError:
        raise MalformedResponse(
            f"{provider}: the response is not valid JSON "
            f"({len(response.content)} bytes, possibly truncated)",
            status_code=response.status_code,
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponse(
            f"{provider}: expected a JSON object, got {type(data).__name__}",
            status_code=response.status_code,
        )
    return data, response


def malformed(
    provider: str, exc: Exception, data: Any = None, api_key: str | None = None
) -> MalformedResponse:
    """For the adapters' parse step: a missing or mistyped field in a 2xx body.

    Some gateways answer 200 with an error object; its message beats "KeyError: 'choices'".
    """
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        detail = scrub(" ".join(error.split())[:MAX_DETAIL_CHARS], api_key)
        return MalformedResponse(f"{provider}: an error came back with HTTP 200: {detail}")
    return MalformedResponse(
        f"{provider}: unexpected response shape ({type(exc).__name__}: {exc!s:.120})"
    )
