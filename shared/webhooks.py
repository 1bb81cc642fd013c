"""Webhooks (filled in with the webhooks feature): subscriptions per workflow, batch or
budget, signed deliveries with retries."""

from __future__ import annotations

__all__ = ["on_batch_finished", "on_budget_soft_limit", "on_run_closed", "workflow_has_subscribers"]


def workflow_has_subscribers(workflow_id: str) -> bool:
    """Whether runs of this workflow have webhooks (cached per process)."""
    return False


def on_run_closed(run_id: str) -> None:
    """Queue the deliveries for a closed run."""


def on_batch_finished(batch_id: str) -> None:
    """Queue the deliveries for a finished batch."""


def on_budget_soft_limit(budget_id: str, *, spent_nanos: int, limit_nanos: int) -> None:
    """Queue the deliveries for a budget that reached its soft limit."""
