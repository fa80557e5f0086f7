"""Train data: items from the manifest, deterministic augmentation, image cache, val hold-out, samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_support import make_dataset

from tir.errors import UserError
from tir.training.data import holdout_val, load_train_data, read_manifest
from tir.training.model import get_tokenizer
from tir.training.samplers import IdentitySampler
from tir.training.transforms import TrainTransform

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("train-data"))


def _load(manifests, **kwargs):
    tokenizer = get_tokenizer("tir-micro")
    defaults = dict(tokenizer=tokenizer, image_size=(64, 32), text_length=24, seed=1)
    return load_train_data(manifests, **{**defaults, **kwargs})


def test_items_follow_the_method_contract(manifests) -> None:
    data = _load(manifests, img_aug=True)
    item = data.train[0]
    assert item["images"].shape == (3, 64, 32) and item["images"].dtype == torch.float32
    assert item["text"].shape == (24,) and item["text"][0] == 49406
    assert int(item["index"]) == 0 and int(item["pair_index"]) == 0
    assert data.num_classes == int(data.train.pids.max()) + 1
    assert not data.heldout_val
    assert data.load_image(data.manifest["image_path"].iloc[0]).shape == (3, 64, 32)


def test_augmentation_depends_on_seed_epoch_index_only(manifests) -> None:
    data = _load(manifests, img_aug=True)
    first = data.train[3]["images"]
    assert torch.equal(first, data.train[3]["images"])
    data.train.set_epoch(1)
    assert not torch.equal(first, data.train[3]["images"])
    clean = data.train.without_augmentation()[3]["images"]
    assert torch.equal(clean, data.train.without_augmentation()[3]["images"])


def test_image_cache_is_built_once_and_gives_the_same_images(manifests, tmp_path) -> None:
    plain = _load(manifests)
    cached = _load(manifests, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".u8"
    mtime = files[0].stat().st_mtime_ns
    assert torch.equal(plain.train[5]["images"], cached.train[5]["images"])
    _load(manifests, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime


def test_missing_images_and_plans_are_user_errors(manifests, tmp_path) -> None:
    with pytest.raises(UserError, match="image-root"):
        _load(manifests, image_root_override=tmp_path / "nowhere")
    with pytest.raises(UserError, match="plan-masks"):
        _load(manifests, use_plans=True)


def test_holdout_val_is_seeded_and_renumbers_pids(manifests) -> None:
    manifest = read_manifest(manifests / "manifest.parquet")
    manifest = manifest[manifest["split"] != "val"]
    held = holdout_val(manifest, 0.2, seed=4)
    again = holdout_val(manifest, 0.2, seed=4)
    assert held.equals(again)
    for split in ("train", "val"):
        pids = np.unique(held.loc[held["split"] == split, "pid"])
        assert pids.tolist() == list(range(len(pids)))
    n_ids = manifest.loc[manifest["split"] == "train", "pid"].nunique()
    assert held.loc[held["split"] == "val", "pid"].nunique() == round(0.2 * n_ids)


def test_identity_sampler_groups_and_splits_ranks() -> None:
    pids = np.repeat(np.arange(6), [5, 4, 2, 4, 8, 1])
    sampler = IdentitySampler(pids, instances=2, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler)
    for start in range(0, len(order), 2):
        assert pids[order[start]] == pids[order[start + 1]]
    sampler.set_epoch(1)
    assert list(sampler) != order
    ranks = [list(IdentitySampler(pids, 2, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])


def test_train_transform_flips_with_the_generator() -> None:
    image = torch.arange(2 * 3, dtype=torch.uint8).view(1, 2, 3).repeat(3, 1, 1)
    outs = {tuple(TrainTransform()(image, torch.Generator().manual_seed(s))[0, 0].tolist()) for s in range(20)}
    assert len(outs) == 2  # flipped or not
