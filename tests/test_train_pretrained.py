"""`--pretrained` also takes a `tir train` checkpoint: its backbone (mask token included) is reused."""

from __future__ import annotations

import pytest
import torch

from tir.errors import UserError
from tir.training.checkpoint import save_checkpoint
from tir.training.methods.base import create_method
from tir.training.model import build_backbone

torch.set_num_threads(1)


def _checkpoint(tmp_path, method: str = "irra"):
    torch.manual_seed(3)
    trained = create_method(method, build_backbone("tir-micro"), num_classes=5)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"format": 1, "config": {"method": method}, "num_classes": 5, "epoch": 1, "step": 1,
                           "model": trained.state_dict(), "best": {}})
    return trained, path


def test_tir_checkpoint_backbone_is_loaded_with_its_mask_token(tmp_path):
    trained, path = _checkpoint(tmp_path)
    torch.manual_seed(4)
    backbone = build_backbone("tir-micro", pretrained=str(path))
    expected = trained.backbone.state_dict()
    loaded = backbone.state_dict()
    assert expected.keys() == loaded.keys()
    assert all(torch.equal(expected[k], loaded[k]) for k in expected)


def test_tir_checkpoint_for_another_model_is_a_user_error(tmp_path):
    _, path = _checkpoint(tmp_path)
    with pytest.raises(UserError, match="does not fit model 'tir-tiny'"):
        build_backbone("tir-tiny", pretrained=str(path))


def test_tir_checkpoint_without_backbone_is_a_user_error(tmp_path):
    path = tmp_path / "empty.pt"
    save_checkpoint(path, {"format": 1, "config": {}, "model": {"head.weight": torch.zeros(2)}})
    with pytest.raises(UserError, match="no CLIP backbone"):
        build_backbone("tir-micro", pretrained=str(path))
