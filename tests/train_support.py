"""Shared helpers of the trainer tests: a small synthetic prepared dataset and a tiny run config."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from tir.cli import cli
from tir.training.random_batch import random_batch


def make_dataset(root: Path, ids: int = 16, images_per_id: int = 2) -> Path:
    """`tir synth` + `tir prepare` into ``root``; returns the folder holding manifest.parquet."""
    runner = CliRunner()
    raw, manifests = root / "raw", root / "manifests"
    result = runner.invoke(cli, ["synth", "CUHK-PEDES", "--out", str(raw), "--ids", str(ids),
                                 "--images-per-id", str(images_per_id), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["prepare", "CUHK-PEDES", "--root", str(raw), "--out", str(manifests), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return manifests


def tiny_config(manifests: Path, out: Path, **changes) -> dict:
    """A resolved config for tir-micro on CPU, two short epochs."""
    from tir.training import config as config_io

    overrides = {
        "manifests": str(manifests), "out": str(out), "model": "tir-micro", "image_size": [64, 32],
        "text_length": 24, "method": "clip", "epochs": 2, "batch_size": 8, "lr": 1e-4,
        "warmup_epochs": 1, "num_workers": 0, "device": "cpu", "eval_batch_size": 32,
    }
    overrides.update(changes)
    return config_io.resolve(options=overrides)


def micro_batch(batch_size: int = 4, length: int = 16) -> dict[str, torch.Tensor]:
    """A random batch for tir-micro whose captions have 4 to 8 tokens."""
    return random_batch(batch_size, (64, 32), length, words=[4 + row % 5 for row in range(batch_size)])


def loader_batch(batch_size: int = 4, length: int = 16) -> dict[str, torch.Tensor]:
    """``micro_batch`` as the train DataLoader gives it: uint8 images and each sample's random draws."""
    from tir.training.transforms import DRAWS

    batch = micro_batch(batch_size, length)
    generator = torch.Generator().manual_seed(batch_size)
    batch["images"] = torch.randint(0, 256, batch["images"].shape, dtype=torch.uint8, generator=generator)
    batch["draws"] = torch.rand(batch_size, DRAWS, generator=generator)
    return batch
