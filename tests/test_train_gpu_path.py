"""The CUDA / NCCL path, checked on CPU: where tensors live, which dtype losses see, how work is sharded.

No GPU is needed. NCCL only reduces tensors on the GPU, while every tensor built without a device
lands on the default device (the CPU); running code under ``torch.device("meta")`` as the default
device makes any such tensor a meta tensor, so code that would hand NCCL a CPU tensor fails here too.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_support import loader_batch, make_dataset, micro_batch, tiny_config

from tir.errors import UserError
from tir.training import config as config_io
from tir.training import engine
from tir.training.checkpoint import read_checkpoint
from tir.training.distributed import DistInfo, barrier, init_from_env
from tir.training.engine import _Loop, _run_epoch, train
from tir.training.losses import infonce, sdm
from tir.training.losses_rde import tal_per_sample
from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone
from tir.training.precision import amp_dtype
from tir.training.samplers import sharded_shuffle

torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch_rank(rank: int, port: int, out: str) -> None:
    from test_rde import batch as rde_batch
    from test_rde import tiny_rde

    from tir.training.methods.base import EpochContext

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        method = create_method("clip", build_backbone("tir-micro"), num_classes=4)
        model = torch.nn.parallel.DistributedDataParallel(method)
        optimizer = torch.optim.SGD(method.parameters(), lr=0.0)  # Adam keeps a step counter built without a device
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        batches = [loader_batch(4) for _ in range(2)]
        calls = []
        reduce = dist.all_reduce
        dist.all_reduce = lambda tensor, *args, **kwargs: calls.append(tensor.shape) or reduce(tensor, *args, **kwargs)
        loop = _Loop(model, method, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), batches, 2,
                     torch.device("cpu"), None, 0.0, 1, DistInfo(rank, 2, rank))
        with torch.device("meta"):  # anything built without the run's device becomes a meta tensor
            means, _ = _run_epoch(loop, 0, 0, 1)
        dist.all_reduce = reduce
        rde, shard = tiny_rde(), [rde_batch(6, 6 * rank)]  # RDE's division: gathers and a sum by position
        with torch.device("meta"):
            division = rde.on_epoch_start(EpochContext(epoch=0, device=torch.device("cpu"), seed=0, num_train=12,
                                                       clean_batches=lambda: iter(shard)))
        torch.save({"means": means, "calls": calls, "division": division}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_the_epochs_collectives_use_the_runs_device(tmp_path) -> None:
    out = str(tmp_path / "epoch")
    mp.spawn(_epoch_rank, args=(_free_port(), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}") for rank in range(2)]
    assert ranks[0]["means"]["loss"] == pytest.approx(ranks[1]["means"]["loss"])  # every rank logs the same mean
    assert ranks[0]["means"]["loss_itc"] > 0
    assert [shape for shape in ranks[0]["calls"] if len(shape) == 1] == [torch.Size([2])]  # loss, loss_itc at once
    assert ranks[0]["division"] == ranks[1]["division"] and "ccd_trusted" in ranks[0]["division"]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("gpu-path"))


def test_a_run_without_fp16_scaling_resumes_with_fp16(manifests, tmp_path, monkeypatch) -> None:
    """Started on CPU (the scaler, disabled, saves ``{}``), resumed where amp picks fp16 and scales."""
    config = tiny_config(manifests, tmp_path, epochs=2, max_steps_per_epoch=1)
    train(config, stop_after=1)
    monkeypatch.setattr(engine, "amp_dtype", lambda spec, device: torch.float16)  # a GPU without bf16
    run = train(config, resume=True)
    state = read_checkpoint(run / "last.pt")
    assert state["epoch"] == 2 and state["scaler"]["scale"] > 0  # the enabled scaler started afresh and was saved


def test_an_explicit_gpu_index_is_refused_under_torchrun() -> None:
    second = DistInfo(rank=1, world_size=2, local_rank=1)
    with pytest.raises(UserError, match="LOCAL_RANK"):
        engine.resolve_device("cuda:0", second)
    assert engine.resolve_device("cpu", second) == torch.device("cpu")


def _features(seed: int, n: int = 16, dim: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(n, dim, generator=generator)
    text = 0.3 * image + torch.randn(n, dim, generator=generator)  # loosely related: losses far from 0
    return image, text, torch.arange(n) // 2


@pytest.mark.parametrize("name", ["infonce", "sdm", "tal"])
def test_loss_bodies_stay_float32_inside_bf16_autocast(name) -> None:
    """Autocast casts a matmul of float32 inputs to bf16; before, that moved these losses by 3e-3 to 2e-2."""
    image, text, pids = _features(0)
    loss = {
        "infonce": lambda: infonce(image, text, 50.0),
        "sdm": lambda: sdm(image, text, pids, 50.0),
        "tal": lambda: tal_per_sample(image, text, pids),
    }[name]
    reference = loss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss()
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, reference, rtol=1e-5, atol=1e-6)


def test_amp_auto_takes_bf16_only_where_the_gpu_computes_it_natively(monkeypatch) -> None:
    # a V100 / T4: bf16 "supported" only through emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    cuda = torch.device("cuda")
    assert amp_dtype("auto", cuda) == torch.float16
    assert amp_dtype("bf16", cuda) == torch.bfloat16  # asked for explicitly
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert amp_dtype("auto", cuda) == torch.bfloat16
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("off", cuda) is None
    with pytest.raises(UserError, match="amp"):
        amp_dtype("half", cuda)


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_the_amp_setting_reaches_rdes_division_pass_and_evaluation(amp) -> None:
    from test_rde import batch, tiny_rde

    from tir.training.evaluation import EvalData, evaluate
    from tir.training.methods.base import EpochContext

    method = tiny_rde()
    encode_image, seen = method.backbone.encode_image, []

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return encode_image(*args, **kwargs)

    method.backbone.encode_image = spy
    items = batch(6, 0)
    method.on_epoch_start(EpochContext(epoch=0, device=torch.device("cpu"), seed=0, num_train=6,
                                       clean_batches=lambda: iter([items]), amp=amp))
    pids = items["pids"].numpy()
    data = EvalData(
        gallery=pd.DataFrame({"image_index": range(6), "image_path": [str(i) for i in range(6)], "pid": pids}),
        queries=pd.DataFrame({"pair_index": range(6), "pid": pids, "image_index": range(6), "caption": [""] * 6}),
        gallery_batches=lambda: [items["images"]],
        query_batches=lambda: [items["text"]],
    )
    evaluate(method, data, torch.device("cpu"), quiet=True, amp=amp)
    assert seen == [amp, amp]  # the division pass, then the gallery


def _late_rank(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    init_from_env("cpu", timedelta(seconds=3))
    done = Path(folder) / "rank0-done"
    try:
        if rank == 0:
            try:
                barrier()  # rank 1 is still "writing a checkpoint": never arrives
                done.write_text("passed")
            except RuntimeError as error:
                done.write_text(f"{type(error).__name__}: {error}")
        else:
            while not done.exists():  # stay connected, so that rank 0 times out rather than losing its peer
                time.sleep(0.2)
    finally:
        dist.destroy_process_group()


def test_ranks_wait_for_each_other_as_long_as_the_configured_timeout(tmp_path) -> None:
    mp.spawn(_late_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert "timed out" in (tmp_path / "rank0-done").read_text().lower()
    assert config_io.DEFAULTS["dist_timeout_minutes"] >= 30  # checkpoints of 1-2 GB and the image cache fit


def test_the_division_pass_is_sharded_evenly_and_alone_keeps_its_order() -> None:
    from torch.utils.data import DataLoader

    shards = [sharded_shuffle(11, seed=5, rank=rank, world_size=2) for rank in range(2)]
    assert [len(shard) for shard in shards] == [6, 6]  # each rank scores half (one pair twice, to keep batches equal)
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    alone = [int(i) for i in DataLoader(range(11), shuffle=True, generator=torch.Generator().manual_seed(5))]
    assert sharded_shuffle(11, seed=5) == alone  # single-process runs divide exactly as before sharding


def test_a_training_step_does_not_wait_for_the_device(monkeypatch) -> None:
    """Reading a tensor on the host (``float``, ``bool``, ``.item()``, ...) waits for the GPU: allowed once per
    ``log_every`` steps and once at the epoch's end, never per step."""
    torch.manual_seed(0)
    method = create_method("clip", build_backbone("tir-micro"), num_classes=4)
    optimizer = torch.optim.SGD(method.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [loader_batch(4) for _ in range(6)]
    loop = _Loop(method, method, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), batches, 6,
                 torch.device("cpu"), None, 0.0, 1, DistInfo(), log_every=3)
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _f=original, _n=name, **k: reads.append(_n) or _f(self, *a, **k))
    means, step = _run_epoch(loop, 0, 0, 1)
    monkeypatch.undo()
    assert step == 6 and means["loss"] > 0
    assert sorted(reads) == ["__float__", "__float__", "tolist"]  # steps 3 and 6, then the epoch means


def test_gradient_checkpointing_keeps_fewer_activations_and_the_same_gradients() -> None:
    grads, saved = [], []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        method = create_method("clip", build_backbone("tir-micro"), num_classes=4)
        method.backbone.grad_checkpointing = checkpointed
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
            out = method(micro_batch(4), StepContext(0, 0, 1))
        out["loss_itc"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in method.parameters() if p.grad is not None]))
        saved.append(sum(kept))
    assert saved[1] < saved[0] / 2  # the blocks' activations are recomputed in backward, not kept
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
