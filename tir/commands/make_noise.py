"""`tir make-noise DATASET --rate R --seed S`: RDE-compatible noisy correspondences for the train split."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("make-noise")
@click.argument("dataset")
@click.option("--manifests", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact root holding <DATASET>/manifest.parquet [default: data_manifests].")
@click.option("--rate", type=click.FloatRange(0.0, 1.0), required=True,
              help="Share of train pairs whose captions are shuffled among themselves (RDE: 0.2, 0.5, 0.8).")
@click.option("--seed", type=int, required=True, help="Seed of RDE's generator (RDE's published files use 1).")
@click.option("--from-npy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Import an RDE noise index .npy instead of generating (validated against the train split).")
@click.option("--to-npy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also export the result as an RDE-compatible .npy file (int64 caption source per train pair).")
@click.option("--force", is_flag=True, help="Rebuild even when the noise file is up to date.")
def make_noise(dataset: str, manifests: Path | None, rate: float, seed: int,
               from_npy: Path | None, to_npy: Path | None, force: bool) -> None:
    """Give a RATE share of DATASET's train pairs another pair's caption, exactly as RDE's generator does
    for the same number of captions, rate and seed; writes noise/<RATE>-seed<SEED>.parquet
    (pair_index, caption_source, is_noisy) beside the manifest.
    """
    from tir.knowledge.noise import make_noise as run
    from tir.knowledge.noise import write_npy
    from tir.pipeline import store
    from tir.pipeline.layout import dataset_dir, noise_file

    folder = dataset_dir(dataset, manifests)
    output = noise_file(folder, rate, seed)
    with store.stage_lock(folder, f"make-noise-{output.stem}"):
        store.remove_stale_temps(output.parent, (output.name,))
        result = run(folder, folder.name, rate=rate, seed=seed, from_npy=from_npy, force=force)
    if result.up_to_date:
        click.echo(f"{result.path} is up to date (same manifest and options); use --force to rebuild")
    else:
        share = 100 * result.noisy / result.n if result.n else 0.0
        click.echo(f"{result.noisy:,} of {result.n:,} train pairs noisy ({share:.2f}%)")
        if from_npy is not None and not result.matches_generator:
            click.echo(f"note: {from_npy} differs from RDE's generator at rate {rate:g}, seed {seed}", err=True)
        click.echo(f"wrote {result.path}")
    if to_npy is not None:
        click.echo(f"wrote {write_npy(result.path, to_npy)}")
