"""`meshc drift`: see docs/drift.md (being built)."""

from __future__ import annotations

import click


@click.command("drift")
def drift_command() -> None:
    """Not built yet."""
    raise click.UsageError("meshc drift is not built yet")
