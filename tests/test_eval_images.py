"""Evaluation images cross the DataLoader's processes as uint8 and are normalised on the run's device."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from tir.training.data import EvalImages
from tir.training.evaluation import eval_data, evaluate
from tir.training.image_cache import ImageStore
from tir.training.methods.base import create_method
from tir.training.model import build_backbone
from tir.training.transforms import eval_transform, normalise

torch.set_num_threads(1)


def _split(tmp_path, images: int = 6) -> pd.DataFrame:
    """Real JPEG files on disk (sizes other than the model's, so they are resized) and their manifest rows."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(images):
        path = f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (70 + i, 30, 3), dtype=np.uint8)).save(tmp_path / path)
        for caption in range(2):
            rows.append({"split": "test", "image_index": i, "image_path": path, "pid": i // 2,
                         "pair_index": 2 * i + caption, "caption": f"a person {i} {caption}"})
    return pd.DataFrame(rows)


def test_eval_images_ship_as_uint8_and_give_the_metrics_of_normalising_in_the_loader(tmp_path) -> None:
    manifest = _split(tmp_path)
    paths = sorted(manifest["image_path"].unique())
    load_image = EvalImages(ImageStore(tmp_path, paths, (64, 32)))
    assert load_image(paths[0]).dtype == torch.uint8  # a quarter of float32's bytes between processes

    def tokenize(captions):
        return torch.tensor([[49406, 400 + len(c) % 7, 500 + int(c.split()[2]), 49407] + [0] * 4 for c in captions])

    torch.manual_seed(0)
    method = create_method("clip", build_backbone("tir-micro"), num_classes=3)
    on_device = evaluate(method, eval_data(manifest, "test", load_image, tokenize, batch_size=4), "cpu", quiet=True)
    in_loader = evaluate(method, eval_data(manifest, "test", lambda p: eval_transform(load_image(p)), tokenize, batch_size=4),
                         "cpu", quiet=True)  # the float32 images the loader shipped before
    assert on_device.metrics == in_loader.metrics
    pd.testing.assert_frame_equal(on_device.per_query, in_loader.per_query)


def test_normalising_a_batch_builds_no_tensor_from_host_values_after_the_first(monkeypatch) -> None:
    images = torch.randint(0, 256, (2, 3, 8, 4), dtype=torch.uint8)
    first = normalise(images)
    built, tensor = [], torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: built.append(a) or tensor(*a, **k))
    assert torch.equal(normalise(images), first) and built == []  # on a GPU each would be a copy that waits
