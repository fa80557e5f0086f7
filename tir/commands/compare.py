"""`tir compare RUN_A RUN_B [...]`: config differences, test metrics and per-query wins of runs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Which `tir eval` results to compare (each run needs eval-<split>.parquet).")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="Example queries listed per run that only it gets right at rank 1.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the runs' validation curves (R@1, mAP per epoch) on one figure into this PNG.")
def compare(runs: tuple[Path, ...], split: str, examples: int, plot_path: Path | None) -> None:
    """Compare evaluated runs: a Markdown table of config differences and test metrics, then the queries the
    first run gets right at rank 1 and each other run does not (counts and examples), and the reverse.

    RUNS are two or more run folders, each evaluated with `tir eval` on the same dataset.
    """
    from tir.compare import markdown_report, plot_validation
    from tir.errors import UserError
    from tir.runs import read_run

    if len(runs) < 2:
        raise UserError("give at least two run folders to compare")
    loaded = [read_run(run) for run in runs]
    click.echo(markdown_report(loaded, split, examples))
    if plot_path is not None:
        click.echo(f"\nvalidation curves: {plot_validation(loaded, plot_path)}")
