"""benchmarks/gpu.py runs end to end (on CPU with the tiny model and tiny sizes here), so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~15 s of CPU, but start-up and three model builds take ~50 s on a loaded 2-core machine
def test_gpu_benchmark_runs_end_to_end_and_writes_json_and_table(tmp_path):
    out = tmp_path / "bench.json"
    args = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(out), "--model", "tir-tiny", "--size", "32x16",
            "--batches", "2", "--methods", "clip", "--precisions", "bf16", "--compile", "off", "--text-length", "8",
            "--steps", "1", "--warmup", "0", "--loader-images", "8", "--gallery-batch", "4", "--workers", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    steps = {(row["method"], row["precision"]): row for row in result["steps"]}
    assert set(steps) == {("clip", "fp16 weights (IRRA-style)"), ("clip", "bf16")}
    tir_row = steps["clip", "bf16"]
    assert tir_row["images_per_s"] > 0 and tir_row["x_anchor"] > 0 and tir_row["end_to_end"] <= tir_row["images_per_s"]
    assert result["loaders"]["pil"] > 0 and result["loaders"]["cache"] > 0 and result["gallery_images_per_s"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| clip | 2 | bf16 | off |" in table and "x IRRA-style" in table and "uint8 cache" in table
