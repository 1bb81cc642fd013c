"""`ownkey batch ...`: submit a dataset as a batch and watch it (filled in with the
batches feature)."""

from __future__ import annotations

import typer

batch_app = typer.Typer(help="Batches: one run per dataset item.", no_args_is_help=True)
