"""Settings mean what they say: the resolved config is validated in one place, and --resume refuses
changed options but lets a larger --epochs extend a finished run."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner
from train_support import make_dataset

from tir.cli import cli
from tir.errors import UserError
from tir.pipeline import store
from tir.training import config as config_io

torch.set_num_threads(1)


@pytest.mark.parametrize("override, fragment", [
    ("epochs=abc", "epochs='abc' is not an integer"),
    ("epochs=0", "epochs=0 must be at least 1"),
    ("lr=fast", "lr='fast' is not a number"),
    ("lr=-1e-5", "lr=-1e-05 must be above 0"),
    ("batch_size=1", "batch_size=1 must be at least 2"),
    ("image_size=[64]", "image_size=[64] must be a list of two integers"),
    ("amp=fp8", "amp='fp8' must be one of auto, bf16, fp16, off"),
    ("val_fraction=1.5", "val_fraction=1.5 must be below 1"),
    ("img_aug=maybe", "img_aug='maybe' is not true or false"),
    ("best_metric=loss", "best_metric='loss' must be one of R1"),
    ("eps=0", "eps=0 must be above 0"),
    ("log_every=0", "log_every=0 must be at least 1"),
    ("dist_timeout_minutes=-5", "dist_timeout_minutes=-5 must be above 0"),
])
def test_bad_values_are_refused_with_the_key(override, fragment):
    with pytest.raises(UserError, match="bad config value") as error:
        config_io.resolve(overrides=[override])
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_defaults_and_every_shipped_recipe_validate():
    """The defaults (eps null: the optimiser's reference value) and each recipe in configs/ pass validation."""
    config_io.validate(config_io.resolve())
    for name in config_io.recipe_names():
        config_io.validate(config_io.resolve(config_io.find_recipe(name)))


def test_every_bad_key_is_named_in_one_message(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: -3\nbatch_size: 1\n")
    with pytest.raises(UserError) as error:
        config_io.resolve(recipe, ["lr=fast"])
    message = str(error.value)
    assert "epochs=-3" in message and "batch_size=1" in message and "lr='fast'" in message


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "runs").write_text("a file")
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "is an existing file, not a folder" in result.output
    assert result.output.count("\n") == 1


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("settings"))


def _train(manifests, out, *extra):
    return CliRunner().invoke(cli, [
        "train", "--manifests", str(manifests), "--model", "tir-micro", "--method", "clip",
        "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(out), "--name", "r",
        "--set", "image_size=[64, 32]", "--set", "text_length=24", "--set", "max_steps_per_epoch=2",
        "--set", "warmup_epochs=1", "--set", "image_cache=false", *extra,
    ])


def test_resume_refuses_changed_options_and_extends_with_more_epochs(manifests, tmp_path):
    first = _train(manifests, tmp_path, "--epochs", "1")
    assert first.exit_code == 0, first.output
    for fact in (f"run folder   {tmp_path / 'r'}", "device       cpu, fp32", "train        32 pairs, 8 ids; batch 8, 2 steps per epoch, 1 epochs",
                 "validation   8 images, 16 captions, 4 ids: the manifest's val split", "mask plans   not used",
                 "noise        none (clean pairs)", "finished: best epoch 1 by val R1 (R1 ", f"tir eval {tmp_path / 'r'}"):
        assert fact in first.output, first.output
    changed = _train(manifests, tmp_path, "--epochs", "1", "--resume", "--lr", "3e-4", "--set", "seed=5")
    assert changed.exit_code == 2
    assert "lr: saved 1e-05, given 0.0003" in changed.output and "seed: saved 1, given 5" in changed.output
    finished = _train(manifests, tmp_path, "--resume", "--device", "cpu")
    assert finished.exit_code == 2 and "already trained all its 1 epochs; pass --epochs N" in finished.output
    extended = _train(manifests, tmp_path, "--resume", "--epochs", "2")
    assert extended.exit_code == 0, extended.output
    assert "schedule made for 2 epochs" in extended.output
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert config_io.read_yaml(tmp_path / "r" / "config.yaml")["epochs"] == 2


