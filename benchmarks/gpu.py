"""GPU benchmark: tir's training step against an IRRA-style step, the image loaders, gallery encoding.

One run (`make bench-gpu`, meant for one GPU, at most ~8 minutes with the defaults) measures:

- train-step images/s (forward + backward + optimiser) of every registered method for ViT-B-16 at
  384x128, batch 64 and 128, bf16 and fp16 autocast (fp32 weights, fused Adam, GradScaler for fp16),
  with and without ``torch.compile``;
- the anchor, an IRRA-style step: the same model held in pure fp16 weights, no autocast, unfused Adam
  (as IRRA trains), and the ratio of each tir row to the anchor of the same method and batch;
- DataLoader images/s at the step's image size from tir's uint8 image cache against PIL decoding and
  resizing real JPEG files, with the machine's cores as workers;
- gallery encoding images/s (no gradients, autocast, batch 512).

"end to end" images/s of a step setup is min(step, its loader): tir reads the cache, the anchor decodes
with PIL. Rows that would pass ``--budget-s`` are listed as skipped, not guessed. Writes ``--out``
(JSON) and a Markdown table beside it (.md), and prints the table.

    python benchmarks/gpu.py [--out bench-gpu.json] [--budget-s 450]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tir.pipeline.store import atomic_path
from tir.training import methods as _registered  # noqa: F401  (registers every method)
from tir.training.image_cache import ImageStore, build_cache
from tir.training.methods.base import METHODS, StepContext, create_method
from tir.training.model import build_backbone
from tir.training.random_batch import random_batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(run: Callable[[int], None], items: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(items per second over ``steps`` timed calls, seconds the ``warmup`` calls took)."""
    began = time.perf_counter()
    for i in range(warmup):
        run(i)
    sync(device)
    warm = time.perf_counter() - began
    began = time.perf_counter()
    for i in range(steps):
        run(warmup + i)
    sync(device)
    return items * steps / (time.perf_counter() - began), warm


