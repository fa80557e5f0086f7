"""ICFG-PEDES: ``ICFG-PEDES.json`` (documented as ``ICFG_PEDES.json``), images under ``imgs/{train,test}``.

There is no val split: anything not train is test, as in the reference loader.
"""

from __future__ import annotations

from tir.pipeline import datasets

SPEC = datasets.DatasetSpec(
    name="ICFG-PEDES",
    annotation_files=("ICFG-PEDES.json", "ICFG_PEDES.json"),
    image_key="file_path",
    splits=("train", "test"),
    fallback_split="test",
    split_rule="ICFG-PEDES has no val: anything not train is test, as in the reference loader",
    published={
        "train": (3_102, 34_674, 34_674),
        "test": (1_000, 19_848, 19_848),
    },
)
