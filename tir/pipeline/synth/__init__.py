"""The embedded synthetic dataset: drawn pedestrians with captions, in any of the three raw formats.

``synthesize("CUHK-PEDES", out, ids=60, images_per_id=4, seed=0)`` writes under ``out``:

- the raw annotation file of the format (``reid_raw.json``, ``ICFG-PEDES.json`` or
  ``data_captions.json``) with the real file's keys, id base, splits and captions per image;
- the images under ``imgs/`` in that dataset's layout (PNG or JPEG, 64x160 by default);
- ``graphs_gt.jsonl``: the ground-truth scene graph of every caption, in raw order;
- ``synth.json``: the options and counts (marks the folder as synthetic, so a re-run may replace it).

Everything is a function of the seed: the same options give byte-identical files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tir.errors import UserError
from tir.pipeline.store import atomic_path, write_bytes_atomic, write_json_atomic
from tir.pipeline.synth.appearance import Identity, Jitter, sample_identities, sample_jitter
from tir.pipeline.synth.captions import Caption, write_captions
from tir.pipeline.synth.draw import DEFAULT_SIZE
from tir.pipeline.synth.formats import ImageNamer, canonical_format
from tir.pipeline.synth.images import draw_all

MARKER = "synth.json"
GRAPHS_FILE = "graphs_gt.jsonl"


@dataclass(frozen=True)
class ImagePlan:
    """One image to draw and its captions."""

    split: str
    raw_id: int
    path: str
    identity: Identity
    jitter: Jitter
    captions: list[Caption]


def plan(format: str, ids: int, images_per_id: int, seed: int) -> list[ImagePlan]:
    """Every image of the dataset, in raw order, with its identity, jitter and captions."""
    fmt = canonical_format(format)
    if images_per_id < 1:
        raise UserError(f"--images-per-id {images_per_id} must be at least 1")
    rng = random.Random(f"tir-synth:{fmt.name}:{seed}")
    identities = sample_identities(ids, rng)
    namer = ImageNamer(fmt, rng)
    images: list[ImagePlan] = []
    raw_id, index = fmt.first_id, 0
    for split, size in fmt.split_sizes(ids).items():
        for _ in range(size):
            identity, choice = identities[index], namer.identity(split, raw_id)
            for k in range(images_per_id):
                captions = write_captions(identity, fmt.caption_count(rng), rng)
                images.append(ImagePlan(split, raw_id, namer.path(choice, raw_id, k), identity, sample_jitter(rng), captions))
            raw_id, index = raw_id + 1, index + 1
    return images


def _prepare_out(out: Path) -> None:
    """Refuse a non-empty folder that tir synth did not make; clear the images of one it did."""
    if out.exists() and not out.is_dir():
        raise UserError("is a file; pass a folder for --out", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UserError(f"is not empty and holds no {MARKER}; pass an empty or new folder to --out", path=out)
        shutil.rmtree(out / "imgs", ignore_errors=True)


def _write_graphs(path: Path, images: list[ImagePlan]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for image in images:
            for index, caption in enumerate(image.captions):
                row = {"split": image.split, "image": image.path, "caption_index": index, "caption": caption.text,
                       "objects": caption.objects, "attributes": caption.attributes, "relations": caption.relations}
                handle.write(json.dumps(row) + "\n")


def synthesize(
    format: str,
    out: str | os.PathLike,
    ids: int = 60,
    images_per_id: int = 4,
    seed: int = 0,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    jobs: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic dataset in ``format``'s raw layout under ``out``; return a summary of counts.

    ``jobs``: processes drawing images (0: all cores when there are more than 500 images, else 1).
    """
    fmt = canonical_format(format)
    started = time.perf_counter()
    out = Path(out)
    images = plan(fmt.name, ids, images_per_id, seed)
    _prepare_out(out)
    out.mkdir(parents=True, exist_ok=True)
    draw_all([(out / "imgs" / image.path, image.identity, image.jitter) for image in images], size, jobs, progress)
    records = [fmt.record(image.split, image.raw_id, image.path, [c.text for c in image.captions]) for image in images]
    write_bytes_atomic(out / fmt.annotation, json.dumps(records).encode())  # one line, like the real files
    _write_graphs(out / GRAPHS_FILE, images)

    counts: dict[str, dict[str, int]] = {}
    for image in images:
        split = counts.setdefault(image.split, {"ids": 0, "images": 0, "captions": 0})
        split["images"] += 1
        split["captions"] += len(image.captions)
    for split, size_ in fmt.split_sizes(ids).items():
        counts[split]["ids"] = size_
    summary = {
        "format": fmt.name,
        "annotation": fmt.annotation,
        "options": {"ids": ids, "images_per_id": images_per_id, "seed": seed, "size": list(size)},
        "splits": counts,
    }
    write_json_atomic(out / MARKER, summary)
    return {**summary, "out": str(out), "seconds": round(time.perf_counter() - started, 3)}
