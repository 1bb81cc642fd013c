"""Anthropic's native Messages API.

Its usage block counts cache reads and cache writes *apart from* ``input_tokens``; this
adapter adds them back so :class:`Completion` always carries the total, like OpenAI does.
Getting this wrong under-reports the cost of every cached prompt.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.providers.base import (
    ChatRequest,
    Completion,
    base_without_v1,
    join_url,
    malformed,
    post_chat,
    send_json,
)

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicProvider"]

ANTHROPIC_VERSION = "2023-06-01"
# The Messages API requires max_tokens; this is the budget when the step sets none.
DEFAULT_MAX_TOKENS = 1024


class AnthropicProvider:
    __slots__ = ("_base", "_client", "_headers", "_url", "api_key", "kind")

    def __init__(
        self, *, base_url: str, api_key: str | None, client: httpx.Client, kind: str = "anthropic"
    ) -> None:
        self.kind = kind
        self.api_key = api_key
        self._client = client
        self._base = base_without_v1(base_url)
        self._url = self._base + "/v1/messages"
        self._headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            self._headers["x-api-key"] = api_key

    def complete(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.system is not None:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        data, response, latency_ms = post_chat(
            self._client,
            self._url,
            provider=self.kind,
            api_key=self.api_key,
            headers=self._headers,
            body=body,
            timeout=request.timeout,
        )
        try:
            text = "".join(b["text"] for b in data["content"] if b.get("type") == "text")
            usage = data.get("usage")
        except (KeyError, TypeError, AttributeError) as exc:
            raise malformed(self.kind, exc, data, self.api_key) from None
        input_tokens = output_tokens = None
        cache_read = cache_write = 0
        if isinstance(usage, dict):
            uncached = usage.get("input_tokens")
            output_tokens = usage.get("output_tokens")
            cache_read = usage.get("cache_read_input_tokens") or 0
            cache_write = usage.get("cache_creation_input_tokens") or 0
            if uncached is not None:
                input_tokens = uncached + cache_read + cache_write
        return Completion(
            text=text,
            finish_reason=data.get("stop_reason"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cache_read,
            cache_write_tokens=cache_write,
            request_id=response.headers.get("request-id") or data.get("id"),
            latency_ms=latency_ms,
            usage_reported=input_tokens is not None or output_tokens is not None,
        )

    def list_models(self) -> list[str]:
        # The default page is 20 models; follow the cursor so none is hidden.
        models: list[str] = []
        url = join_url(self._base, "/v1/models?limit=1000")
        for _ in range(100):
            data, _response = send_json(
                self._client,
                "GET",
                url,
                provider=self.kind,
                api_key=self.api_key,
                headers=self._headers,
                timeout=30.0,
            )
            try:
                models.extend(str(m["id"]) for m in data["data"])
            except (KeyError, TypeError) as exc:
                raise malformed(self.kind, exc, data, self.api_key) from None
            last_id = data.get("last_id")
            if not data.get("has_more") or not last_id:
                break
            url = join_url(self._base, f"/v1/models?limit=1000&after_id={last_id}")
        return models

    def check(self) -> None:
        self.list_models()
