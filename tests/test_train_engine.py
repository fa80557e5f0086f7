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
from tir.training.optim import build_optimizer, lr_factor, parameter_groups

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


REFERENCE_RATES = {"lr": 1e-5, "new_module_lr_factor": 5.0, "bias_lr_factor": 2.0, "weight_decay": 4e-5}


def _rates(method, config) -> dict[str, tuple[float, float]]:
    """(lr, weight decay) of every trained parameter, by name."""
    by_id = {id(p): (group["lr"], group["weight_decay"]) for group in parameter_groups(method, config)
             for p in group["params"]}
    names = {name: by_id[id(p)] for name, p in method.named_parameters() if p.requires_grad}
    assert len(by_id) == len(names)
    return names


def test_irra_parameter_groups_are_irra_solver_build() -> None:
    # IRRA solver/build.py: "cross" -> lr x 5; "bias" -> lr x 2, no decay; "classifier" / "mlm_head" -> lr x 5
    rates = _rates(create_method("irra", build_backbone("tir-micro"), num_classes=2), REFERENCE_RATES)
    weight, bias, new, new_bias = (1e-5, 4e-5), (2e-5, 0.0), (5e-5, 4e-5), (5e-5, 0.0)
    expected = {
        "backbone.clip.visual.class_embedding": weight,
        "backbone.clip.visual.ln_pre.weight": weight,  # LayerNorm weights keep the base lr, with decay
        "backbone.clip.visual.ln_pre.bias": bias,
        "backbone.clip.transformer.resblocks.0.attn.in_proj_weight": weight,
        "backbone.clip.transformer.resblocks.0.attn.in_proj_bias": bias,
        "cross_modal.cross_attn.in_proj_weight": new,  # IRRA's cross_attn
        "cross_modal.cross_attn.in_proj_bias": bias,  # "bias" overrides "cross"
        "cross_modal.transformer.resblocks.0.ln_1.weight": new,  # cross_modal_transformer
        "cross_modal.transformer.resblocks.0.mlp.c_fc.bias": bias,
        "cross_modal.ln_pre_text.weight": weight,  # IRRA's ln_pre_t: no "cross" in its name
        "cross_modal.ln_post.bias": bias,
        "cross_modal.head.0.weight": new,  # mlm_head
        "cross_modal.head.0.bias": new_bias,  # "mlm_head" overrides "bias" for the lr, not the decay
        "classifier.weight": new,
        "classifier.bias": new_bias,
    }
    for name, rate in expected.items():
        assert rates[name] == pytest.approx(rate), name
    backbone = {k: v for k, v in rates.items() if k.startswith("backbone.")}
    assert all(v == pytest.approx(bias if k.endswith("bias") else weight) for k, v in backbone.items())


def test_token_selection_rates_of_hkgr_and_rde() -> None:
    hkgr = _rates(create_method("hkgr", build_backbone("tir-micro"), num_classes=2), REFERENCE_RATES)
    # HKGR: visul_emb_layer / texual_emb_layer at lr x 10, biases too (the rule comes after "bias")
    assert hkgr["image_select.linear.weight"] == pytest.approx((1e-4, 4e-5))
    assert hkgr["text_select.mlp.0.bias"] == pytest.approx((1e-4, 0.0))
    assert hkgr["cross_modal.head.3.weight"] == pytest.approx((5e-5, 4e-5))
    rde = _rates(create_method("rde", build_backbone("tir-micro"), num_classes=2),
                 {**REFERENCE_RATES, "new_module_lr_factor": 100.0})
    # RDE: the token-selection layers at 1e-3, biases included
    selection = {k: v for k, v in rde.items() if "_select." in k}
    assert selection and all(v == pytest.approx((1e-3, 0.0 if k.endswith("bias") else 4e-5))
                             for k, v in selection.items())


@pytest.mark.parametrize(("kind", "eps", "expected"), [("adam", None, 1e-3), ("adamw", None, 1e-8), ("adam", 1e-8, 1e-8)])
def test_adam_eps_follows_the_references_unless_set(kind: str, eps: float | None, expected: float) -> None:
    method = create_method("clip", build_backbone("tir-micro"), num_classes=2)
    config = {**REFERENCE_RATES, "optimizer": kind, "eps": eps, "betas": [0.9, 0.999]}
    optimizer = build_optimizer(method, config)
    assert isinstance(optimizer, torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)
    assert all(group["eps"] == expected for group in optimizer.param_groups)
    assert config_io.DEFAULTS["eps"] is None


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
            paper_batch = 32 if recipe.name == "hkgr_icfg-pedes.yaml" else 64  # HKGR options/run_icfg_peds.sh
            cpu_sized = recipe.name.startswith(("demo", "evidence"))  # demo and synthetic-evidence recipes
            assert config["batch_size"] == paper_batch or cpu_sized


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
