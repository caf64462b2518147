"""`meshc explain`: see docs/explain.md (being built)."""

from __future__ import annotations

import click


@click.command("explain")
def explain_command() -> None:
    """Not built yet."""
    raise click.UsageError("meshc explain is not built yet")
