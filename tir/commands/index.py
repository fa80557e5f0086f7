"""`tir index RUN`: encode a gallery once with the run's checkpoint into an index file."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--dataset", help="Dataset whose split is the gallery [default: the run's dataset].")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Split of the dataset whose unique images form the gallery (eval's gallery for test).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Index every jpg/jpeg/png/webp under this folder (recursively) instead of a dataset split.")
@click.option("--manifests", type=click.Path(file_okay=False),
              help="Artifact root holding <dataset>/manifest.parquet [default: the run's manifests].")
@click.option("--image-root", type=click.Path(file_okay=False),
              help="Folder the manifest's image paths are relative to [default: the run's, else <prepare --root>/imgs].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Index file [default: RUN/index-<dataset>-<split>.parquet or RUN/index-<folder>.parquet].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images encoded per batch [default: the run's eval_batch_size].")
@click.option("--workers", type=click.IntRange(min=0), default=min(4, os.cpu_count() or 1), show_default=True,
              help="Processes decoding images in parallel (0: decode in the main process).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--force", is_flag=True, help="Rebuild even when the index is fresh.")
def index(run: Path, dataset: str | None, split: str, images_dir: Path | None, manifests: str | None,
          image_root: str | None, out: Path | None, batch_size: int | None, workers: int, device: str, force: bool) -> None:
    """Encode a gallery with RUN's best checkpoint (a run folder or a .pt file) into an index for `tir search`.

    The index holds each image's path, person id where known and the method's image features, with the
    checkpoint and gallery fingerprints: re-running on an unchanged gallery and checkpoint does nothing,
    a changed one is re-encoded. Unreadable images are listed and skipped.
    """
    from tir.commands.evaluate import device_from_option
    from tir.pipeline.layout import MANIFEST, dataset_dir
    from tir.search import index as gallery_index
    from tir.search.locate import default_index_path
    from tir.training.checkpoint import checkpoint_path, method_from_state, read_checkpoint
    from tir.training.data import image_root as find_image_root

    checkpoint = checkpoint_path(run)
    state = read_checkpoint(checkpoint)
    config = state["config"]
    inputs: dict[str, Path] = {"checkpoint": checkpoint}
    if images_dir is not None:
        gallery = gallery_index.folder_gallery(images_dir)
        source = gallery.root.name
    else:
        name = dataset or config.get("dataset")
        folder = dataset_dir(name, manifests or config["manifests"]) if name else Path(manifests or config["manifests"])
        manifest = folder / MANIFEST
        if not manifest.exists():
            from tir.errors import UserError

            raise UserError("manifest not found; pass --dataset / --manifests, or --images DIR", path=manifest)
        root = find_image_root(manifest, image_root if image_root is not None else config.get("image_root"))
        gallery = gallery_index.split_gallery(manifest, split, root)
        inputs["manifest"] = manifest
        source = f"{folder.name}-{split}"
    target = out or default_index_path(run, source)
    options = gallery_index.index_options(config["method"], gallery)
    if not force and gallery_index.is_fresh_index(target, options, inputs):
        click.echo(f"{target}: fresh (same checkpoint and gallery); nothing to do (--force rebuilds)")
        return
    torch_device = device_from_option(device)
    method = method_from_state(state, torch_device)
    features, readable = gallery_index.encode_gallery(method, gallery, tuple(config["image_size"]), torch_device,
                                                      batch_size or int(config["eval_batch_size"]), workers)
    path = gallery_index.write_index(target, gallery, features, readable, options, inputs)
    skipped = readable.count(False)
    gallery_index.log_unreadable([p for p, ok in zip(gallery.paths, readable) if not ok], gallery.root)
    shapes = ", ".join(f"{name} {list(value.shape[1:])}" for name, value in features.items())
    click.echo(f"{path}: {len(readable) - skipped:,} images of {gallery.root} ({shapes}); {skipped:,} unreadable skipped")
