"""Scenario 7: CPU time per call of a provider client, against the same fake-llm.

Each client runs in its own process (``python -m bench.scenarios.client``) so one
library's imports and background threads never bill another: warm-up calls first, then
``time.process_time()`` over N sequential calls. Clients: a bare ``httpx.Client.post`` +
``json.loads``, ownkey's adapter, the official ``openai`` SDK, ``litellm.completion``
(the last two only if installed: ``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import REPO, Bench, BenchError
from bench.results import Figure, ScenarioResult, at_most, ratio
from bench.scale import Scale

CLIENTS = ("bare", "ownkey", "openai", "litellm")
API_KEY = "sk-bench-client-0000"
MODEL = "bench-model"
PROMPT = "Summarise the quarterly report in three sentences."


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    cpu: dict[str, float | None] = {}
    for client in CLIENTS:
        if client in ("openai", "litellm") and not importlib.util.find_spec(client):
            cpu[client] = None
            result.notes.append(f"{client}: not installed (pip install '.[bench]')")
            continue
        cpu[client] = _measure(bench, scale, client)
    bare = cpu["bare"]
    for client in CLIENTS:
        value = cpu[client]
        r = ratio(value, bare)
        target = client == "ownkey"
        result.add(
            Figure(
                metric=f"CPU per call: {client}",
                value=value,
                unit="ms" if value is not None else "not installed",
                baseline=bare,
                baseline_name="bare httpx post + json.loads",
                ratio=r,
                ratio_label=f"{client}/bare",
                target="<= 1.5x" if target else "",
                passed=at_most(r, 1.5) if target else None,
            )
        )
    result.notes.append(
        f"{scale.client_calls} sequential calls per client after {scale.client_warmup} "
        "warm-up calls, zero latency, each client in its own process."
    )


def _measure(bench: Bench, scale: Scale, client: str) -> float:
    command = [
        sys.executable,
        "-m",
        "bench.scenarios.client",
        client,
        "--base-url",
        f"{bench.fake.url}/v1",
        "--calls",
        str(scale.client_calls),
        "--warmup",
        str(scale.client_warmup),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=bench.env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise BenchError(f"client {client} failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["cpu_ms_per_call"])


def _make_call(client: str, base_url: str) -> Callable[[], str]:
    messages = [{"role": "user", "content": PROMPT}]
    if client == "bare":
        import httpx

        http = httpx.Client(timeout=30)
        url = f"{base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {API_KEY}"}

        def bare() -> str:
            response = http.post(url, json={"model": MODEL, "messages": messages}, headers=headers)
            return str(json.loads(response.content)["choices"][0]["message"]["content"])

        return bare
    if client == "ownkey":
        import httpx

        from shared.providers import ChatRequest, make_provider

        provider = make_provider(
            "openai", base_url=base_url, api_key=API_KEY, client=httpx.Client(timeout=30)
        )
        request = ChatRequest(model=MODEL, prompt=PROMPT)
        return lambda: provider.complete(request).text
    if client == "openai":
        from openai import OpenAI

        sdk = OpenAI(base_url=base_url, api_key=API_KEY)

        def openai_sdk() -> str:
            completion = sdk.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
            return str(completion.choices[0].message.content)

        return openai_sdk
    import litellm

    def litellm_call() -> str:
        response: Any = litellm.completion(
            model=f"openai/{MODEL}", api_base=base_url, api_key=API_KEY, messages=messages
        )
        return str(response.choices[0].message.content)

    return litellm_call


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU per call of one provider client")
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    call = _make_call(args.client, args.base_url)
    for _ in range(args.warmup):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.calls):
        text = call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if not text.startswith(f"[{MODEL}]"):
        raise SystemExit(f"unexpected answer: {text!r}")
    print(
        json.dumps(
            {
                "client": args.client,
                "cpu_ms_per_call": cpu * 1000 / args.calls,
                "wall_ms_per_call": wall * 1000 / args.calls,
            }
        )
    )


if __name__ == "__main__":
    main()
