"""CUHK-PEDES: ``reid_raw.json`` (also distributed as ``caption_all.json``), images under ``imgs/``."""

from __future__ import annotations

from tir.pipeline import datasets

SPEC = datasets.DatasetSpec(
    name="CUHK-PEDES",
    annotation_files=("reid_raw.json", "caption_all.json"),
    image_key="file_path",
    splits=("train", "val", "test"),
    fallback_split="val",
    split_rule="anything not train or test is val, as in the reference loaders",
    published={
        "train": (11_003, 34_054, 68_126),
        "val": (1_000, 3_078, 6_158),
        "test": (1_000, 3_074, 6_156),
    },
)
