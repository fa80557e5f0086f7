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


JUNK = {  # name -> (writer, fragment of the one-line error)
    "empty_file": (lambda p: p.write_bytes(b""), "the file is empty"),
    "text": (lambda p: p.write_text("these are not weights\n"), "not a readable checkpoint"),
    "empty_dict": (lambda p: torch.save({}, p), "holds an empty mapping"),
    "bare_tensor": (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor, not a state dict"),
    "dict_of_strings": (lambda p: torch.save({"a": "b"}, p), "not names -> tensors"),
    "hostile_pickle": (lambda p: p.write_bytes(b"cos\nsystem\n(S'echo owned'\ntR."), "not a readable checkpoint"),
}


@pytest.mark.parametrize("case", list(JUNK))
def test_junk_pretrained_file_is_one_line_naming_it(tmp_path, case):
    write, fragment = JUNK[case]
    path = tmp_path / "weights.pt"
    write(path)
    with pytest.raises(UserError, match=fragment) as error:
        build_backbone("tir-micro", pretrained=str(path))
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "OpenAI TorchScript" in message
