"""A tiny trained-looking run over real images on disk, for the search, serve and compare tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch
from PIL import Image

from tir.pipeline import store
from tir.training import config as config_io
from tir.training.build import build_method
from tir.training.checkpoint import save_checkpoint

CAPTIONS = ("a woman in a {c} shirt and black trousers carrying a bag", "a man wearing a {c} jacket, blue jeans and white shoes")
COLOURS = ("red", "green", "blue", "yellow", "white", "grey")


def make_manifests(root: Path) -> Path:
    """A manifest with 2 train and 3 test identities (2 images each, 2 captions per image) and its images."""
    (root / "data" / "imgs" / "test").mkdir(parents=True)
    (root / "data" / "imgs" / "train").mkdir(parents=True)
    rows = []
    for split, ids in (("train", 2), ("test", 3)):
        for image in range(ids * 2):
            path = f"{split}/{image}.png"
            Image.new("RGB", (32, 64), (40 * image, 80 + 20 * (split == "test"), 200 - 30 * image)).save(root / "data" / "imgs" / path)
            for caption in range(2):
                rows.append(dict(split=split, pid=image // 2, image_index=image, image_path=path,
                                 caption=CAPTIONS[caption].format(c=COLOURS[image])))
    frame = pd.DataFrame(rows)
    frame.insert(0, "pair_index", frame.groupby("split").cumcount())
    manifests = root / "manifests"
    store.write_table(pa.Table.from_pandas(frame, preserve_index=False), manifests / "manifest.parquet",
                      stage="prepare", options={"root": str(root / "data")}, inputs={})
    return manifests


def make_run(manifests: Path, run: Path, method: str = "rde", seed: int = 0, **config_changes) -> Path:
    """A run folder with best.pt of a randomly initialised tir-micro ``method`` (and config.yaml)."""
    options = {"tse_dim": 32} if method in ("rde", "hkgr") else {"parts": 4} if method == "ssan" else {}  # 4 patch rows
    config = config_io.resolve(options=dict(manifests=str(manifests), model="tir-micro", image_size=[64, 32], method=method,
                                            method_options=options, image_cache=False, num_workers=0, seed=seed,
                                            **config_changes))
    torch.manual_seed(seed)
    model = build_method(config, num_classes=2, with_pretrained=False)
    save_checkpoint(run / "best.pt", {"config": config, "num_classes": 2, "epoch": 3, "step": 9, "model": model.state_dict(),
                                      "best": {"metric": "R1", "value": 50.0, "epoch": 3}})
    config_io.save(config, run / "config.yaml")
    return run
