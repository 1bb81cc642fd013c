"""ownkey's provider error tree, and the one place where HTTP failures are translated into it.

Every adapter funnels its httpx call through :func:`translate_transport_errors` and
:func:`error_from_response`, so the worker's retry policy and the step's stored error see
the same classes whatever the provider. ``retryable`` is what the retry policy reads::

    ProviderError                      (base; retryable as constructed, default False)
    ├── AuthFailed          no retry   401/403, or no key configured
    ├── RateLimited         retry      429 (retry_after + raw x-ratelimit-* headers attached)
    ├── QuotaExceeded       no retry   402, or 429/400 whose body says quota / billing / credit
    ├── Overloaded          retry      503, Anthropic 529
    ├── BadRequest          no retry   400/404/422 and other 4xx (unknown model, bad base URL)
    ├── ServerError         retry      other 5xx
    ├── ProviderTimeout     retry      httpx.TimeoutException, HTTP 408
    ├── ProviderUnreachable retry      connect refused, DNS, dropped connection
    └── MalformedResponse   no retry   invalid JSON, missing fields, truncated body

Messages are written for the user who owns the key: they name the provider, what went
wrong and the provider's own words (truncated), and never contain the API key. The key is
also scrubbed from anything the provider echoes back, because some proxies do echo it.
httpx exceptions are not chained (``from None``): their request objects carry the auth
headers, and a traceback formatter or error tracker walking ``__cause__`` must not reach them.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

__all__ = [
    "AuthFailed",
    "BadRequest",
    "MalformedResponse",
    "Overloaded",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnreachable",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "error_from_response",
    "parse_retry_after",
    "scrub",
    "translate_transport_errors",
]

MAX_DETAIL_CHARS = 300

# Lower-cased substrings that turn a 429 (or 400) into "you are out of money", which no
# amount of waiting fixes. OpenAI: insufficient_quota; Anthropic: "credit balance is too low";
# others talk about billing or spend limits.
_QUOTA_MARKERS = (
    "insufficient_quota",
    "exceeded your current quota",
    "billing",
    "spend limit",
    "spending limit",
    "credit balance",
    "out of credits",
)


class ProviderError(Exception):
    """Base class; ``str(error)`` is the user-facing message stored on the step."""

    default_retryable: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = self.default_retryable if retryable is None else retryable


class AuthFailed(ProviderError):
    pass


class RateLimited(ProviderError):
    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        retryable: bool | None = None,
        retry_after: float | None = None,
        rate_limit_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.retry_after = retry_after
        # Raw x-ratelimit-* / anthropic-ratelimit-* / retry-after headers, lower-cased names,
        # so a cluster-wide limiter can learn the provider's real budget.
        self.rate_limit_headers: dict[str, str] = dict(rate_limit_headers or {})
        h = self.rate_limit_headers
        self.remaining_requests = h.get("x-ratelimit-remaining-requests") or h.get(
            "anthropic-ratelimit-requests-remaining"
        )
        self.reset_requests = h.get("x-ratelimit-reset-requests") or h.get(
            "anthropic-ratelimit-requests-reset"
        )
        self.remaining_tokens = h.get("x-ratelimit-remaining-tokens") or h.get(
            "anthropic-ratelimit-tokens-remaining"
        )
        self.reset_tokens = h.get("x-ratelimit-reset-tokens") or h.get(
            "anthropic-ratelimit-tokens-reset"
        )


class QuotaExceeded(ProviderError):
    pass


class Overloaded(ProviderError):
    default_retryable = True


class BadRequest(ProviderError):
    pass


class ServerError(ProviderError):
    default_retryable = True


class ProviderTimeout(ProviderError):
    default_retryable = True


class ProviderUnreachable(ProviderError):
    default_retryable = True


class MalformedResponse(ProviderError):
    pass


def scrub(text: str, secret: str | None) -> str:
    """Remove the key from text that came from outside (a provider body, an exception)."""
    # Short strings would blank out ordinary words; real keys are long.
    if secret and len(secret) >= 6 and secret in text:
        text = text.replace(secret, "***")
    return text


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_DETAIL_CHARS:
        return text[: MAX_DETAIL_CHARS - 1] + "…"
    return text


def _provider_detail(response: httpx.Response) -> str:
    """The provider's own explanation, from whichever error shape it uses."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return response.text
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):  # OpenAI, Anthropic, Groq
            return str(err["message"])
        if isinstance(err, str):  # Ollama
            return err
        for key in ("message", "detail"):  # Mistral, vLLM/FastAPI validation errors
            if body.get(key):
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value)
    return response.text


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_go_duration(value: str) -> float | None:
    """OpenAI's x-ratelimit-reset-* values look like "1s", "6m0s", "20ms", "1h2m3.5s"."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or OpenAI's reset header.

    ``headers`` is httpx.Headers, or a plain mapping with lower-case names.
    """
    raw = headers.get("retry-after")
    if raw:
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        reset = headers.get(name)
        if reset:
            seconds = _parse_go_duration(reset)
            if seconds is not None:
                return seconds
    return None