def step_rate(name: str, model: str, size: tuple[int, int], batch: int, length: int, device: torch.device,
              precision: str, compiled: bool, steps: int, warmup: int) -> tuple[float, float]:
    """Train-step images/s of one setup; ``precision`` is bf16 / fp16 (tir) or irra (pure fp16 weights)."""
    torch.manual_seed(0)
    method = create_method(name, build_backbone(model, image_size=size), num_classes=batch // 2).to(device)
    data = {k: v.to(device) for k, v in random_batch(batch, size, length).items()}
    if precision == "irra":
        method = method.half()
        data["images"] = data["images"].half()
        optimizer = torch.optim.Adam(method.parameters(), lr=1e-5, foreach=False)
        autocast: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        optimizer = torch.optim.Adam(method.parameters(), lr=1e-5, fused=device.type == "cuda")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        autocast = torch.autocast(device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward = torch.compile(method) if compiled else method

    def step(i: int) -> None:
        with autocast:
            out = forward(data, StepContext(0, i, 1))
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return rate(step, batch, steps, warmup, device)


def gallery_rate(model: str, size: tuple[int, int], batch: int, device: torch.device, steps: int) -> float:
    """Images/s of test-time image encoding (no gradients, bf16 autocast on CUDA)."""
    method = create_method("clip", build_backbone(model, image_size=size), num_classes=2).to(device).eval()
    images = torch.randn(batch, 3, *size, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def encode(_: int) -> None:
        with torch.no_grad(), autocast:
            method.encode_image(images)

    return rate(encode, batch, steps, 1, device)[0]


class _PilImages(Dataset):
    """IRRA's loader: every image decoded from its file with PIL and resized, per item."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.store.load(index)


def loader_rates(size: tuple[int, int], count: int, workers: int, batch: int) -> dict[str, float]:
    """DataLoader images/s from real JPEG files (PIL) and from tir's uint8 cache, at ``size``."""
    height, width = size
    with tempfile.TemporaryDirectory(prefix="tir-bench-gpu-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        paths = [f"img{k:05d}.jpg" for k in range(count)]
        for path in paths[:64]:  # 64 distinct real JPEGs at a raw camera-crop size
            pixels = rng.integers(0, 256, (height + 13, width + 7, 3), dtype=np.uint8)
            with atomic_path(root / path) as target:
                Image.fromarray(pixels).save(target, format="JPEG", quality=90)
        for k, path in enumerate(paths[64:], start=64):
            os.link(root / paths[k % 64], root / path)
        cache = build_cache(root, paths, size, root / "cache", workers=workers)
        rates = {}
        for label, store in (("pil", ImageStore(root, paths, size)), ("cache", ImageStore(root, paths, size, cache))):
            loader = DataLoader(_PilImages(store), batch_size=batch, num_workers=workers, shuffle=True,
                                persistent_workers=False, generator=torch.Generator().manual_seed(0))
            began = time.perf_counter()
            seen = sum(len(images) for images in loader)
            rates[label] = seen / (time.perf_counter() - began)
        return rates


def table(result: dict) -> str:
    lines = [f"# {result['device']} | torch {result['torch']} | {result['model']} at {result['size']} | "
             f"{result['cpus']} CPU cores",
             "",
             "| method | batch | precision | compile | step images/s | x IRRA-style | end to end images/s | x IRRA-style |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["steps"]:
        if row.get("skipped"):
            lines.append(f"| {row['method']} | {row['batch']} | {row['precision']} | {row['compile']} | skipped ({row['skipped']}) | | | |")
            continue
        ratio = f"{row['x_anchor']:.2f}" if row.get("x_anchor") is not None else "anchor"
        e2e = f"{row['x_anchor_end_to_end']:.2f}" if row.get("x_anchor_end_to_end") is not None else "anchor"
        lines.append(f"| {row['method']} | {row['batch']} | {row['precision']} | {row['compile']} | "
                     f"{row['images_per_s']:,.1f} | {ratio} | {row['end_to_end']:,.1f} | {e2e} |")
    loaders = result["loaders"]
    lines += ["", f"DataLoader at {result['size']}, {loaders['workers']} workers: PIL decoding {loaders['pil']:,.0f} images/s, "
              f"uint8 cache {loaders['cache']:,.0f} images/s ({loaders['cache'] / loaders['pil']:.1f}x)",
              f"Gallery encoding (batch {result['gallery_batch']}): {result['gallery_images_per_s']:,.1f} images/s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-gpu.json"), help="JSON result (a .md table is written beside it)")
    parser.add_argument("--model", default="ViT-B-16", help="open_clip config name (tir-tiny for a CPU smoke run)")
    parser.add_argument("--size", default="384x128", help="image size HxW")
    parser.add_argument("--batches", default="64,128", help="comma-separated train batch sizes")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)), help="comma-separated registered methods")
    parser.add_argument("--precisions", default="bf16,fp16", help="tir autocast dtypes to measure")
    parser.add_argument("--compile", default="off,on", help="torch.compile settings to measure: off, on or both")
    parser.add_argument("--text-length", type=int, default=77, help="caption tokens per training pair")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setup")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens there)")
    parser.add_argument("--loader-images", type=int, default=2048, help="images read by each DataLoader run")
    parser.add_argument("--gallery-batch", type=int, default=512, help="images per batch when timing gallery encoding")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers (default: every core)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip the step setups that would start after this")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    size = tuple(int(v) for v in args.size.lower().split("x"))
    workers = args.workers
    loaders = {**loader_rates(size, args.loader_images, workers, 64), "workers": workers}
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.machine()})",
              "torch": torch.__version__, "model": args.model, "size": args.size, "cpus": workers, "loaders": loaders,
              "gallery_batch": args.gallery_batch,
              "gallery_images_per_s": gallery_rate(args.model, size, args.gallery_batch, device, args.steps), "steps": []}
    compiles = [c == "on" for c in args.compile.split(",")]
    setups = [(m, b, "irra", False) for m in args.methods.split(",") for b in map(int, args.batches.split(","))]
    setups += [(m, b, p, c) for c in compiles for m in args.methods.split(",") for b in map(int, args.batches.split(","))
               for p in args.precisions.split(",")]
    anchors: dict[tuple[str, int], float] = {}
    for method, batch, precision, compiled in setups:
        row = {"method": method, "batch": batch, "precision": "fp16 weights (IRRA-style)" if precision == "irra" else precision,
               "compile": "on" if compiled else "off"}
        if time.perf_counter() - started > args.budget_s:
            result["steps"].append({**row, "skipped": "time budget"})
            continue
        try:
            images_per_s, warm = step_rate(method, args.model, size, batch, args.text_length, device, precision, compiled,
                                           args.steps, args.warmup)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            result["steps"].append({**row, "skipped": "out of GPU memory"})
            continue
        loader = loaders["pil" if precision == "irra" else "cache"]
        row.update(images_per_s=images_per_s, warmup_s=warm, end_to_end=min(images_per_s, loader))
        if precision == "irra":
            anchors[method, batch] = images_per_s
        else:
            anchor = anchors.get((method, batch))
            row["x_anchor"] = images_per_s / anchor if anchor else None
            anchor_e2e = min(anchor, loaders["pil"]) if anchor else None
            row["x_anchor_end_to_end"] = row["end_to_end"] / anchor_e2e if anchor_e2e else None
        result["steps"].append(row)
        print(json.dumps(row), flush=True)
    result["seconds"] = time.perf_counter() - started
    text = table(result)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
