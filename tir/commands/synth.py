"""`tir synth FORMAT --out DIR`: write the embedded synthetic dataset in a raw dataset format."""

from __future__ import annotations

import click

from tir.errors import UserError


def _size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {value!r} is not WIDTHxHEIGHT; pass for example --size 64x160") from None
    if width < 16 or height < 32:
        raise UserError(f"--size {value} is too small to draw a person; pass at least 16x32")
    return width, height


@click.command()
@click.argument("format", metavar="FORMAT")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write (the dataset root: annotation JSON, imgs/, graphs_gt.jsonl). "
                   "Must be new, empty, or an earlier `tir synth` output (then it is replaced).")
@click.option("--ids", default=60, show_default=True, type=click.IntRange(min=2),
              help="Number of identities (persons), split train/val/test in the dataset's proportions "
                   "with at least a few ids in each held-out split.")
@click.option("--images-per-id", default=4, show_default=True, type=click.IntRange(min=1),
              help="Images drawn per identity; each has the format's number of captions "
                   "(CUHK-PEDES 2, occasionally 1 or 3; ICFG-PEDES 1; RSTPReid 2).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed; the same seed and options give byte-identical files.")
@click.option("--size", "size", default="64x160", show_default=True,
              help="Image size WIDTHxHEIGHT in pixels (pedestrian aspect; small keeps the demo fast).")
@click.option("--jobs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Processes drawing images; 0 uses every core when there are more than 500 images, else 1. "
                   "The output does not depend on it.")
def synth(format: str, out: str, ids: int, images_per_id: int, seed: int, size: str, jobs: int) -> None:
    """Write a synthetic text-to-image re-id dataset in FORMAT's raw layout.

    FORMAT is CUHK-PEDES, ICFG-PEDES or RSTPReid (any case). Images are procedurally drawn
    pedestrians whose identity is recoverable only from what is drawn (clothes, colours, hair,
    bag, hat, glasses); captions describe the same attributes with varied grammar and a few typos,
    and graphs_gt.jsonl holds each caption's ground-truth scene graph. Read the result with
    `tir prepare FORMAT --root DIR`.
    """
    from tir.pipeline.synth import synthesize

    summary = synthesize(format, out, ids, images_per_id, seed, size=_size(size), jobs=jobs)
    click.echo(f"{summary['format']} synthetic dataset in {summary['out']} ({summary['seconds']:.1f} s)")
    click.echo(f"{'split':<6} {'ids':>6} {'images':>8} {'captions':>9}")
    for split, counts in summary["splits"].items():
        click.echo(f"{split:<6} {counts['ids']:>6} {counts['images']:>8} {counts['captions']:>9}")
