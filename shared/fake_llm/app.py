"""A fake LLM provider speaking OpenAI, Anthropic and Ollama wire formats on one port.

Tests, demos and benchmarks point real adapters at it: replies are deterministic
(``"[model] last user message"``) so data flow can be checked end to end, token counts
are words, and faults can be injected three ways (magic model names, a queue of the next
N calls, a time window). It is built to be cheap (a benchmark pushes thousands of calls a
second through it on two cores): no validation models, one ``json.loads`` and one
``json.dumps`` per call, latency via ``asyncio.sleep`` so waits overlap.

Faults and latency apply to completion calls only; model listings answer at once. The
native Ollama endpoints never check keys, like Ollama itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections import deque
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["BASE_MODELS", "FAULT_KINDS", "Fault", "FakeConfig", "FakeState", "create_app"]

BASE_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o"),
    "anthropic": ("claude-3-5-haiku-latest", "claude-sonnet-4-5"),
    "ollama": ("llama3.2",),
}
# kind -> status used when a fault names only its kind.
FAULT_KINDS: dict[str, int] = {
    "rate_limit": 429,
    "quota": 429,
    "overloaded": 529,
    "server": 500,
    "auth": 401,
    "bad_request": 400,
    "timeout": 200,
    "malformed": 200,
}
_RUNTIME_FIELDS = {"latency_seconds", "input_tokens", "output_tokens", "cached_tokens"}
_RUNTIME_FIELDS |= {"cache_write_tokens", "valid_keys", "models", "report_usage"}
_RUNTIME_FIELDS |= {"timeout_sleep_seconds"}


@dataclass(frozen=True)
class FakeConfig:
    latency_seconds: float = 0.0
    input_tokens: int | None = None  # None: words in system + all messages
    output_tokens: int | None = None  # None: words in the reply
    cached_tokens: int = 0  # OpenAI cached_tokens / Anthropic cache_read_input_tokens
    cache_write_tokens: int = 0  # Anthropic cache_creation_input_tokens
    valid_keys: AbstractSet[str] = frozenset()  # empty: accept any key, or none
    models: tuple[str, ...] = ()  # listed by every format, after the built-in ones
    timeout_sleep_seconds: float = 300.0  # how long a "timeout" fault hangs
    report_usage: bool = True  # False: omit usage, like some local servers
    max_recorded_calls: int = 100_000  # older calls drop out of /_fake/calls; count goes on


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    status: int
    retry_after: float | None = None


def fault_from_spec(spec: dict[str, Any]) -> Fault:
    """{"status": 429} or {"kind": "quota"} or both; raises ValueError on nonsense."""
    kind, status = spec.get("kind"), spec.get("status")
    if kind is not None and kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
    if status is None:
        if kind is None:
            raise ValueError("give a status or a kind")
        status = FAULT_KINDS[kind]
    status = int(status)
    if kind is None:
        if status == 429:
            kind = "rate_limit"
        elif status in (401, 403):
            kind = "auth"
        elif status in (503, 529):
            kind = "overloaded"
        elif status >= 500:
            kind = "server"
        elif status >= 400:
            kind = "bad_request"
        else:
            raise ValueError("a status below 400 needs kind timeout or malformed")
    retry_after = spec.get("retry_after")
    if retry_after is None and status == 429:
        retry_after = 1.0
    return Fault(kind, status, None if retry_after is None else float(retry_after))


def _fault_for_model(model: str) -> Fault | None:
    """Magic model names: fault-429, fault-529, fault-timeout, fault-quota, fault-malformed..."""
    if not model.startswith("fault-"):
        return None
    name = model[6:]
    try:
        return fault_from_spec({"status": int(name)} if name.isdigit() else {"kind": name})
    except ValueError:
        return None


class FakeState:
    """Everything mutable: config, recorded calls, pending faults. Event-loop thread only."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.calls: deque[dict[str, Any]] = deque(maxlen=config.max_recorded_calls)
        self.count = 0
        self.queued: deque[list[Any]] = deque()  # [Fault, remaining]
        self.windows: list[tuple[float, Fault]] = []  # (monotonic deadline, Fault)
        self.seq = itertools.count(1)

    def reset(self) -> None:
        self.calls.clear()
        self.count = 0
        self.queued.clear()
        self.windows.clear()

    def record(self, path: str, fmt: str) -> dict[str, Any]:
        call: dict[str, Any] = {"t": time.time(), "path": path, "format": fmt, "model": None}
        call["status"] = None
        call["prompt"] = None
        call["t_done"] = None
        self.calls.append(call)
        self.count += 1
        return call

    def take_fault(self) -> Fault | None:
        if self.queued:
            entry = self.queued[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self.queued.popleft()
            fault: Fault = entry[0]
            return fault
        if self.windows:
            now = time.monotonic()
            self.windows = [(until, f) for until, f in self.windows if until > now]
            if self.windows:
                return self.windows[0][1]
        return None


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _go_duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:g}s"


