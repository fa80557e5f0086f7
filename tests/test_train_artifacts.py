"""The trainer consumes the pipeline's artifacts: mask plans (tied to the tokenizer) and noise files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from train_support import make_dataset

from tir.cli import cli
from tir.errors import UserError
from tir.knowledge.noise import load_noise
from tir.training.data import load_train_data
from tir.training.model import get_tokenizer

torch.set_num_threads(1)
LENGTH = 24


def run(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train-artifacts")
    root, folder = tmp / "manifests", tmp / "manifests" / "CUHK-PEDES"
    run("synth", "CUHK-PEDES", "--out", str(tmp / "raw"), "--ids", "16", "--images-per-id", "2", "--jobs", "1")
    run("prepare", "CUHK-PEDES", "--root", str(tmp / "raw"), "--out", str(folder), "--jobs", "1")
    for args in (["parse-graphs", "CUHK-PEDES"], ["plan-masks", "CUHK-PEDES", "--context-length", str(LENGTH)],
                 ["make-noise", "CUHK-PEDES", "--rate", "0.5", "--seed", "1", "--to-npy", str(folder / "noise.npy")]):
        run(*args, "--manifests", str(root))
    return folder


def _load(folder, **kwargs):
    defaults = dict(tokenizer=get_tokenizer("tir-micro"), image_size=(64, 32), text_length=LENGTH, seed=1)
    return load_train_data(folder, **{**defaults, **kwargs})


def test_plans_give_text_and_masking_labels(manifests):
    data = _load(manifests, use_plans=True)
    item = data.train[0]
    assert {"word_ids", "level", "element"} <= set(item)
    plain = _load(manifests, use_plans=False).train[0]
    assert torch.equal(item["text"], plain["text"])  # the plan's tokens are the tokenizer's
    assert int(item["level"].max()) >= 1


def test_plans_of_another_context_length_are_refused_or_ignored(manifests):
    with pytest.raises(UserError, match=f"--context-length {LENGTH + 8}"):
        _load(manifests, use_plans=True, text_length=LENGTH + 8)
    item = _load(manifests, text_length=LENGTH + 8).train[0]  # auto: falls back to the tokenizer
    assert "word_ids" not in item and item["text"].shape == (LENGTH + 8,)


def test_noise_gives_pairs_the_source_caption_and_the_truth(manifests):
    path = manifests / "noise" / "0.5-seed1.parquet"
    clean = _load(manifests, use_plans=False)
    noisy = _load(manifests, use_plans=False, noise=path)
    from_npy = _load(manifests, use_plans=False, noise=manifests / "noise.npy")
    sources, is_noisy = load_noise(path, manifests / "manifest.parquet")
    truth = noisy.noise_truth.numpy()
    assert np.array_equal(truth, is_noisy) and 0.3 < truth.mean() < 0.6
    assert torch.equal(noisy.train.text, from_npy.train.text)
    position = {int(p): i for i, p in enumerate(clean.train.pair_index)}
    for i, pair in enumerate(noisy.train.pair_index.tolist()):
        assert torch.equal(noisy.train.text[i], clean.train.text[position[int(sources[pair])]])
    assert torch.equal(noisy.train.pids, clean.train.pids)  # an image keeps its identity


def test_noise_of_another_manifest_is_refused(manifests, tmp_path):
    other = make_dataset(tmp_path, ids=12)
    shutil.copytree(manifests / "noise", other / "noise")
    with pytest.raises(UserError, match=f"tir make-noise {other.name} --manifests {other.parent} --rate 0.5 --seed 1 --force"):
        _load(other, use_plans=False, noise=other / "noise" / "0.5-seed1.parquet")


def test_rde_on_noisy_pairs_logs_its_detection_every_epoch(manifests, tmp_path):
    noise = manifests / "noise" / "0.5-seed1.parquet"
    run("train", "--manifests", str(manifests), "--model", "tir-micro", "--method", "rde", "--epochs", "2",
        "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path), "--name", "rde",
        "--noise", str(noise), "--set", "image_size=[64, 32]", "--set", f"text_length={LENGTH}",
        "--set", "method_options.tse_dim=32", "--set", "image_cache=false")
    folder = tmp_path / "rde"
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:  # scored against the noise file's truth before each epoch
        assert 0.0 <= record["ccd_precision"] <= 1.0 and 0.0 <= record["ccd_recall"] <= 1.0
        assert 0.0 < record["ccd_trusted"] <= 1.0 and "loss_tse" in record
    assert (folder / "curves.png").stat().st_size > 1000
    assert yaml.safe_load((folder / "config.yaml").read_text())["noise"] == str(noise)


def test_methods_that_never_read_plans_do_not_warn_and_hkgr_stops_before_the_cache(manifests, tmp_path, capsys):
    from train_support import tiny_config

    from tir.training.engine import _load_data

    longer = LENGTH + 8
    _load_data(tiny_config(manifests, tmp_path, method="irra", text_length=longer), None)
    assert "mask plans" not in capsys.readouterr().err
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as error:
        _load_data(tiny_config(manifests, tmp_path, method="hkgr", text_length=longer), cache)
    command = f"tir plan-masks CUHK-PEDES --manifests {manifests.parent} --context-length {longer} --force"
    assert command in str(error.value) and not cache.exists()
