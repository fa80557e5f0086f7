"""`tir info PATH`: print an artifact's provenance, schema, row counts and summary."""

from __future__ import annotations

import click

from tir.pipeline.info import describe


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
def info(paths: tuple[str, ...]) -> None:
    """Describe tir artifacts (Parquet or JSON): who made them, from what, their schema and contents.

    PATHS are one or more artifact files, for example data_manifests/CUHK-PEDES/manifest.parquet.
    """
    for path in paths:
        click.echo(describe(path))