def test_a_manifest_without_train_pairs_is_one_line(tmp_path):
    frame = pd.DataFrame({"pair_index": [0, 1], "split": ["test", "val"], "pid": [0, 0], "image_index": [0, 0],
                          "image_path": ["a.png", "a.png"], "caption": ["a man", "a man"]})
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    store.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "m" / "manifest.parquet",
                      stage="prepare", options={"root": str(tmp_path / "data")}, inputs={})
    result = CliRunner().invoke(cli, ["train", "--manifests", str(tmp_path / "m"), "--model", "tir-micro",
                                      "--device", "cpu", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "has no train pairs" in result.output and "NaN" not in result.output


def test_recipes_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_io.resolve("hkgr_cuhk-pedes")["method"] == "hkgr"
    assert config_io.resolve("rde_rstpreid_noise0.2.yaml")["method"] == "rde"
    with pytest.raises(UserError, match="name of a shipped recipe: .*irra_cuhk-pedes"):
        config_io.resolve("irra-cuhk")


def test_no_recipe_hard_codes_a_folder_that_only_make_demo_creates():
    for name in config_io.recipe_names():
        recipe = config_io.read_yaml(name)
        assert not any(str(recipe.get(key) or "").startswith("demo/") for key in ("manifests", "out", "noise")), name


def test_curves_mark_the_chosen_epoch_show_the_lr_and_keep_loss_colours():
    from tir.training.curves import curves_figure

    records = [{"epoch": e, "loss": 3.0 - e, "loss_sdm": 2.0 - e / 2, "lr": 1e-4 * e, "val_R1": 10.0 * e} for e in (1, 2, 3)]
    other = [{**r, "loss_mlm": 1.0} for r in records]  # another run with one more loss
    figures = [curves_figure(records, best_epoch=2), curves_figure(other, best_epoch=3)]
    colours = [{line.get_label(): line.get_color() for line in figure.axes[0].lines} for figure in figures]
    assert colours[0]["loss_sdm"] == colours[1]["loss_sdm"] and colours[0]["loss"] == colours[1]["loss"]
    losses, validation, rate = figures[0].axes
    assert [line.get_ydata()[0] for line in rate.lines if line.get_label().startswith("lr")] == [1e-4]
    for axis in (losses, validation, rate):
        assert any(line.get_label() == "best.pt (epoch 2)" and list(line.get_xdata()) == [2, 2] for line in axis.lines)
        figures[0].canvas.draw()
        assert all(float(tick).is_integer() for tick in axis.get_xticks())


def test_resume_on_a_changed_manifest_is_refused(tmp_path):
    from tir.commands.train import _resumed
    from tir.training.checkpoint import data_manifest_fingerprint, save_checkpoint

    manifest = tmp_path / "m" / "manifest.parquet"
    frame = pd.DataFrame({"pair_index": [0], "split": ["train"], "pid": [0], "image_index": [0], "image_path": ["a.png"],
                          "caption": ["a man"]})
    store.write_table(pa.Table.from_pandas(frame, preserve_index=False), manifest, stage="prepare", options={}, inputs={})
    config = config_io.resolve(options={"manifests": str(tmp_path / "m"), "out": str(tmp_path / "runs"), "name": "r", "epochs": 2})
    state = {"config": config, "manifest": data_manifest_fingerprint(config), "num_classes": 1, "epoch": 1, "step": 1,
             "model": {}, "best": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": {}}
    save_checkpoint(tmp_path / "runs" / "r" / "last.pt", state)
    assert _resumed(config, set())["epochs"] == 2
    store.write_table(pa.Table.from_pandas(frame.assign(caption="a woman"), preserve_index=False), manifest,
                      stage="prepare", options={}, inputs={})
    with pytest.raises(UserError, match="changed since this run started"):
        _resumed(config, set())
