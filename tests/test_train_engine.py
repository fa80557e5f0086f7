"""The engine: a run's outputs, bit-identical resume, config resolution, the `tir train` command."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from train_support import make_dataset, tiny_config

from tir.cli import cli
from tir.errors import UserError
from tir.training import config as config_io
from tir.training.checkpoint import load_method, read_checkpoint
from tir.training.engine import train
from tir.training.methods.base import create_method
from tir.training.model import build_backbone
from tir.training.optim import lr_factor, parameter_groups

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("train-engine"))


def test_run_writes_checkpoints_metrics_and_curves(manifests, tmp_path) -> None:
    run = train(tiny_config(manifests, tmp_path, method="irra", max_steps_per_epoch=3))
    assert {"config.yaml", "last.pt", "best.pt", "metrics.jsonl", "curves.png"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all("val_R1" in r and "loss_mlm" in r for r in records)
    best = read_checkpoint(run)
    assert best["best"]["epoch"] == max(records, key=lambda r: r["val_R1"])["epoch"]
    method, config, _ = load_method(run)
    assert config["method"] == "irra" and not method.training


def test_resume_ends_bit_identical_to_an_uninterrupted_run(manifests, tmp_path) -> None:
    settings = dict(method="irra", epochs=3, max_steps_per_epoch=2, img_aug=True)
    whole = train(tiny_config(manifests, tmp_path / "a", **settings))
    cut = tiny_config(manifests, tmp_path / "b", **settings)
    train(cut, stop_after=1)
    resumed = train(cut, resume=True)
    a, b = read_checkpoint(whole / "last.pt"), read_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    lines = lambda run: [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(whole) == lines(resumed)


def test_a_second_run_with_the_same_name_needs_resume(manifests, tmp_path) -> None:
    config = tiny_config(manifests, tmp_path, epochs=1, max_steps_per_epoch=1)
    train(config)
    with pytest.raises(UserError, match="--resume"):
        train(config)


def test_config_layers_and_overrides(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: irra\nlr: 1.0e-5\nmethod_options: {cmt_depth: 2}\n")
    config = config_io.resolve(recipe, ["lr=2e-5", "method_options.irra_mask_leak=true", "image_size=[256, 96]"],
                               {"epochs": 3, "batch_size": None})
    assert config["lr"] == 2e-5 and config["epochs"] == 3 and config["batch_size"] == 64
    assert config["method_options"] == {"cmt_depth": 2, "irra_mask_leak": True}
    assert config["image_size"] == [256, 96]
    with pytest.raises(UserError, match="unknown config key"):
        config_io.resolve(recipe, ["learning_rate=1"])
    config_io.save(config, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text()) == config


def test_warmup_then_cosine() -> None:
    assert lr_factor(0, 100, 10, 0.1, 0.0) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, 0.1, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1, 0.0) == pytest.approx(0.0)


def test_parameter_groups_follow_the_reference_learning_rates() -> None:
    method = create_method("rde", build_backbone("tir-micro"), num_classes=2, options={})
    config = {"lr": 1e-5, "new_module_lr_factor": 100.0, "bias_lr_factor": 2.0, "weight_decay": 4e-5}
    groups = parameter_groups(method, config)
    lr_of = {id(p): (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    assert len(lr_of) == sum(1 for p in method.parameters() if p.requires_grad)
    tse = method.image_select
    # RDE: token-selection layers, biases included, at 1e-3; backbone biases at lr x 2, without decay
    assert [lr_of[id(p)][0] for p in tse.parameters()] == pytest.approx([1e-3] * len(list(tse.parameters())))
    assert all(lr_of[id(p)][1] == 0.0 for name, p in tse.named_parameters() if name.endswith("bias"))
    for name, param in method.backbone.named_parameters():
        if not param.requires_grad:  # CLIP's own logit scale is not trained
            assert id(param) not in lr_of
            continue
        lr, decay = lr_of[id(param)]
        if name.endswith(".bias"):
            assert (lr, decay) == (pytest.approx(2e-5), 0.0)
        elif param.ndim >= 2:
            assert (lr, decay) == (pytest.approx(1e-5), 4e-5)


def test_train_command(manifests, tmp_path) -> None:
    result = CliRunner().invoke(cli, [
        "train", "--manifests", str(manifests), "--model", "tir-micro", "--method", "clip", "--epochs", "1",
        "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path), "--name", "cli",
        "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=2",
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "best.pt").exists()
    result = CliRunner().invoke(cli, ["train", "--manifests", str(manifests), "--pretrained", "openai"])
    assert result.exit_code == 2 and "never downloads" in result.output


def test_every_recipe_resolves_to_known_keys_and_methods() -> None:
    from pathlib import Path

    from tir.training.build import check_config

    recipes = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert any(p.name.startswith("irra_") for p in recipes)
    for recipe in recipes:
        config = config_io.resolve(recipe)
        if config["method"] in ("clip", "irra", "hkgr"):
            check_config(config)
            assert config["batch_size"] == 64 or recipe.name.startswith("demo")  # demo recipes: CPU-sized


def test_reference_flaw_flags_reach_the_method_options(manifests, tmp_path) -> None:
    result = CliRunner().invoke(cli, [
        "train", "--manifests", str(manifests), "--model", "tir-micro", "--method", "irra", "--epochs", "1",
        "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path), "--name", "leak",
        "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=1",
        "--irra-mask-leak",
    ])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "leak" / "config.yaml").read_text())
    assert saved["method_options"]["irra_mask_leak"] is True
    assert "rde_eval_mode_train" not in saved["method_options"]