_MESSAGES = {
    "rate_limit": "Rate limit reached for requests (fake-llm). Please try again later.",
    "quota": "You exceeded your current quota, please check your plan and billing details.",
    "overloaded": "Overloaded",
    "server": "The server had an error while processing your request.",
    "auth": "Incorrect API key provided.",
    "bad_request": "Invalid request (fake-llm fault).",
}
_ANTHROPIC_TYPES = {
    "rate_limit": "rate_limit_error",
    "quota": "rate_limit_error",
    "overloaded": "overloaded_error",
    "server": "api_error",
    "auth": "authentication_error",
    "bad_request": "invalid_request_error",
}
_OPENAI_TYPES = {
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "quota": ("insufficient_quota", "insufficient_quota"),
    "overloaded": ("server_error", None),
    "server": ("server_error", None),
    "auth": ("invalid_request_error", "invalid_api_key"),
    "bad_request": ("invalid_request_error", None),
}


def error_response(fmt: str, fault: Fault, message: str | None = None) -> Response:
    """An error in the provider's own shape, with the rate-limit headers clients read."""
    message = message or _MESSAGES[fault.kind]
    body: dict[str, Any]
    if fmt == "anthropic":
        body = {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES[fault.kind], "message": message},
        }
    elif fmt == "ollama":
        body = {"error": message}
    else:
        err_type, code = _OPENAI_TYPES[fault.kind]
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
        headers["x-ratelimit-limit-requests"] = "60"
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = _go_duration(fault.retry_after)
        if fmt == "anthropic":
            headers["anthropic-ratelimit-requests-remaining"] = "0"
    return _json(body, fault.status, headers)


_AUTH_FAULT = Fault("auth", 401)
_BAD_REQUEST = Fault("bad_request", 400)


def _count_words(body: dict[str, Any], messages: list[Any]) -> int:
    words = len(_text_of(body.get("system")).split())
    for message in messages:
        if isinstance(message, dict):
            words += len(_text_of(message.get("content")).split())
    return max(1, words)


