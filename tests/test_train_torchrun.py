"""`torchrun --nproc-per-node 2 -m tir.cli train`: the whole engine under DDP on gloo (CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from train_support import make_dataset

from tir.training.checkpoint import read_checkpoint


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_two_process_run_trains_validates_and_writes_once(tmp_path):
    manifests = make_dataset(tmp_path)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tir.cli", "train",
        "--manifests", str(manifests), "--model", "tir-micro", "--method", "irra", "--epochs", "2",
        "--batch-size", "4", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs"), "--name", "ddp",
        "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=2",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # rank 0 alone writes: one record per epoch
    assert all("val_R1" in r for r in records)
    assert read_checkpoint(run / "last.pt")["epoch"] == 2
    assert completed.stdout.count(str(run)) == 1  # only rank 0 reports the run folder


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_two_process_rde_run_with_a_noise_file_divides_on_sharded_passes(tmp_path):
    from tir.knowledge.noise import make_noise

    manifests = make_dataset(tmp_path)
    noise = make_noise(manifests, "CUHK-PEDES", rate=0.5, seed=1).path
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tir.cli", "train",
        "--manifests", str(manifests), "--model", "tir-micro", "--method", "rde", "--noise", str(noise), "--epochs", "2",
        "--batch-size", "4", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs"), "--name", "rde",
        "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=2",
        "--set", "method_options.tse_dim=32",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "runs" / "rde" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all({"ccd_precision", "ccd_recall", "ccd_trusted", "val_R1"} <= set(r) for r in records)
    assert all(0.0 <= r["ccd_trusted"] < 1.0 for r in records)  # noisy pairs found and dropped
