"""`tir prepare DATASET --root DIR`: raw annotations -> manifest.parquet, rejects.parquet, stats.json."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("dataset")
@click.option("--root", required=True, type=click.Path(path_type=Path),
              help="Dataset folder holding the annotation file and imgs/, or the folder holding <DATASET>/ "
                   "(e.g. data/ with data/CUHK-PEDES/reid_raw.json, as the reference repos lay it out).")
@click.option("--annotations", type=click.Path(path_type=Path), default=None,
              help="The raw annotation JSON file, when it is not under ROOT with one of the usual names.")
@click.option("--manifests", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact root: writes <MANIFESTS>/<DATASET>/, the same --manifests every later stage takes "
                   "[default: data_manifests].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The dataset's artifact folder itself (<manifests>/<DATASET>); use --manifests or --out, not both.")
@click.option("--check-images/--no-check-images", default=True, show_default=True,
              help="Read every image header (width/height) and reject records whose image is missing or unreadable.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes reading image headers [default: all CPUs].")
@click.option("--force", is_flag=True, help="Rebuild even when the artifacts are up to date.")
def prepare(dataset: str, root: Path, annotations: Path | None, manifests: Path | None, out: Path | None,
            check_images: bool, jobs: int | None, force: bool) -> None:
    """Turn DATASET's raw annotations into a manifest: one row per (image, caption) pair.

    DATASET is CUHK-PEDES, ICFG-PEDES or RSTPReid (any case). Writes manifest.parquet (raw order kept),
    rejects.parquet (every record or caption that could not be kept, with the reason and raw JSON) and
    stats.json, then prints ids / images / captions per split and warns about counts that differ from
    the published ones. Does nothing when the outputs are up to date; images are not fingerprinted,
    so use --force after changing image files.
    """
    from tir.errors import UserError
    from tir.pipeline.layout import dataset_dir
    from tir.pipeline.prepare import format_summary, prepare_dataset

    if manifests is not None and out is not None:
        raise UserError("pass --manifests (the artifact root) or --out (the dataset's folder in it), not both")
    if manifests is not None:
        out = dataset_dir(dataset, manifests)
    result = prepare_dataset(dataset, root, annotations=annotations, out=out,
                             check_images=check_images, jobs=jobs, force=force)
    if result.up_to_date:
        click.echo(f"{result.manifest} is up to date (same annotations and options); use --force to rebuild")
        return
    click.echo(format_summary(result.stats))
    click.echo(f"wrote {result.manifest}, {result.rejects.name}, {result.stats_file.name}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
