"""The training loop: ``train(config) -> run folder``.

Per epoch: the method's ``on_epoch_start`` hook, one pass over the train pairs (autocast on CUDA,
gradient clipping, warm-up + cosine per step), validation on ``val`` (never on test; a held-out
slice of train identities when the dataset has none), metrics.jsonl + curves.png, ``last.pt`` and,
when val improves, ``best.pt``. Under torchrun every process trains on its share of each batch,
batch-level losses gather features from all ranks, and rank 0 evaluates and writes.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tir.errors import UserError
from tir.pipeline.layout import dataset_dir
from tir.progress import log, progress_bar
from tir.training import config as config_io
from tir.training.build import build_method, check_config, tokenizer_for
from tir.training.checkpoint import (
    BEST,
    LAST,
    capture_rng,
    data_manifest_fingerprint,
    read_checkpoint,
    restore_rng,
    restore_scaler,
    save_checkpoint,
)
from tir.training.curves import plot_curves, read_metrics, write_metrics
from tir.training.data import TrainData, load_train_data
from tir.training.distributed import DistInfo, barrier, init_from_env, mean_over_ranks
from tir.training.evaluation import eval_data, evaluate
from tir.training.methods.base import METHODS, EpochContext, Method, StepContext
from tir.training.optim import build_optimizer, build_scheduler
from tir.training.precision import allow_tf32, amp_dtype, autocast
from tir.training.resume import extension_note
from tir.training.run_report import end_lines, startup_lines
from tir.training.samplers import EpochSampler, IdentitySampler, sharded_shuffle, shuffle_sampler
from tir.training.transforms import augment_batch, normalise

CONFIG_FILE = "config.yaml"


def dataset_folder(config: Mapping[str, Any]) -> Path:
    """``<manifests>/<dataset>``, or ``manifests`` itself when no dataset is named."""
    if config["dataset"]:
        return dataset_dir(config["dataset"], config["manifests"])
    return Path(config["manifests"])


def run_dir_of(config: Mapping[str, Any]) -> Path:
    name = config["name"] or f"{config['method']}-{config['dataset'] or dataset_folder(config).name}"
    return Path(config["out"]) / name


def resolve_device(spec: str, info: DistInfo) -> torch.device:
    """The run's device; under torchrun every process takes the GPU of its LOCAL_RANK."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if info.distributed and device.index is not None:
            raise UserError(f"--device {spec} under torchrun would put every process on one GPU; pass --device cuda "
                            "(each process takes the GPU of its LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES)")
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA device is visible; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Loop:
    """What one epoch needs."""

    model: torch.nn.Module  # the method, DDP-wrapped when distributed
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loader: DataLoader
    steps: int
    device: torch.device
    dtype: torch.dtype | None
    grad_clip: float
    seed: int
    info: DistInfo
    log_every: int = 50  # steps between host reads of the running sums
    img_aug: bool = False  # pad-and-crop and random erasing on top of the flip


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _train_batch(batch: Mapping[str, torch.Tensor], device: torch.device, augment: bool) -> dict[str, torch.Tensor]:
    """A loader batch (uint8 images and their draws) on ``device``, images augmented and normalised there."""
    batch = _to_device(batch, device)
    batch["images"] = augment_batch(batch["images"], batch.pop("draws"), augment)
    return batch


def _run_epoch(loop: _Loop, epoch: int, step: int, epochs: int) -> tuple[dict[str, float], int]:
    """Train one epoch; returns (mean of each logged value over the epoch and ranks, next step).

    Logged values are summed on the run's device and read back every ``loop.log_every`` steps (the
    progress bar's running loss and the non-finite check), so a step never waits for the GPU.
    """
    loop.model.train()
    sums: dict[str, torch.Tensor] = {}  # on the run's device
    images, began, checked = 0, time.perf_counter(), step
    with progress_bar(loop.steps, f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not loop.info.is_main) as bar:
        for index, batch in enumerate(loop.loader):
            if index >= loop.steps:
                break
            batch = _train_batch(batch, loop.device, loop.img_aug)
            with autocast(loop.device, loop.dtype):
                out = loop.model(batch, StepContext(epoch=epoch, step=step, seed=loop.seed))
            loss = sum(value for key, value in out.items() if key.startswith("loss_"))
            loop.optimizer.zero_grad(set_to_none=True)
            loop.scaler.scale(loss).backward()
            if loop.grad_clip > 0:
                loop.scaler.unscale_(loop.optimizer)
                torch.nn.utils.clip_grad_norm_(loop.model.parameters(), loop.grad_clip)
            loop.scaler.step(loop.optimizer)
            loop.scaler.update()
            loop.method.after_optimizer_step()
            loop.scheduler.step()
            step += 1
            for key, value in {"loss": loss, **out}.items():
                sums[key] = sums[key] + value.detach().double() if key in sums else value.detach().double()
            images += batch["images"].shape[0] * loop.info.world_size
            bar.update(1)
            if (index + 1) % loop.log_every == 0 or index + 1 == loop.steps:
                total = float(sums["loss"])  # the one host read of the window
                if not math.isfinite(total):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} between steps {checked} and {step - 1}")
                checked = step
                rate = images / max(time.perf_counter() - began, 1e-9)
                bar.set_postfix_str(f"loss {total / (index + 1):.3f} {rate:,.0f} img/s")
    count = max(1, min(loop.steps, len(loop.loader)))
    means = {key: total / count for key, total in mean_over_ranks(sums).items()}
    if not all(math.isfinite(value) for value in means.values()):
        raise FloatingPointError(f"non-finite logged value in epoch {epoch + 1}: {means}")
    means["images_per_s"] = images / max(time.perf_counter() - began, 1e-9)
    return means, step


