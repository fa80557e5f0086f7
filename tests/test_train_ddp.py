"""DistributedDataParallel with 2 gloo processes equals one process on the combined batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_support import micro_batch

from tir.training.distributed import all_gather_with_grad
from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone

WORLD = 2


def _method():
    """IRRA's SDM (batch-level, gathered) + ID (per sample); MLM's mean over masked tokens is per rank."""
    torch.manual_seed(0)
    return create_method("irra", build_backbone("tir-micro"), num_classes=4, options={"mlm_weight": 0.0})


def _losses_and_grads(model, method, batch):
    out = model(batch, StepContext(0, 0, 1))
    loss = sum(v for k, v in out.items() if k.startswith("loss_"))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in out.items()}, grads


def _worker(rank: int, port: int, result_path: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        gathered = all_gather_with_grad(torch.full((2, 3), float(rank), requires_grad=True))
        assert gathered[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
        full = micro_batch(8)
        half = {k: v[rank * 4 : (rank + 1) * 4] for k, v in full.items()}
        method = _method()
        model = torch.nn.parallel.DistributedDataParallel(method)
        out, grads = _losses_and_grads(model, method, half)
        if rank == 0:
            torch.save({"out": out, "grads": grads}, result_path)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_on_the_combined_batch(tmp_path) -> None:
    torch.set_num_threads(1)
    result = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(_free_port(), str(result)), nprocs=WORLD, join=True)
    distributed = torch.load(result)
    method = _method()
    out, grads = _losses_and_grads(method, method, micro_batch(8))
    assert torch.allclose(distributed["out"]["loss_sdm"], out["loss_sdm"], atol=1e-5)  # batch-level: whole batch
    assert set(distributed["grads"]) == set(grads)
    flat = lambda g: torch.cat([g[name].flatten() for name in sorted(grads)])  # noqa: E731
    assert (flat(distributed["grads"]) - flat(grads)).norm() <= 1e-4 * flat(grads).norm()