def _last_user_message(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


class _Handlers:
    """Route endpoints, bound to one FakeState (no app.state lookups on the hot path)."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def _key_ok(self, request: Request, fmt: str) -> bool:
        keys = self.state.config.valid_keys
        if not keys or fmt == "ollama":
            return True
        if fmt == "anthropic":
            return request.headers.get("x-api-key") in keys
        auth = request.headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and auth[7:] in keys

    async def openai_chat(self, request: Request) -> Response:
        return await self._chat(request, "openai")

    async def anthropic_messages(self, request: Request) -> Response:
        return await self._chat(request, "anthropic")

    async def ollama_chat(self, request: Request) -> Response:
        return await self._chat(request, "ollama")

    async def _chat(self, request: Request, fmt: str) -> Response:
        call = self.state.record(request.scope["path"], fmt)
        response = await self._complete(request, fmt, call)
        call["status"] = response.status_code
        # When the answer left the handler, on the same clock as "t": a benchmark measures
        # the gap between one call's t_done and the next call's t without clock skew.
        call["t_done"] = time.time()
        return response

    async def _complete(self, request: Request, fmt: str, call: dict[str, Any]) -> Response:
        state = self.state
        if not self._key_ok(request, fmt):
            message = "invalid x-api-key" if fmt == "anthropic" else _MESSAGES["auth"]
            return error_response(fmt, _AUTH_FAULT, message)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error_response(fmt, _BAD_REQUEST, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return error_response(fmt, _BAD_REQUEST, "the request body must be a JSON object")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            return error_response(fmt, _BAD_REQUEST, "model and messages are required")
        if fmt == "anthropic":
            max_tokens = body.get("max_tokens")
            if not isinstance(max_tokens, int):
                return error_response(fmt, _BAD_REQUEST, "max_tokens: Field required")
        elif fmt == "ollama":
            options = body.get("options")
            max_tokens = options.get("num_predict") if isinstance(options, dict) else None
        else:
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        prompt = _last_user_message(messages)
        call["model"] = model
        call["prompt"] = prompt

        config = state.config
        fault = state.take_fault() or _fault_for_model(model)
        if fault is not None:
            if fault.kind == "timeout":
                await asyncio.sleep(config.timeout_sleep_seconds)
            elif fault.kind != "malformed":
                return error_response(fmt, fault)
        latency = config.latency_seconds
        override = request.headers.get("x-fake-latency")
        if override:
            with contextlib.suppress(ValueError):
                latency = float(override)
        if latency > 0:
            await asyncio.sleep(latency)

        text = f"[{model}] {prompt}"
        words = text.split()
        truncated = isinstance(max_tokens, int) and 0 < max_tokens < len(words)
        if truncated:
            words = words[:max_tokens]
            text = " ".join(words)
        out_tokens = len(words) if config.output_tokens is None else config.output_tokens
        in_tokens = (
            _count_words(body, messages) if config.input_tokens is None else config.input_tokens
        )
        in_tokens = max(in_tokens, config.cached_tokens + config.cache_write_tokens)
        n = next(state.seq)
        if fmt == "anthropic":
            payload, headers = _anthropic_reply(
                config, n, model, text, truncated, in_tokens, out_tokens
            )
        elif fmt == "ollama":
            payload, headers = _ollama_reply(config, model, text, truncated, in_tokens, out_tokens)
        else:
            payload, headers = _openai_reply(
                config, n, model, text, truncated, in_tokens, out_tokens
            )
        encoded = json.dumps(payload, separators=(",", ":"))
        if fault is not None and fault.kind == "malformed":
            encoded = encoded[: len(encoded) // 2]
        return Response(encoded, 200, headers, media_type="application/json")

    async def models(self, request: Request) -> Response:
        fmt = "anthropic" if "anthropic-version" in request.headers else "openai"
        call = self.state.record(request.scope["path"], fmt)
        if not self._key_ok(request, fmt):
            response = error_response(fmt, _AUTH_FAULT)
        else:
            names = BASE_MODELS[fmt] + self.state.config.models
            if fmt == "anthropic":
                data = [{"id": m, "type": "model", "display_name": m} for m in names]
                response = _json(
                    {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
                )
            else:
                data = [{"id": m, "object": "model", "owned_by": "fake-llm"} for m in names]
                response = _json({"object": "list", "data": data})
        call["status"] = response.status_code
        return response

    async def tags(self, request: Request) -> Response:
        call = self.state.record(request.scope["path"], "ollama")
        names = BASE_MODELS["ollama"] + self.state.config.models
        call["status"] = 200
        return _json({"models": [{"name": m, "model": m, "size": 0} for m in names]})

    async def calls(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.reset()
        recorded = list(self.state.calls)
        # ?limit=N returns only the newest N (0: just the count), for big benchmark runs.
        limit = request.query_params.get("limit")
        if limit is not None and limit.isdigit():
            recorded = recorded[len(recorded) - int(limit) :] if int(limit) else []
        return _json({"count": self.state.count, "calls": recorded})

    async def faults(self, request: Request) -> Response:
        state = self.state
        if request.method == "DELETE":
            state.queued.clear()
            state.windows.clear()
        elif request.method == "POST":
            try:
                spec = json.loads(await request.body())
                fault = fault_from_spec(spec)
                if spec.get("for_seconds") is not None:
                    state.windows.append((time.monotonic() + float(spec["for_seconds"]), fault))
                else:
                    state.queued.append([fault, int(spec.get("count", 1))])
            except (ValueError, TypeError, AttributeError) as exc:
                return _json({"error": str(exc)}, 400)
        now = time.monotonic()
        return _json(
            {
                "queued": [{**dataclasses.asdict(f), "count": n} for f, n in state.queued],
                "windows": [
                    {**dataclasses.asdict(f), "seconds_left": round(until - now, 3)}
                    for until, f in state.windows
                    if until > now
                ],
            }
        )

    async def config(self, request: Request) -> Response:
        state = self.state
        if request.method == "POST":
            try:
                changes = json.loads(await request.body())
                unknown = set(changes) - _RUNTIME_FIELDS
                if unknown:
                    raise ValueError(f"unknown fields: {sorted(unknown)}")
                if "valid_keys" in changes:
                    changes["valid_keys"] = frozenset(changes["valid_keys"] or ())
                if "models" in changes:
                    changes["models"] = tuple(changes["models"] or ())
                state.config = dataclasses.replace(state.config, **changes)
            except (ValueError, TypeError, AttributeError) as exc:
                return _json({"error": str(exc)}, 400)
        public = dataclasses.asdict(state.config)
        # The control API never shows keys, only how many there are.
        public["valid_keys"] = len(state.config.valid_keys)
        return _json(public)

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})


def _openai_reply(
    config: FakeConfig, n: int, model: str, text: str, truncated: bool, in_tok: int, out_tok: int
) -> tuple[dict[str, Any], dict[str, str]]:
    payload: dict[str, Any] = {
        "id": f"chatcmpl-fake{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if truncated else "stop",
            }
        ],
        "system_fingerprint": "fp_fake",
    }
    if config.report_usage:
        payload["usage"] = {
            "prompt_tokens": in_tok,  # includes the cached ones, as OpenAI does
            "completion_tokens": out_tok,
            "total_tokens": in_tok + out_tok,
            "prompt_tokens_details": {"cached_tokens": config.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
    return payload, {"x-request-id": f"req_fake{n}"}


def _anthropic_reply(
    config: FakeConfig, n: int, model: str, text: str, truncated: bool, in_tok: int, out_tok: int
) -> tuple[dict[str, Any], dict[str, str]]:
    payload: dict[str, Any] = {
        "id": f"msg_fake{n:012d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
    }
    if config.report_usage:
        payload["usage"] = {
            # Anthropic counts cache reads and writes apart from input_tokens.
            "input_tokens": in_tok - config.cached_tokens - config.cache_write_tokens,
            "output_tokens": out_tok,
            "cache_read_input_tokens": config.cached_tokens,
            "cache_creation_input_tokens": config.cache_write_tokens,
        }
    return payload, {"request-id": f"req_fake{n}"}


def _ollama_reply(
    config: FakeConfig, model: str, text: str, truncated: bool, in_tok: int, out_tok: int
) -> tuple[dict[str, Any], dict[str, str]]:
    payload: dict[str, Any] = {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": {"role": "assistant", "content": text},
        "done_reason": "length" if truncated else "stop",
        "done": True,
        "total_duration": 1_000_000,
        "load_duration": 0,
    }
    if config.report_usage:
        payload["prompt_eval_count"] = in_tok
        payload["prompt_eval_duration"] = 500_000
        payload["eval_count"] = out_tok
        payload["eval_duration"] = 500_000
    return payload, {}


def create_app(config: FakeConfig) -> Starlette:
    """The state is reachable as ``app.state.fake`` for in-process tests."""
    state = FakeState(config)
    h = _Handlers(state)
    routes = [
        Route("/v1/chat/completions", h.openai_chat, methods=["POST"]),
        Route("/v1/messages", h.anthropic_messages, methods=["POST"]),
        Route("/api/chat", h.ollama_chat, methods=["POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/api/tags", h.tags, methods=["GET"]),
        Route("/_fake/calls", h.calls, methods=["GET", "DELETE"]),
        Route("/_fake/faults", h.faults, methods=["GET", "POST", "DELETE"]),
        Route("/_fake/config", h.config, methods=["GET", "POST"]),
        Route("/_fake/health", h.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state
    return app
