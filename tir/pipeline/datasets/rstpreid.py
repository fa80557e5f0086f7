"""RSTPReid: ``data_captions.json`` with the image path under ``img_path``, images flat in ``imgs/``."""

from __future__ import annotations

from tir.pipeline import datasets

SPEC = datasets.DatasetSpec(
    name="RSTPReid",
    annotation_files=("data_captions.json",),
    image_key="img_path",
    splits=("train", "val", "test"),
    fallback_split="val",
    split_rule="anything not train or test is val, as in the reference loaders",
    published={
        "train": (3_701, 18_505, 37_010),
        "val": (200, 1_000, 2_000),
        "test": (200, 1_000, 2_000),
    },
)
