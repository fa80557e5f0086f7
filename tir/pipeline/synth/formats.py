"""Each dataset's raw annotation format: split rule, image paths, caption counts and JSON records.

Split rule (all formats): identities are numbered from the dataset's first id, train first, then
val, then test, as in the published files. Each held-out split gets ``round(N x published share)``
identities, but at least ``max(1, min(5, N // 4))``, and train keeps the rest (at least one).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from tir.errors import UserError
from tir.pipeline.layout import canonical_dataset

TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@dataclass(frozen=True)
class Format:
    """What differs between the three raw formats."""

    name: str
    annotation: str  # file name under the output folder
    image_key: str
    first_id: int
    splits: tuple[tuple[str, int], ...]  # (split, published identity count)
    captions: tuple[tuple[int, float], ...]  # (captions per image, probability)
    tokens: bool  # records carry processed_tokens

    def split_sizes(self, ids: int) -> dict[str, int]:
        """Identities per split for ``ids`` identities (see the module docstring)."""
        if ids < len(self.splits):
            raise UserError(f"--ids {ids} is too few for {self.name}: it needs one identity per split "
                            f"({', '.join(s for s, _ in self.splits)}); pass --ids {len(self.splits)} or more")
        total = sum(count for _, count in self.splits)
        floor = max(1, min(5, ids // 4))
        sizes = {split: max(floor, round(ids * count / total)) for split, count in self.splits[1:]}
        sizes = {self.splits[0][0]: max(1, ids - sum(sizes.values())), **sizes}
        while sum(sizes.values()) > ids:  # tiny N: shrink the largest held-out split
            largest = max(list(sizes)[1:], key=sizes.__getitem__)
            sizes[largest] -= 1
        return sizes

    def caption_count(self, rng: random.Random) -> int:
        roll, total = rng.random(), 0.0
        for count, probability in self.captions:
            total += probability
            if roll < total:
                return count
        return self.captions[-1][0]

    def record(self, split: str, raw_id: int, path: str, captions: list[str]) -> dict[str, Any]:
        """One raw JSON record with the real file's keys and value types."""
        if self.image_key == "img_path":
            return {"id": raw_id, "img_path": path, "captions": captions, "split": split}
        return {
            "split": split,
            "captions": captions,
            "file_path": path,
            "processed_tokens": [TOKEN.findall(caption.lower()) for caption in captions],
            "id": raw_id,
        }


FORMATS: dict[str, Format] = {
    "CUHK-PEDES": Format("CUHK-PEDES", "reid_raw.json", "file_path", 1,
                         (("train", 11003), ("val", 1000), ("test", 1000)), ((2, 0.96), (1, 0.02), (3, 0.02)), True),
    "ICFG-PEDES": Format("ICFG-PEDES", "ICFG-PEDES.json", "file_path", 0,
                         (("train", 3102), ("test", 1000)), ((1, 1.0),), True),
    "RSTPReid": Format("RSTPReid", "data_captions.json", "img_path", 0,
                       (("train", 3701), ("val", 200), ("test", 200)), ((2, 1.0),), False),
}

CUHK_SOURCES = ("CUHK01", "CUHK03", "Market", "cam_a", "query")


class ImageNamer:
    """Image paths (relative to ``imgs/``) in each dataset's naming style, unique per (id, image)."""

    def __init__(self, fmt: Format, rng: random.Random) -> None:
        self.fmt, self.rng = fmt, rng

    def identity(self, split: str, raw_id: int) -> list[str]:
        """Per-identity choices: CUHK source folder; ICFG storage folder (MSMT17's, not always the split)."""
        if self.fmt.name == "CUHK-PEDES":
            source = self.rng.choice(CUHK_SOURCES)
            return [("train_query" if split == "train" else "test_query") if source == "query" else source]
        if self.fmt.name == "ICFG-PEDES":
            other = "test" if split == "train" else "train"
            return [other if self.rng.random() < 0.15 else split]
        return []

    def path(self, choice: list[str], raw_id: int, k: int) -> str:
        camera = self.rng.randint(1, 15)
        frame = self.rng.randrange(10_000)
        if self.fmt.name == "CUHK-PEDES":
            source = choice[0]
            if source == "CUHK01":
                return f"CUHK01/{raw_id:04d}{k + 1:03d}.png"
            if source == "CUHK03":
                return f"CUHK03/{raw_id}_{camera % 2 + 1}_{k + 1:02d}.png"
            if source == "Market":
                return f"Market/{raw_id:04d}_c{camera % 6 + 1}s1_{frame:06d}_{k:02d}.jpg"
            if source == "cam_a":
                return f"{('cam_a', 'cam_b')[k % 2]}/{raw_id:04d}_{k:02d}.jpg"
            return f"{source}/p{raw_id}_s{raw_id * 10 + k}.jpg"
        if self.fmt.name == "ICFG-PEDES":
            return f"{choice[0]}/{raw_id:04d}/{raw_id:04d}_{k:03d}_{camera:02d}_0303morning_{frame:04d}_0.jpg"
        return f"{raw_id:04d}_c{camera}_{k:04d}.jpg"


def canonical_format(name: str) -> Format:
    """The Format for a dataset name in any case."""
    return FORMATS[canonical_dataset(name)]
