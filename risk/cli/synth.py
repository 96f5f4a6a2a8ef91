"""`risk synth`: a synthetic world in the published formats, with planted displacement drivers."""

from __future__ import annotations

import time
from pathlib import Path

import click

from risk.cli.common import handles_errors, out


@click.command()
@click.option("--tracts", type=click.IntRange(min=4), required=True, help="Number of tracts (a grid of squares).")
@click.option("--years", type=click.IntRange(min=9), required=True,
              help="Years of evictions, rents and permits (at least 9; the backtest needs 14).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to write the files, config.yaml and README.md into.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--start-year", type=int, default=2000, show_default=True, help="First year of the series.")
@click.option("--geometry", type=click.Choice(["geojson", "gpkg"]), default="geojson", show_default=True,
              help="Tract boundaries as GeoJSON or GeoPackage.")
@click.option("--regions", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the counties into this many regions in config.yaml (one set of files for all).")
@handles_errors
def synth(tracts: int, years: int, out_dir: Path, seed: int, start_year: int, geometry: str, regions: int) -> None:
    """Write a synthetic world whose eviction surges follow known drivers (README.md in the folder lists them)."""
    from risk.sources.synth import write_world

    started = time.perf_counter()
    files = write_world(out_dir, tracts, years, seed=seed, start_year=start_year, geometry=geometry,
                        regions=regions)
    size = sum(p.stat().st_size for p in files.values()) / 1e6
    out.print(f"wrote {len(files)} files ({size:,.1f} MB) to {out_dir} in {time.perf_counter() - started:.1f} s; "
              f"try: risk --config {files['config']} validate", highlight=False)


COMMANDS = (synth,)
"""Added to the `risk` group by :mod:`risk.cli.main`."""
