"""Batches: one run per dataset item, released as in-flight slots free up (filled in
with the batches feature)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

__all__ = ["create_batch", "release_waiting"]


def create_batch(
    session: Session,
    *,
    workflow: str,
    items: list[dict[str, Any]],
    max_in_flight: int,
    name: str | None = None,
    schedule_id: str | None = None,
) -> str:
    """Store a batch of `items` (each one run's input) for `workflow` (id or name) in the
    caller's transaction and return its id; the caller releases the first items after
    its commit with `release_waiting(batch_id)`."""
    raise NotImplementedError


def release_waiting(batch_id: str) -> int:
    """Start runs for the batch's waiting items while it has free in-flight slots (in
    its own transaction, enqueueing after the commit); return how many started."""
    raise NotImplementedError
