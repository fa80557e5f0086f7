"""What a training run says about itself: a start-up block before the first epoch and a summary at the end."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tir.training.data import TrainData

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")


def startup_lines(config: Mapping[str, Any], device: torch.device, dtype: torch.dtype | None, method: torch.nn.Module,
                  data: TrainData, run_dir: Path, steps: int, world_size: int) -> list[str]:
    """The run's settings as the engine resolved them, one fact per line."""
    total = sum(p.numel() for p in method.parameters())
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[dtype]
    val = data.manifest[data.manifest["split"] == data.val_split]
    val_source = (f"{config['val_fraction']:.0%} of train identities held out (seed {config['seed']}), no val split"
                  if data.heldout_val else "the manifest's val split")
    noise = config["noise"]
    noisy = int(data.noise_truth.sum()) if data.noise_truth is not None else 0
    weights = f"weights from {config['pretrained']}" if config["pretrained"] else "random initialisation"
    return [
        f"run folder   {run_dir}",
        f"method       {config['method']} on {config['model']} ({total:,} parameters, {trainable:,} trainable), "
        f"{weights}",
        f"device       {device}{f' x {world_size} processes' if world_size > 1 else ''}, {precision}",
        f"train        {len(data.train):,} pairs, {data.num_classes:,} ids; batch {config['batch_size']}, "
        f"{steps:,} steps per epoch, {config['epochs']} epochs",
        f"validation   {val['image_index'].nunique():,} images, {len(val):,} captions, {val['pid'].nunique():,} ids: {val_source}",
        f"mask plans   {'used (mask_plans.parquet)' if data.train.plans is not None else 'not used'}",
        f"noise        {f'{noise}: {noisy:,} of {len(data.train):,} train pairs noisy' if noise else 'none (clean pairs)'}",
    ]


def end_lines(best: Mapping[str, Any], records: list[dict[str, Any]], run_dir: Path) -> list[str]:
    """Which epoch was chosen, its val metrics and the command that scores it on test."""
    if best.get("epoch") is None:
        return [f"finished: no validation ran, so no best.pt; evaluate the last epoch with `tir eval {shlex.quote(str(run_dir / 'last.pt'))}`"]
    record = next((r for r in records if r.get("epoch") == best["epoch"]), {})
    shown = ", ".join(f"{key} {record[f'val_{key}']:.2f}" for key in METRIC_KEYS if f"val_{key}" in record)
    return [
        f"finished: best epoch {best['epoch']} by val {best['metric']} ({shown})",
        f"evaluate it on test: tir eval {shlex.quote(str(run_dir))}",
    ]
