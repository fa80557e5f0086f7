"""Decoded-image store: images by position, from files or from a uint8 memory-mapped cache.

The cache holds a list of images resized to (H, W) as one raw uint8 array [N, H, W, 3] (no header: the
shape is in the name) named by a hash of the image list and size, so it is built once (atomically), reused by every later run and
shared by DataLoader workers through the page cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tir.pipeline.store import atomic_path
from tir.progress import log, progress_bar
from tir.training.transforms import decode_image, to_chw


def cache_file(cache_dir: Path, paths: list[str], size: tuple[int, int]) -> Path:
    """Where the cache of ``paths`` at ``size`` lives inside ``cache_dir``."""
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"images-{size[0]}x{size[1]}-{len(paths)}-{digest}.u8"


class _Decode(Dataset):
    def __init__(self, root: Path, paths: list[str], size: tuple[int, int]) -> None:
        self.root, self.paths, self.size = root, paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return decode_image(self.root / self.paths[index], self.size)


def build_cache(root: Path, paths: list[str], size: tuple[int, int], cache_dir: Path, workers: int = 0) -> Path:
    """Decode every image once into the cache file (skipped when it exists); returns its path."""
    target = cache_file(cache_dir, paths, size)
    if target.exists():
        return target
    height, width = size
    log(f"building the image cache {target} ({len(paths)} images at {height}x{width})")
    loader = DataLoader(_Decode(root, paths, size), batch_size=64, num_workers=workers, collate_fn=np.stack)
    with atomic_path(target) as tmp:
        mm = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), height, width, 3))
        start = 0
        with progress_bar(len(paths), "image cache", unit="img") as bar:
            for block in loader:
                mm[start : start + len(block)] = block
                start += len(block)
                bar.update(len(block))
        mm.flush()
        del mm
    return target


class ImageStore:
    """Images of a fixed list, by position, as uint8 [3, H, W] tensors.

    With ``cache`` (a file from ``build_cache``) images come from the memory map, opened lazily in
    each process; otherwise they are decoded from ``root / path``.
    """

    def __init__(self, root: Path, paths: list[str], size: tuple[int, int], cache: Path | None = None) -> None:
        self.root, self.paths, self.size, self.cache = Path(root), list(paths), tuple(size), cache
        self._map: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def load(self, index: int) -> torch.Tensor:
        if self.cache is None:
            return to_chw(decode_image(self.root / self.paths[index], self.size))  # type: ignore[arg-type]
        if self._map is None:
            height, width = self.size
            self._map = np.memmap(self.cache, dtype=np.uint8, mode="r", shape=(len(self.paths), height, width, 3))
        return to_chw(self._map[index])
