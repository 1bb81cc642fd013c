"""Batches on the worker side (filled in with the batches feature)."""

from __future__ import annotations


def on_run_closed(run_id: str) -> None:
    """A run of a batch closed: release the next waiting items; finish the batch if
    every item's run has closed."""
