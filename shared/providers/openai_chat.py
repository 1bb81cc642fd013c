"""OpenAI's Chat Completions wire format, spoken by OpenAI, Mistral, Groq, LM Studio, vLLM,
llama.cpp's server and most gateways. One class; the differences are the base URL, whether
a key is sent, and the name of the output-length field.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.providers.base import (
    ChatRequest,
    Completion,
    join_url,
    malformed,
    post_chat,
    send_json,
)

__all__ = ["OpenAIChatProvider"]


class OpenAIChatProvider:
    __slots__ = (
        "_client",
        "_headers",
        "_max_tokens_field",
        "_models_url",
        "_url",
        "api_key",
        "kind",
    )

    def __init__(
        self, *, kind: str, base_url: str, api_key: str | None, client: httpx.Client
    ) -> None:
        self.kind = kind
        self.api_key = api_key
        self._client = client
        self._url = join_url(base_url, "/chat/completions")
        self._models_url = join_url(base_url, "/models")
        # Servers without auth (LM Studio, a local vLLM) get no Authorization header at all.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # OpenAI's reasoning models reject max_tokens; every OpenAI model accepts
        # max_completion_tokens. Other OpenAI-style servers only know max_tokens.
        self._max_tokens_field = "max_completion_tokens" if kind == "openai" else "max_tokens"

    def complete(self, request: ChatRequest) -> Completion:
        if request.system is None:
            messages = [{"role": "user", "content": request.prompt}]
        else:
            messages = [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ]
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self._max_tokens_field] = request.max_tokens
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
            choice = data["choices"][0]
            content = choice["message"].get("content")
            finish_reason = choice.get("finish_reason")
            usage = data.get("usage")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise malformed(self.kind, exc, data, self.api_key) from None
        if content is None:  # a refusal or a tool call: no text
            text = ""
        elif isinstance(content, str):
            text = content
        else:  # some servers answer with content parts
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        input_tokens = output_tokens = None
        cached = 0
        if isinstance(usage, dict):
            input_tokens = usage.get("prompt_tokens")
            output_tokens = usage.get("completion_tokens")
            # prompt_tokens already includes the cached ones: nothing to add.
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                cached = details.get("cached_tokens") or 0
        return Completion(
            text=text,
            finish_reason=finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            cache_write_tokens=0,
            request_id=response.headers.get("x-request-id") or data.get("id"),
            latency_ms=latency_ms,
            usage_reported=input_tokens is not None or output_tokens is not None,
        )

    def list_models(self) -> list[str]:
        data, _ = send_json(
            self._client,
            "GET",
            self._models_url,
            provider=self.kind,
            api_key=self.api_key,
            headers=self._headers,
            timeout=30.0,
        )
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError) as exc:
            raise malformed(self.kind, exc, data, self.api_key) from None

    def check(self) -> None:
        self.list_models()
