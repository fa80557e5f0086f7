"""Train data: items from the manifest, deterministic augmentation, image cache, val hold-out, samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_support import make_dataset

from tir.errors import UserError
from tir.training.data import holdout_val, load_train_data, read_manifest
from tir.training.model import get_tokenizer
from tir.training.samplers import EpochSampler, IdentitySampler, shuffle_sampler
from tir.training.transforms import DRAWS, augment_batch, normalise

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
    assert item["images"].shape == (3, 64, 32) and item["images"].dtype == torch.uint8  # normalised on the device
    assert item["draws"].shape == (DRAWS,) and "draws" not in data.train.without_augmentation()[0]
    assert item["text"].shape == (24,) and item["text"][0] == 49406
    assert int(item["index"]) == 0 and int(item["pair_index"]) == 0
    assert data.num_classes == int(data.train.pids.max()) + 1
    assert not data.heldout_val
    assert data.load_image(data.manifest["image_path"].iloc[0]).shape == (3, 64, 32)


def test_augmentation_depends_on_seed_epoch_index_only(manifests) -> None:
    data = _load(manifests, img_aug=True)
    first = data.train[(0, 3)]["draws"]
    assert torch.equal(first, data.train[3]["draws"]) and torch.equal(first, data.train[(0, 3)]["draws"])
    assert not torch.equal(first, data.train[(1, 3)]["draws"])
    assert not torch.equal(first, _load(manifests, img_aug=True, seed=2).train[(0, 3)]["draws"])


def test_workers_kept_across_epochs_draw_each_epochs_augmentation(manifests) -> None:
    from torch.utils.data import DataLoader

    data = _load(manifests, img_aug=True)
    sampler = EpochSampler(shuffle_sampler(data.train, seed=1))
    loader = DataLoader(data.train, batch_size=4, sampler=sampler, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batch = next(iter(loader))
        expected = torch.stack([data.train[(epoch, int(i))]["draws"] for i in batch["index"]])
        assert torch.equal(batch["draws"], expected) and batch["images"].dtype == torch.uint8
        seen.append(batch["draws"])
    assert not torch.equal(seen[0], seen[1])


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


def test_batch_augmentation_on_the_device_flips_crops_and_erases() -> None:
    images = torch.randint(0, 256, (4, 3, 32, 16), dtype=torch.uint8)
    draws = torch.full((4, DRAWS), 0.99)
    draws[:2, 0] = 0.1  # samples 0 and 1 flip
    draws[:, 1:3] = 0.5  # crop at the pad's offset (int(0.5 x 21) = 10): the image itself
    draws[1, 3] = 0.1  # sample 1 erases, at its first try:
    draws[1, 4:8] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # area 0.21 x 512, aspect ~1 -> 10 x 10 at the top left
    plain = augment_batch(images, draws, augment=False)
    assert torch.equal(plain[0], normalise(images[0].flip(-1))) and torch.equal(plain[2], normalise(images[2]))
    augmented = augment_batch(images, draws, augment=True)
    assert torch.equal(augmented[0], plain[0]) and torch.equal(augmented[3], plain[3])
    erased = augmented[1] == 0
    assert erased[:, :10, :10].all() and int(erased.sum()) == 3 * 10 * 10
    shifted = draws.clone()
    shifted[:, 1:3] = 0.0  # crop at (0, 0) of the padded image: 10 rows and columns of padding first
    moved = augment_batch(images, shifted, augment=True)
    assert torch.equal(moved[2, :, 10:, 10:], plain[2, :, :22, :6])
