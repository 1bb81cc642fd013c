"""Percentiles and the per-hop overhead read from fake-llm's call log."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

_STEP = re.compile(r"^run (\S+) s(\d+)")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def hops(calls: Iterable[dict[str, Any]], *, prefix: str) -> list[float]:
    """Seconds from one step's answer (``t_done``) to the next step's call (``t``) of the
    same run, for runs whose id starts with ``prefix``. Prompts start ``run <id> s<k>``."""
    by_run: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for call in calls:
        match = _STEP.match(str(call.get("prompt") or ""))
        if match and match.group(1).startswith(prefix):
            by_run[match.group(1)][int(match.group(2))] = call
    gaps: list[float] = []
    for steps in by_run.values():
        for k in sorted(steps):
            nxt = steps.get(k + 1)
            if nxt is not None and steps[k].get("t_done") is not None:
                gaps.append(float(nxt["t"]) - float(steps[k]["t_done"]))
    return gaps


def first_call(calls: Iterable[dict[str, Any]]) -> float:
    return min(float(c["t"]) for c in calls)
