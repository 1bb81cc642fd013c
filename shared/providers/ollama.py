"""Ollama's native /api/chat, used instead of its OpenAI-compatible /v1 because the native
endpoint reports token counts (prompt_eval_count / eval_count) and done_reason reliably.

Ollama leaves ``prompt_eval_count`` out when the whole prompt came from its cache; the
input count is then unknown (None), never guessed.
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

__all__ = ["OllamaProvider"]


class OllamaProvider:
    __slots__ = ("_base", "_client", "_headers", "_url", "api_key", "kind")

    def __init__(
        self, *, base_url: str, api_key: str | None, client: httpx.Client, kind: str = "ollama"
    ) -> None:
        self.kind = kind
        self.api_key = api_key
        self._client = client
        self._base = base_without_v1(base_url)
        self._url = self._base + "/api/chat"
        # Plain Ollama has no auth; one behind a reverse proxy may want a bearer token.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def complete(self, request: ChatRequest) -> Completion:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": False}
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if options:
            body["options"] = options
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
            text = data["message"]["content"] or ""
        except (KeyError, TypeError) as exc:
            raise malformed(self.kind, exc, data, self.api_key) from None
        if not isinstance(text, str):
            raise malformed(self.kind, TypeError("message.content is not a string"))
        input_tokens = data.get("prompt_eval_count")
        output_tokens = data.get("eval_count")
        return Completion(
            text=text,
            finish_reason=data.get("done_reason"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=0,
            cache_write_tokens=0,
            request_id=response.headers.get("x-request-id"),
            latency_ms=latency_ms,
            usage_reported=input_tokens is not None or output_tokens is not None,
        )

    def list_models(self) -> list[str]:
        data, _ = send_json(
            self._client,
            "GET",
            join_url(self._base, "/api/tags"),
            provider=self.kind,
            api_key=self.api_key,
            headers=self._headers,
            timeout=30.0,
        )
        try:
            return [str(m["name"]) for m in data["models"]]
        except (KeyError, TypeError) as exc:
            raise malformed(self.kind, exc, data, self.api_key) from None

    def check(self) -> None:
        self.list_models()