def _rate_limit_headers(headers: httpx.Headers) -> dict[str, str]:
    return {
        name: value
        for name, value in ((k.lower(), v) for k, v in headers.items())
        if name == "retry-after" or "ratelimit" in name
    }


def error_from_response(
    response: httpx.Response, *, provider: str, api_key: str | None
) -> ProviderError:
    """Map a non-2xx response to the tree. Only called off the success path."""
    status = response.status_code
    detail = _truncate(scrub(_provider_detail(response), api_key))
    suffix = f": {detail}" if detail else ""

    def text(what: str) -> str:
        return f"{provider}: {what} (HTTP {status}){suffix}"

    lowered = detail.lower()
    is_quota = any(marker in lowered for marker in _QUOTA_MARKERS)
    if status in (401, 403):
        return AuthFailed(text("the API key was rejected"), status_code=status)
    if status == 402 or (status in (400, 429) and is_quota):
        return QuotaExceeded(text("quota or billing limit reached"), status_code=status)
    if status == 429:
        retry_after = parse_retry_after(response.headers)
        return RateLimited(
            text("rate limited"),
            status_code=status,
            retry_after=retry_after,
            rate_limit_headers=_rate_limit_headers(response.headers),
        )
    if status in (503, 529):
        return Overloaded(text("the provider is overloaded"), status_code=status)
    if status == 408:
        return ProviderTimeout(text("the provider timed out"), status_code=status)
    if status in (404, 405):
        return BadRequest(text("not found (check the model name and base URL)"), status_code=status)
    if 400 <= status < 500:
        return BadRequest(text("the provider refused the request"), status_code=status)
    if status >= 500:
        return ServerError(text("the provider had an internal error"), status_code=status)
    return BadRequest(text("unexpected response (check the base URL)"), status_code=status)


@contextlib.contextmanager
def translate_transport_errors(*, provider: str, api_key: str | None) -> Iterator[None]:
    """Turn httpx's exceptions into the tree, like httpx's own map_httpcore_exceptions."""
    try:
        yield
    except httpx.PoolTimeout as exc:
        raise ProviderTimeout(
            f"{provider}: no free connection in the local pool in time "
            f"(raise the client's pool size): {scrub(str(exc), api_key)}"
        ) from None
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(
            f"{provider}: the request timed out ({type(exc).__name__}): "
            f"{_truncate(scrub(str(exc), api_key))}"
        ) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as exc:
        raise BadRequest(
            f"{provider}: invalid base URL or redirect: {_truncate(scrub(str(exc), api_key))}"
        ) from None
    except httpx.DecodingError as exc:
        raise MalformedResponse(
            f"{provider}: could not decode the response: {_truncate(scrub(str(exc), api_key))}"
        ) from None
    except httpx.TransportError as exc:
        raise ProviderUnreachable(
            f"{provider}: could not reach the provider ({type(exc).__name__}): "
            f"{_truncate(scrub(str(exc), api_key))}"
        ) from None
