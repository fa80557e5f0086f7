"""The gallery index: a run's image features for a gallery, encoded once, in one Parquet file.

Columns: ``image_path`` (relative to the gallery root, POSIX), ``pid`` (int64, null when unknown) and one
``feature.<name>`` column per image feature the method declares (float32 lists, one row per image; the
shape of a row is in the provenance). Provenance: stage ``index``; options ``method``, ``root`` (the
absolute gallery folder), ``source`` (``dataset:<name>/<split>`` or ``folder``), ``gallery`` (a digest
of every image's path, size and mtime) and ``shapes``; inputs ``checkpoint`` (and ``manifest`` for a
dataset split). An index whose options and inputs are unchanged is fresh and not rebuilt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from tir.errors import UserError
from tir.pipeline import store
from tir.progress import log
from tir.training.evaluation import encode
from tir.training.methods.base import Features, Method
from tir.training.transforms import decode_image, eval_transform, to_chw

STAGE = "index"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
FEATURE_PREFIX = "feature."


@dataclass
class Gallery:
    """Images to index: ``root`` and paths relative to it, with person ids where known (else None)."""

    root: Path
    paths: list[str]
    pids: list[int | None]
    source: str


@dataclass
class GalleryIndex:
    """A loaded index: the gallery rows and the image features (float32 tensors, gallery order)."""

    path: Path
    root: Path
    image_paths: list[str]
    pids: list[int | None]
    features: Features
    provenance: dict[str, Any]

    def __len__(self) -> int:
        return len(self.image_paths)


def folder_gallery(folder: Path) -> Gallery:
    """Every jpg/jpeg/png/webp file under ``folder`` (recursively, sorted), person ids unknown."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise UserError("not a folder of images; pass --images DIR", path=folder)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images under this folder", path=folder)
    return Gallery(root, paths, [None] * len(paths), "folder")


def split_gallery(manifest: Path, split: str, image_root: Path) -> Gallery:
    """The unique images of ``split`` of a manifest (eval's gallery, in image_index order)."""
    from tir.training.data import read_manifest
    from tir.training.evaluation import split_tables

    frame = read_manifest(manifest)
    if not (frame["split"] == split).any():
        raise UserError(f"the manifest has no {split} split; pass --split test", path=manifest)
    gallery, _ = split_tables(frame, split)
    return Gallery(Path(image_root).resolve(), gallery["image_path"].tolist(), [int(p) for p in gallery["pid"]],
                   f"dataset:{manifest.parent.name}/{split}")


def gallery_digest(gallery: Gallery) -> str:
    """SHA-256 (16 hex digits) of every image's path, size and mtime: changes when any image does."""
    digest = hashlib.sha256()
    for path in gallery.paths:
        try:
            stat = (gallery.root / path).stat()
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()[:16]


class _Decoded(Dataset):
    """Test-time image tensors; an unreadable file gives an empty tensor (listed and skipped later)."""

    def __init__(self, gallery: Gallery, size: tuple[int, int]) -> None:
        self.gallery, self.size = gallery, size

    def __len__(self) -> int:
        return len(self.gallery.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            return eval_transform(to_chw(decode_image(self.gallery.root / self.gallery.paths[index], self.size)))
        except Exception:  # noqa: BLE001 - any file that does not decode is listed and skipped
            return torch.empty(0)


def _batches(loader: DataLoader, readable: list[bool]):
    for batch in loader:
        good = [image for image in batch if image.numel()]
        readable.extend(image.numel() > 0 for image in batch)
        if good:
            yield torch.stack(good)


def encode_gallery(method: Method, gallery: Gallery, size: tuple[int, int], device: torch.device,
                   batch_size: int, workers: int) -> tuple[Features, list[bool]]:
    """Image features of the readable images (decoded by ``workers`` processes) and which were readable."""
    loader = DataLoader(_Decoded(gallery, size), batch_size=batch_size, num_workers=workers, collate_fn=list)
    readable: list[bool] = []
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            features = encode(method.encode_image, _batches(loader, readable), device, len(gallery.paths), "index")
    except ValueError:
        raise UserError("no image of the gallery could be read", path=gallery.root) from None
    finally:
        method.train(was_training)
    return {name: value.cpu() for name, value in features.items()}, readable


def index_options(method_name: str, gallery: Gallery) -> dict[str, Any]:
    """What determines an index besides its inputs (see the module docstring)."""
    return {"method": method_name, "root": str(gallery.root), "source": gallery.source, "gallery": gallery_digest(gallery)}


def write_index(out: Path, gallery: Gallery, features: Features, readable: list[bool], options: dict[str, Any],
                inputs: dict[str, Any]) -> Path:
    """Write the index of the readable images atomically with its provenance."""
    keep = np.flatnonzero(readable)
    columns: dict[str, pa.Array] = {
        "image_path": pa.array([gallery.paths[i] for i in keep], pa.string()),
        "pid": pa.array([gallery.pids[i] for i in keep], pa.int64()),
    }
    shapes = {}
    for name, value in features.items():
        flat = value.float().reshape(value.shape[0], -1).numpy()
        shapes[name] = list(value.shape[1:])
        columns[FEATURE_PREFIX + name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
    unreadable = [gallery.paths[i] for i in np.flatnonzero(~np.asarray(readable))]
    return store.write_table(pa.table(columns), out, stage=STAGE, options={**options, "shapes": shapes},
                             inputs=inputs, extra={"unreadable": unreadable})


def is_fresh_index(out: Path, options: dict[str, Any], inputs: dict[str, Path]) -> bool:
    """True when ``out`` was built with the same options (shapes aside) from unchanged inputs."""
    if not out.exists():
        return False
    recorded = (store.read_provenance(out) or {}).get("options", {})
    with_shapes = {**options, "shapes": recorded.get("shapes")}
    return store.is_fresh(out, stage=STAGE, options=with_shapes, inputs=inputs)


def load_index(path: Path) -> GalleryIndex:
    """Read an index file written by ``tir index``."""
    table = store.read_table(path, stage=STAGE)
    provenance = store.read_provenance(path) or {}
    shapes = provenance.get("options", {}).get("shapes", {})
    features = {}
    for name, shape in shapes.items():
        column = table.column(FEATURE_PREFIX + name).combine_chunks()
        flat = column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        features[name] = torch.from_numpy(flat.reshape(len(table), *shape).copy())
    return GalleryIndex(Path(path), Path(provenance["options"]["root"]), table.column("image_path").to_pylist(),
                        table.column("pid").to_pylist(), features, provenance)


def log_unreadable(unreadable: list[str], root: Path) -> None:
    """Name each skipped image (the first 20) on the log."""
    for path in unreadable[:20]:
        log(f"skipped unreadable image {root / path}")
    if len(unreadable) > 20:
        log(f"... and {len(unreadable) - 20} more unreadable images")
