"""`tir prepare DATASET --root DIR`: raw annotations -> manifest.parquet, rejects.parquet, stats.json."""

from __future__ import annotations

from pathlib import Path

import click


def _custom_spec(name: str, root: Path, annotations: Path | None, keys: tuple[str | None, ...]):
    """The spec of a custom dataset, with the key defaults of its file type (JSON or CSV)."""
    from tir.errors import UserError
    from tir.pipeline.datasets import custom_spec
    from tir.pipeline.layout import is_custom_name

    if not is_custom_name(name):
        raise UserError(f"custom dataset name {name!r} must be a folder name of letters, digits, _ . - "
                        "(not one of the known datasets, whose formats need no --format)")
    csv = (annotations.suffix.lower() == ".csv") if annotations is not None else (
        (root / "annotations.csv").is_file() and not (root / "annotations.json").is_file())
    defaults = ("image_path", "person_id", "split", "caption") if csv else ("file_path", "id", "split", "captions")
    return custom_spec(name, *(key or default for key, default in zip(keys, defaults)))


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
@click.option("--format", "format_", type=click.Choice(["auto", "custom"]), default="auto", show_default=True,
              help="auto: DATASET names the raw format (CUHK-PEDES, ICFG-PEDES, RSTPReid). custom: your own dataset "
                   "under the name DATASET, from a JSON list of records or a CSV with one caption per row "
                   "(--annotations FILE, or annotations.json / annotations.csv under ROOT); see README, Your own dataset.")
@click.option("--image-key", default=None,
              help="custom: key / CSV column of the image path, relative to ROOT/imgs [JSON: file_path; CSV: image_path].")
@click.option("--id-key", default=None, help="custom: key / CSV column of the person id (an integer) [JSON: id; CSV: person_id].")
@click.option("--split-key", default=None, help="custom: key / CSV column of the split: train, val or test [split].")
@click.option("--captions-key", default=None,
              help="custom: key of the caption list (JSON) or column of the one caption (CSV) [JSON: captions; CSV: caption].")
@click.option("--check-images/--no-check-images", default=True, show_default=True,
              help="Read every image header (width/height) and reject records whose image is missing or unreadable.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes reading image headers [default: all CPUs].")
@click.option("--force", is_flag=True, help="Rebuild even when the artifacts are up to date.")
def prepare(dataset: str, root: Path, annotations: Path | None, manifests: Path | None, out: Path | None,
            format_: str, image_key: str | None, id_key: str | None, split_key: str | None, captions_key: str | None,
            check_images: bool, jobs: int | None, force: bool) -> None:
    """Turn DATASET's raw annotations into a manifest: one row per (image, caption) pair.

    DATASET is CUHK-PEDES, ICFG-PEDES or RSTPReid (any case), or with --format custom a name of your choosing. Writes manifest.parquet (raw order kept),
    rejects.parquet (every record or caption that could not be kept, with the reason and raw JSON) and
    stats.json, then prints ids / images / captions per split and warns about counts that differ from
    the published ones. Does nothing when the outputs are up to date; images are not fingerprinted,
    so use --force after changing image files.
    """
    from tir.errors import UserError
    from tir.pipeline.layout import DEFAULT_MANIFESTS, dataset_dir
    from tir.pipeline.prepare import format_summary, prepare_dataset

    if manifests is not None and out is not None:
        raise UserError("pass --manifests (the artifact root) or --out (the dataset's folder in it), not both")
    keys = (image_key, id_key, split_key, captions_key)
    spec = None
    if format_ == "custom":
        spec = _custom_spec(dataset, root, annotations, keys)
        out = out if out is not None else Path(manifests if manifests is not None else DEFAULT_MANIFESTS) / dataset
    elif any(key is not None for key in keys):
        raise UserError("--image-key, --id-key, --split-key and --captions-key go with --format custom")
    elif manifests is not None:
        out = dataset_dir(dataset, manifests)
    result = prepare_dataset(dataset, root, annotations=annotations, out=out,
                             check_images=check_images, jobs=jobs, force=force, spec=spec)
    if result.up_to_date:
        click.echo(f"{result.manifest} is up to date (same annotations and options); use --force to rebuild")
        return
    click.echo(format_summary(result.stats))
    click.echo(f"wrote {result.manifest}, {result.rejects.name}, {result.stats_file.name}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
