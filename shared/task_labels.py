"""What a step message is called in Flower and the worker's log.

Every step runs as the task `ownkey.step` with its step id as the only argument. The
message's `shadow` header names it for people instead: `ownkey.step triage/extract
(extractor)`, that is workflow/step (agent). These names are identifiers the user chose
(the API validates them), never a prompt, an output or a secret; they are cut short and
stripped of control characters all the same, since they end up in logs and web pages.

A label is built where the names are already in hand (planning a run, a claim, the
query that finds a run's next steps): it never costs a query of its own.
"""

from __future__ import annotations

__all__ = ["PART_MAX_CHARS", "step_label"]

# Flower's task list, Prometheus labels and log lines all carry the name: keep it short.
PART_MAX_CHARS = 40


def _clean(part: str) -> str:
    if not part.isprintable():
        part = "".join(ch if ch.isprintable() else "?" for ch in part)
    part = part.strip()
    if len(part) > PART_MAX_CHARS:
        part = part[: PART_MAX_CHARS - 1] + "…"
    return part or "?"


def step_label(*, workflow: str, step: str, agent: str) -> str:
    """`workflow/step (agent)`, each part cleaned and cut to PART_MAX_CHARS."""
    return f"{_clean(workflow)}/{_clean(step)} ({_clean(agent)})"