def _clean_batches(data: TrainData, config: Mapping[str, Any], device: torch.device, epoch: int, info: DistInfo):
    """This rank's share of the train set, un-augmented, in training-sized batches shuffled by (seed, epoch).

    Shuffled like training batches on purpose: per-pair losses with in-batch positives (RDE's division)
    would otherwise see each pair beside its identity's other pairs and score noisy pairs as clean.
    Sharded across ranks (every rank gets as many batches, of the same sizes), so the pass takes
    1 / world_size of the time and ranks can gather each batch as training does.
    """

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        order = sharded_shuffle(len(data.train), int(config["seed"]) * 100_003 + epoch, info.rank, info.world_size)
        loader = DataLoader(
            data.train.without_augmentation(),
            batch_size=config["batch_size"],
            sampler=order,
            num_workers=config["num_workers"],
        )
        for batch in loader:
            batch = _to_device(batch, device)
            batch["images"] = normalise(batch["images"])
            yield batch

    return batches


def _train_loader(data: TrainData, config: Mapping[str, Any], info: DistInfo) -> DataLoader:
    if config["sampler"] == "identity":
        if config["batch_size"] % config["instances"]:
            raise UserError("batch_size must be a multiple of instances with the identity sampler")
        pids = data.train.pids.numpy()
        sampler = IdentitySampler(pids, config["instances"], config["seed"], info.rank, info.world_size)
    elif config["sampler"] == "random":
        sampler = shuffle_sampler(data.train, config["seed"], info.rank, info.world_size)
    else:
        raise UserError(f"unknown sampler {config['sampler']!r}; use random or identity")
    loader = DataLoader(
        data.train,
        batch_size=config["batch_size"],
        sampler=EpochSampler(sampler),
        num_workers=config["num_workers"],
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=config["num_workers"] > 0,
    )
    if len(loader) == 0:
        raise UserError(f"batch_size {config['batch_size']} exceeds the {len(data.train)} train pairs per process")
    return loader


