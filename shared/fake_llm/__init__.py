"""A fake LLM provider (OpenAI, Anthropic and Ollama wire formats) for tests and benchmarks."""

from __future__ import annotations

from shared.fake_llm.app import BASE_MODELS, FAULT_KINDS, FakeConfig, FakeState, Fault, create_app
from shared.fake_llm.server import run, running_fake_llm

__all__ = [
    "BASE_MODELS",
    "FAULT_KINDS",
    "FakeConfig",
    "FakeState",
    "Fault",
    "create_app",
    "run",
    "running_fake_llm",
]
