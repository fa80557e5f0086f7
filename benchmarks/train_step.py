"""Images/s of one training step (forward + backward + Adam) per method, on random batches.

CPU: the small tir-tiny model (image 128x48), batch 32. CUDA (when available): ViT-B-16 at 384x128,
batch 64, bf16 autocast. rde: the step alone; its division pass adds one gradient-free forward over the
train set per epoch. Prints a table; `python benchmarks/train_step.py [--steps N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import torch

from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone
from tir.training.random_batch import random_batch

METHODS = ("clip", "irra", "hkgr", "rde")


def measure(name: str, model: str, size: tuple[int, int], batch: int, length: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    method = create_method(name, build_backbone(model, image_size=size), num_classes=batch // 2).to(device)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-5)
    data = {k: v.to(device) for k, v in random_batch(batch, size, length).items()}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step(i: int) -> None:
        with autocast:
            out = method(data, StepContext(0, i, 1))
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(0)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per method")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    setups = [("cpu", "tir-tiny", (128, 48), 32, 32)]
    if torch.cuda.is_available():
        setups.append(("cuda", "ViT-B-16", (384, 128), 64, 77))
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| device | model | image | batch | method | images/s |")
    print("|---|---|---|---|---|---|")
    for device_name, model, size, batch, length in setups:
        device = torch.device(device_name)
        for name in METHODS:
            rate = measure(name, model, size, batch, length, args.steps, device)
            label = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
            print(f"| {label} | {model} | {size[0]}x{size[1]} | {batch} | {name} | {rate:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
