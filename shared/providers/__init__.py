"""LLM provider adapters over httpx: one interface, one error tree, no vendor SDKs."""

from __future__ import annotations

from shared.providers.anthropic import AnthropicProvider
from shared.providers.base import (
    DEFAULT_BASE_URLS,
    LOCAL_PROVIDERS,
    NEEDS_SECRET,
    ChatRequest,
    Completion,
    Provider,
    ProviderKind,
)
from shared.providers.errors import (
    AuthFailed,
    BadRequest,
    MalformedResponse,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    QuotaExceeded,
    RateLimited,
    ServerError,
    parse_retry_after,
)
from shared.providers.ollama import OllamaProvider
from shared.providers.openai_chat import OpenAIChatProvider
from shared.providers.registry import make_provider

__all__ = [
    "DEFAULT_BASE_URLS",
    "LOCAL_PROVIDERS",
    "NEEDS_SECRET",
    "AnthropicProvider",
    "AuthFailed",
    "BadRequest",
    "ChatRequest",
    "Completion",
    "MalformedResponse",
    "OllamaProvider",
    "OpenAIChatProvider",
    "Overloaded",
    "Provider",
    "ProviderError",
    "ProviderKind",
    "ProviderTimeout",
    "ProviderUnreachable",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "make_provider",
    "parse_retry_after",
]
