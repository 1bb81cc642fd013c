"""The hand-written baseline of scenario 3: what a user writes without a platform.

``python -m bench.asyncio_script --client httpx --url URL --calls N --concurrency C``
makes N chat calls with at most C in flight (a semaphore; a client whose pool is sized
to C) and prints one JSON line: when the last answer was parsed, and how many failed.
Plain ``asyncio.run``, no uvloop: the script a user would write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

API_KEY = "sk-bench-script-0000"


def _body(model: str, i: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"run script-{i} s1"}]}


async def with_httpx(url: str, calls: int, concurrency: int, model: str) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    done: list[float] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one(i: int) -> None:
            async with semaphore:
                try:
                    response = await client.post(url, json=_body(model, i), headers=headers)
                    response.raise_for_status()
                    response.json()["choices"][0]["message"]["content"]
                    done.append(time.time())
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(calls)))
    return {"last_done": max(done, default=None), "ok": len(done), "errors": errors[:5]}


async def with_aiohttp(url: str, calls: int, concurrency: int, model: str) -> dict[str, Any]:
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    done: list[float] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> None:
            async with semaphore:
                try:
                    async with session.post(url, json=_body(model, i), headers=headers) as r:
                        r.raise_for_status()
                        (await r.json())["choices"][0]["message"]["content"]
                    done.append(time.time())
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(calls)))
    return {"last_done": max(done, default=None), "ok": len(done), "errors": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=["httpx", "aiohttp"], required=True)
    parser.add_argument("--url", required=True, help="the chat completions URL")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--model", default="bench-model")
    args = parser.parse_args()
    runner = with_httpx if args.client == "httpx" else with_aiohttp
    outcome = asyncio.run(runner(args.url, args.calls, args.concurrency, args.model))
    json.dump(outcome, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
