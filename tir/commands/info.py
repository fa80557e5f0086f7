"""`tir info PATH`: describe an artifact, a run folder, a training log, a run config or a checkpoint."""

from __future__ import annotations

import click

from tir.pipeline.info import describe


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def info(paths: tuple[str, ...]) -> None:
    """Describe tir artifacts and runs: who made them, from what, their schema and contents.

    PATHS are artifact files (data_manifests/CUHK-PEDES/manifest.parquet, stats.json, ...), run folders
    (runs/<name>: config, epochs done, best epoch and its metrics, checkpoint sizes, eval results), a
    run's metrics.jsonl or config.yaml, or a checkpoint (.pt).
    """
    from tir.runs import describe_path

    for path in paths:
        click.echo(describe_path(path) or describe(path))
