"""cfack under DistributedDataParallel (2 gloo processes): the six-pair contrast sees the combined batch and
every rank holds the same momentum encoders after its optimiser steps."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train_ddp import _free_port
from train_support import micro_batch

from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone

WORLD = 2


def _method():
    torch.manual_seed(0)
    return create_method("cfack", build_backbone("tir-micro"), num_classes=4, options={"cnn": "none", "fusion_depth": 1})


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        method = _method()
        model = torch.nn.parallel.DistributedDataParallel(method)
        optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
        first = None
        for step in range(2):
            full = micro_batch(8)
            half = {k: v[rank * 4 : (rank + 1) * 4] for k, v in full.items()}
            out = model(half, StepContext(0, step, 1))
            first = out["loss_itc"].detach() if first is None else first
            optimizer.zero_grad()
            sum(v for k, v in out.items() if k.startswith("loss_")).backward()
            optimizer.step()
            method.after_optimizer_step()
        torch.save({"itc": first, "momentum": method.momentum.state_dict()}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes
def test_ranks_hold_the_same_momentum_encoders_and_contrast_the_combined_batch(tmp_path) -> None:
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    for key, value in ranks[0]["momentum"].items():
        assert torch.equal(value, ranks[1]["momentum"][key]), key
    assert int(ranks[0]["momentum"]["n_averaged"]) == 3
    method = _method()
    single = method(micro_batch(8), StepContext(0, 0, 1))["loss_itc"]
    assert torch.allclose(ranks[0]["itc"], single.detach(), atol=1e-5) and torch.allclose(ranks[1]["itc"], single.detach(), atol=1e-5)
