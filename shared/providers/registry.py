"""Which adapter serves which provider kind: the only place that knows the mapping.

Configuration mistakes (unknown kind, missing key or base URL) are raised as ProviderError
subclasses, so the API's "test key" call and the worker report them like any other
provider failure instead of crashing.
"""

from __future__ import annotations

import httpx

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import DEFAULT_BASE_URLS, NEEDS_SECRET, Provider
from shared.providers.errors import AuthFailed, BadRequest
from shared.providers.ollama import OllamaProvider
from shared.providers.openai_chat import OpenAIChatProvider

__all__ = ["make_provider"]


def make_provider(
    kind: str, *, base_url: str | None, api_key: str | None, client: httpx.Client
) -> Provider:
    """Build the adapter for ``kind``; ``client`` is shared and never closed here."""
    if kind not in DEFAULT_BASE_URLS:
        known = ", ".join(sorted(DEFAULT_BASE_URLS))
        raise BadRequest(f"unknown provider kind {kind!r} (known: {known})")
    url = base_url or DEFAULT_BASE_URLS[kind]
    if not url:
        raise BadRequest(f"{kind}: a base URL is required (e.g. http://localhost:8000/v1)")
    if not api_key and kind in NEEDS_SECRET:
        raise AuthFailed(f"{kind}: no API key is configured")
    if kind == "anthropic":
        return AnthropicProvider(base_url=url, api_key=api_key, client=client)
    if kind == "ollama":
        return OllamaProvider(base_url=url, api_key=api_key, client=client)
    return OpenAIChatProvider(kind=kind, base_url=url, api_key=api_key, client=client)
