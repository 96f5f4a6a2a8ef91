"""`risk init`: a commented config.yaml drafted from the files in a city's folder."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from risk.cli.common import handles_errors, out


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Overwrite a config.yaml already in the folder.")
@handles_errors
def init(folder: Path, force: bool) -> None:
    """Recognise the files in FOLDER by their header and write FOLDER/config.yaml for them."""
    from risk.service.scaffold import write_config

    target, draft = write_config(folder, force)
    table = Table("file", "family", "format", "counties")
    for item in draft.found:
        table.add_row(item.path.name, item.family, item.format, ", ".join(sorted(item.counties)) or "-")
    for path in draft.unknown:
        table.add_row(path.name, "-", "not recognised", "-")
    out.print(table)
    for note in draft.notes:
        out.print(f"note {note}", highlight=False)
    supported = ", ".join(draft.outcomes) or "none"
    out.print(f"wrote {target} (outcomes these files support: {supported}); next: "
              f"risk --config {target} validate", highlight=False)


COMMANDS = (init,)
"""Added to the `risk` group by :mod:`risk.cli.main`."""
