"""`tir plan-masks DATASET`: manifest + graphs -> mask_plans.parquet (CLIP tokens labelled by graph level)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plan-masks")
@click.argument("dataset")
@click.option("--manifests", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact root holding <DATASET>/manifest.parquet and graphs.parquet [default: data_manifests].")
@click.option("--context-length", type=click.IntRange(min=3), default=77, show_default=True,
              help="Tokens per caption, start and end tokens included; longer captions are cut, end token kept last.")
@click.option("--force", is_flag=True, help="Rebuild even when mask_plans.parquet is up to date.")
def plan_masks(dataset: str, manifests: Path | None, context_length: int, force: bool) -> None:
    """Tokenise DATASET's captions with CLIP's BPE and label each token with its word, graph level
    (object / attribute / relation) and graph element, for knowledge-guided masked language modelling.

    Reads manifest.parquet and graphs.parquet (from `tir prepare` and `tir parse-graphs`) and writes
    mask_plans.parquet beside them, tied to the tokenizer (name and vocabulary hash in its metadata).
    """
    from tir.knowledge.mask_plans import plan_masks as run
    from tir.pipeline import store
    from tir.pipeline.layout import MASK_PLANS, dataset_dir

    folder = dataset_dir(dataset, manifests)
    with store.stage_lock(folder, "plan-masks"):
        store.remove_stale_temps(folder, (MASK_PLANS,))
        result = run(folder, folder.name, context_length=context_length, force=force)
    if result.up_to_date:
        click.echo(f"{result.path} is up to date (same manifest, graphs and options); use --force to rebuild")
        return
    states = result.element_states or {}
    click.echo("graph elements: " + ", ".join(f"{k} {v:,}" for k, v in states.items())
               + f"; captions without a graph: {result.captions_without_graph:,}")
    click.echo(f"wrote {result.path}")
