"""Test-time text encoding skips the positions after the batch's last end token; features agree within float32
tolerance (torch.testing.assert_close defaults: 1e-5 absolute, 1.3e-6 relative) and rankings are equal."""

from __future__ import annotations

import pytest
import torch

from tir.training import config as config_io
from tir.training.build import build_method, tokenizer_for
from tir.training.data import make_tokenize
from tir.training.methods.base import METHODS, Method
from tir.training.metrics import top_indices
from tir.training.model import build_backbone

torch.set_num_threads(1)

CAPTIONS = [
    "a woman in a red shirt",
    "a man wearing a green jacket, blue jeans and white shoes, carrying a black backpack on his left shoulder",
    "girl",
    "the person has short brown hair and wears a grey coat over a striped sweater",
]


def backbone_tokenizer():
    return tokenizer_for({"model": "tir-tiny"})


def test_backbone_computes_up_to_the_last_end_token_only() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("tir-tiny").eval()  # two causal text layers
    text = make_tokenize(backbone_tokenizer(), 77)(CAPTIONS)
    with torch.no_grad():
        full = backbone.encode_text(text, attention=True)
        trimmed = backbone.encode_text(text, attention=True, skip_padding=True)
    end = (text == backbone.eot_id).int().argmax(dim=1)
    assert {name: value.shape for name, value in trimmed.items()} == {name: value.shape for name, value in full.items()}
    assert torch.equal(trimmed["valid"], full["valid"])
    torch.testing.assert_close(trimmed["global"], full["global"])
    torch.testing.assert_close(trimmed["attention"], full["attention"])
    assert torch.equal(full["attention"] > 0, torch.arange(77).unsqueeze(0) <= end.unsqueeze(1))  # causal: 0 after the end
    for row, last in enumerate(end.tolist()):
        torch.testing.assert_close(trimmed["tokens"][row, : last + 1], full["tokens"][row, : last + 1])
    assert int(end.max()) < 76 and not trimmed["tokens"][:, int(end.max()) + 1 :].any()  # not computed: zeros
    assert full["tokens"][:, int(end.max()) + 1 :].abs().sum() > 0


def method_of(name: str) -> Method:
    options = {"tse_dim": 32} if name in ("rde", "hkgr") else {"parts": 4} if name == "ssan" else {}
    config = config_io.resolve(options=dict(manifests="unused", model="tir-micro", image_size=[64, 32], method=name,
                                            method_options=options))
    torch.manual_seed(1)
    return build_method(config, num_classes=2, with_pretrained=False).eval()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_ranks_as_with_every_position_computed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    method = method_of(name)
    text = make_tokenize(backbone_tokenizer(), 77)(CAPTIONS)
    images = torch.randn(24, 3, 64, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        gallery = method.encode_image(images)
        trimmed = method.encode_text(text)
        every_position = method.backbone.encode_text
        monkeypatch.setattr(method.backbone, "encode_text",
                            lambda text, attention=False, skip_padding=False: every_position(text, attention))
        full = method.encode_text(text)
    assert trimmed.keys() == full.keys()
    for feature in trimmed.keys() - {"tokens"}:  # cfack's tokens: equal up to each end token, read only there
        torch.testing.assert_close(trimmed[feature], full[feature])
    similarity = method.similarity(trimmed, gallery)
    torch.testing.assert_close(similarity, method.similarity(full, gallery))
    order = top_indices(similarity, 24)
    assert torch.equal(order, top_indices(method.similarity(full, gallery), 24))
    if method.reranks:
        candidates = order[:, :8]
        with torch.no_grad():
            torch.testing.assert_close(method.rerank(trimmed, gallery, candidates), method.rerank(full, gallery, candidates))
