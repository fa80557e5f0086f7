"""cfack end to end: `tir train --method cfack` and `tir eval` with and without re-ranking on the three
synthetic formats, --pretrained-cnn, and a resumed run's momentum encoders equal to an uninterrupted run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from train_support import make_dataset, tiny_config

from tir.cli import cli
from tir.pipeline import store
from tir.training.checkpoint import read_checkpoint
from tir.training.engine import train

torch.set_num_threads(1)

TRAIN = ["--model", "tir-micro", "--method", "cfack", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
         "--workers", "0", "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=2",
         "--set", "method_options.fusion_depth=1", "--set", "eval_batch_size=16"]


def synthetic(root: Path, dataset: str) -> Path:
    runner = CliRunner()
    raw, manifests = root / "raw", root / "manifests"
    result = runner.invoke(cli, ["synth", dataset, "--out", str(raw), "--ids", "14", "--images-per-id", "2", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["prepare", dataset, "--root", str(raw), "--out", str(manifests / dataset), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return manifests


def evaluate(run: Path, out: Path, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["eval", str(run), "--device", "cpu", "--no-plot", "--json", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


@pytest.mark.parametrize("dataset", ["CUHK-PEDES", "ICFG-PEDES", "RSTPReid"])
def test_train_and_eval_with_and_without_reranking(dataset: str, tmp_path: Path) -> None:
    manifests = synthetic(tmp_path, dataset)
    result = CliRunner().invoke(cli, ["train", "--dataset", dataset, "--manifests", str(manifests), *TRAIN,
                                      "--set", "method_options.cnn=mobilenet_v3_small", "--out", str(tmp_path / "runs"),
                                      "--name", "c"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "c"
    reranked = evaluate(run, tmp_path / "reranked.json", "--rerank-k", "5")
    plain = evaluate(run, tmp_path / "plain.json", "--rerank-k", "0")
    assert "metrics_reranked" not in plain and plain["metrics"] == reranked["metrics"]
    assert reranked["rerank_k"] == 5 and set(reranked["metrics_reranked"]) == set(plain["metrics"])
    table = store.read_table(run / "eval-test-reranked.parquet", stage="eval").to_pandas()
    before = store.read_table(run / "eval-test.parquet", stage="eval").to_pandas()
    assert len(table) == reranked["queries"] and 100 * table["ap"].mean() == pytest.approx(reranked["metrics_reranked"]["mAP"])
    moved = before["first_hit_rank"] > 5  # a first hit beyond the top 5 stays where it was
    assert (table.loc[moved, "first_hit_rank"] == before.loc[moved, "first_hit_rank"]).all()


def test_pretrained_cnn_is_loaded_for_training_and_not_needed_to_evaluate(tmp_path: Path) -> None:
    manifests = make_dataset(tmp_path / "data", ids=12)
    torch.manual_seed(4)
    source = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), weights)
    args = ["train", "--manifests", str(manifests), *TRAIN, "--set", "method_options.cnn=resnet18",
            "--set", "epochs=1", "--set", "lr=1e-12", "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(cli, [*args, "--name", "p", "--pretrained-cnn", str(weights)])
    assert result.exit_code == 0, result.output
    state = read_checkpoint(tmp_path / "runs" / "p")["model"]
    # lr 1e-12 (lr must be above 0): the loaded weights, kept to far below their scale
    assert torch.allclose(state["cnn.trunk.conv1.weight"], source.conv1.weight, rtol=0, atol=1e-8)
    weights.unlink()
    assert "metrics_reranked" in evaluate(tmp_path / "runs" / "p", tmp_path / "m.json", "--rerank-k", "3")
    result = CliRunner().invoke(cli, [*args, "--name", "q", "--pretrained-cnn", str(weights)])
    assert result.exit_code == 2 and "resnet18.pt: --pretrained-cnn is not a file" in result.output


def test_resumed_run_has_the_momentum_encoders_of_an_uninterrupted_one(tmp_path: Path) -> None:
    manifests = make_dataset(tmp_path / "data", ids=12)
    settings = dict(method="cfack", epochs=3, max_steps_per_epoch=2, method_options={"cnn": "none", "fusion_depth": 1})
    whole = train(tiny_config(manifests, tmp_path / "a", **settings))
    cut = tiny_config(manifests, tmp_path / "b", **settings)
    train(cut, stop_after=1)
    resumed = train(cut, resume=True)
    a, b = read_checkpoint(whole / "last.pt")["model"], read_checkpoint(resumed / "last.pt")["model"]
    momentum = [key for key in a if key.startswith("momentum.")]
    assert momentum and int(a["momentum.n_averaged"]) == 1 + 3 * 2  # the initial copy, then one per step
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert not torch.equal(a["momentum.module.clip.visual.conv1.weight"], a["backbone.clip.visual.conv1.weight"])
