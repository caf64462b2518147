"""`meshc import`: see docs/import.md (being built)."""

from __future__ import annotations

import click


@click.command("import")
def import_command() -> None:
    """Not built yet."""
    raise click.UsageError("meshc import is not built yet")
