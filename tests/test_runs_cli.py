"""`tir info` on run folders, training logs, run configs and checkpoints; `tir compare` of evaluated runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from search_support import make_manifests, make_run
from tir.cli import cli
from tir.pipeline import store

torch.set_num_threads(1)


def invoke(*args: object):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def write_log(run: Path, r1: list[float]) -> None:
    records = [{"epoch": e + 1, "loss_sdm": 2.0 / (e + 1), "val_R1": v, "val_mAP": v - 5} for e, v in enumerate(r1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    manifests = make_manifests(root)
    a = make_run(manifests, root / "runs" / "a", method="clip", seed=1)
    b = make_run(manifests, root / "runs" / "b", method="clip", seed=2, lr=3e-4)
    write_log(a, [20.0, 40.0, 40.0, 30.0])
    write_log(b, [10.0, 50.0])
    for run in (a, b):
        invoke("eval", run, "--device", "cpu", "--no-plot")
    return a, b


def test_info_run_folder_log_config_checkpoint(runs: tuple[Path, Path]) -> None:
    a, _ = runs
    text = invoke("info", a).output
    assert "method clip" in text and "epochs done: 4 of" in text
    assert "best epoch 2 (val R1): R1 40.00  mAP 35.00" in text  # the first epoch with the best val R@1
    assert "checkpoint best.pt:" in text and "eval-test.parquet: R1" in text
    assert "training log: 4 epochs" in invoke("info", a / "metrics.jsonl").output
    assert "method = \"clip\"" in invoke("info", a / "config.yaml").output
    checkpoint = invoke("info", a / "best.pt").output
    assert "epoch 3" in checkpoint and "parameters:" in checkpoint and "optimizer state: no" in checkpoint


def test_info_bad_run_files_are_one_line(runs: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    for target, message in ((tmp_path / "metrics.jsonl", "line 2 is not JSON"), (tmp_path, "not a run folder")):
        result = CliRunner().invoke(cli, ["info", str(target)])
        assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1


def test_compare_tables_wins_and_plot(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = runs
    text = invoke("compare", a, b, "--plot", tmp_path / "curves.png", "--examples", "2").output
    assert "| lr | " in text and "| seed | 1 | 2 |" in text and "| method |" not in text  # only differences
    assert "| best val epoch | 2 | 2 |" in text
    metric = {run: store.read_provenance(run / "eval-test.parquet")["metrics"]["R1"] for run in (a, b)}
    line = next(line for line in text.splitlines() if line.startswith("Rank-1 queries"))
    only_a = int(line.split(f"only {a.name} ")[1].split(",")[0])
    only_b = int(line.split(f"only {b.name} ")[1].rstrip("."))
    assert only_a - only_b == pytest.approx((metric[a] - metric[b]) * 12 / 100)  # 12 test queries
    assert text.count("- only ") == min(only_a, 2) + min(only_b, 2)
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size[0] > 500


def test_compare_refuses_unevaluated_or_single_runs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = runs
    bare = make_run(Path(store.read_provenance(a / "eval-test.parquet")["inputs"]["manifest"]["path"]).parent, tmp_path / "c")
    result = CliRunner().invoke(cli, ["compare", str(a), str(bare)])
    assert result.exit_code == 2 and f"run `tir eval {bare}`" in result.output
    assert CliRunner().invoke(cli, ["compare", str(a)]).exit_code == 2