def _validate(method: Method, data: TrainData, config: Mapping[str, Any], device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
    val = eval_data(data.manifest, data.val_split, data.load_image, data.tokenize, config["eval_batch_size"], config["num_workers"])
    result = evaluate(method, val, device, quiet=True, amp=dtype)
    return {f"val_{key}": value for key, value in result.metrics.items()}


def _load_data(config: Mapping[str, Any], cache_dir: Path | None) -> TrainData:
    tokenizer = tokenizer_for(config)
    use_plans = {"auto": METHODS[config["method"]].uses_mask_plans, True: True, False: False}.get(config["mask_plans"])
    return load_train_data(
        dataset_folder(config),
        tokenizer=tokenizer,
        image_size=tuple(config["image_size"]),
        text_length=int(config["text_length"]),
        seed=int(config["seed"]),
        img_aug=bool(config["img_aug"]),
        image_root_override=config["image_root"],
        noise=Path(config["noise"]) if config["noise"] else None,
        use_plans=use_plans,
        val_fraction=float(config["val_fraction"]),
        cache_dir=cache_dir,
        cache_workers=int(config["num_workers"]),
    )


def _state(method: Method, config: Mapping[str, Any], data: TrainData, epoch: int, step: int, best: dict) -> dict[str, Any]:
    return {
        "config": dict(config),
        "manifest": data_manifest_fingerprint(config),
        "num_classes": data.num_classes,
        "epoch": epoch,
        "step": step,
        "model": method.state_dict(),
        "best": dict(best),
    }


def train(config: Mapping[str, Any], resume: bool = False, stop_after: int | None = None) -> Path:
    """Train the configured method; returns the run folder (``<out>/<name>``).

    ``resume`` continues from the run folder's ``last.pt`` (same config) so that the run ends exactly
    where an uninterrupted one would. ``stop_after`` ends the call after that many epochs in total,
    as an interruption would (the run can then be resumed).
    """
    config = dict(config)
    check_config(config)
    config["num_workers"] = min(int(config["num_workers"]), os.cpu_count() or 1)
    wants_cuda = str(config["device"]).startswith("cuda") or (config["device"] == "auto" and torch.cuda.is_available())
    info = init_from_env("cuda" if wants_cuda else "cpu", timedelta(minutes=float(config["dist_timeout_minutes"])))
    device = resolve_device(str(config["device"]), info)
    run_dir = run_dir_of(config)
    checkpoint = None
    if resume:
        if not (run_dir / LAST).exists():
            raise UserError("nothing to resume: no last.pt; start the run without --resume", path=run_dir)
        checkpoint = read_checkpoint(run_dir / LAST, resume=True)
        extension = extension_note(int(checkpoint["config"]["epochs"]), int(config["epochs"]), checkpoint["epoch"])
        config = dict(checkpoint["config"], device=config["device"], num_workers=config["num_workers"], epochs=config["epochs"])
    elif (run_dir / LAST).exists():
        raise UserError("a run with this name exists; pass --resume to continue it or choose another --name/--out", path=run_dir)

    dtype = amp_dtype(str(config["amp"]), device)  # the run's setting (a resumed run keeps its own)
    allow_tf32(device, dtype)
    seed_everything(config["seed"])
    cache_dir = dataset_folder(config) / "cache" if config["image_cache"] else None
    if cache_dir is not None and info.distributed and not info.is_main:
        barrier()  # rank 0 builds the image cache first; the others then open it
    data = _load_data(config, cache_dir)
    if cache_dir is not None and info.distributed and info.is_main:
        barrier()
    seed_everything(config["seed"])
    method = build_method(config, data.num_classes).to(device)
    model: torch.nn.Module = method
    if info.distributed:
        model = DistributedDataParallel(
            method,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(config["ddp_find_unused_parameters"]),
        )
    loader = _train_loader(data, config, info)
    steps = len(loader) if config["max_steps_per_epoch"] is None else min(len(loader), int(config["max_steps_per_epoch"]))
    optimizer = build_optimizer(method, config)
    scheduler = build_scheduler(optimizer, config, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    start, step, best = 0, 0, {"metric": config["best_metric"], "value": None, "epoch": None}
    records = []
    if checkpoint is not None:
        method.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_scaler(scaler, checkpoint["scaler"])
        start, step, best = checkpoint["epoch"], checkpoint["step"], checkpoint["best"]
        records = [r for r in read_metrics(run_dir) if r["epoch"] <= start]
        restore_rng(checkpoint["rng"])
        log(f"resuming {run_dir} after epoch {start}")
        if extension and info.is_main:
            log(extension)
            config_io.save(config, run_dir / CONFIG_FILE)
    elif info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_io.save(config, run_dir / CONFIG_FILE)
        if data.heldout_val:
            log(f"no val split: {config['val_fraction']:.0%} of train identities (seed {config['seed']}) held out for validation")

    if info.is_main:
        for line in startup_lines(config, device, dtype, method, data, run_dir, steps, info.world_size):
            log(line)
    loop = _Loop(model, method, optimizer, scheduler, scaler, loader, steps, device, dtype, float(config["grad_clip"] or 0),
                 int(config["seed"]), info, int(config.get("log_every", 50)), bool(config["img_aug"]))
    epochs = int(config["epochs"])
    for epoch in range(start, epochs if stop_after is None else min(epochs, stop_after)):
        loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        context = EpochContext(epoch, device, int(config["seed"]), len(data.train), _clean_batches(data, config, device, epoch, info),
                               data.noise_truth, amp=dtype, train_set=data.train)
        record: dict[str, Any] = {"epoch": epoch + 1, **method.on_epoch_start(context)}
        began = time.perf_counter()
        means, step = _run_epoch(loop, epoch, step, epochs)
        record.update(means, step=step, lr=scheduler.get_last_lr()[0], train_seconds=time.perf_counter() - began)
        if info.is_main:
            if (epoch + 1) % int(config["eval_every"]) == 0 or epoch + 1 == epochs:
                record.update(_validate(method, data, config, device, dtype))
                value = record.get(f"val_{best['metric']}")
                if value is not None and (best["value"] is None or value > best["value"]):
                    best = {"metric": best["metric"], "value": value, "epoch": epoch + 1}
                    save_checkpoint(run_dir / BEST, _state(method, config, data, epoch + 1, step, best))
            records.append(record)
            write_metrics(run_dir, records)
            plot_curves(run_dir, records, best["epoch"])
            state = _state(method, config, data, epoch + 1, step, best)
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), rng=capture_rng())
            save_checkpoint(run_dir / LAST, state)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith(("loss", "val_")))
            log(f"epoch {epoch + 1}/{epochs}: {shown}")
        barrier()
    if info.is_main and (stop_after is None or stop_after >= epochs):
        for line in end_lines(best, records, run_dir):
            log(line)
    return run_dir
