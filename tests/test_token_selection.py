"""Token selection against a re-implementation of RDE's CrossEmbeddingLayer_tse on fixed weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tir.training.heads.token_selection import TokenSelectionEmbedding, select_top_tokens, selection_count

torch.set_num_threads(1)
END = 49407


class ReferenceLayer(nn.Module):
    """RDE model/CrossEmbeddingLayer_tse.py written out: Texual/VisualEmbeddingLayer with its MLP (2 layers,
    a BatchNorm per layer of which only the first is used), per-row pooling loop, l2norm with eps 1e-8."""

    def __init__(self, in_dim: int, out_dim: int, ratio: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.fc = nn.Linear(in_dim, out_dim)
        self.layers = nn.ModuleList([nn.Linear(in_dim, out_dim // 2), nn.Linear(out_dim // 2, out_dim)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(out_dim // 2), nn.BatchNorm1d(out_dim)])

    def embed(self, features: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        features = features / (features.pow(2).sum(-1, keepdim=True).sqrt() + 1e-8)
        b, n, d = features.shape
        x = features.reshape(b * n, d)
        x = self.layers[1](torch.relu(self.bns[0](self.layers[0](x)))).view(b, n, -1)
        x = x + self.fc(features)
        return torch.stack([x[row, :length].max(dim=0).values for row, length in enumerate(lengths)])

    def text(self, features: torch.Tensor, text: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        attention = attention.clone()
        bs, length = text.shape
        mask = (text != 0).long()
        words = (mask.sum(1) - 2).tolist()
        k = int((length - 2) * self.ratio)
        rows, end = torch.arange(bs), text.argmax(dim=-1)
        attention[rows, :, end] = -1
        attention[rows, :, 0] = -1
        attention = attention[rows, end, :] * mask
        top = attention.topk(k, dim=-1)[1]
        chosen = features.gather(1, top.unsqueeze(-1).expand(bs, k, features.shape[2]))
        return self.embed(chosen, [min(w, k) for w in words])

    def image(self, features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        attention = attention.clone()
        bs, n = attention.shape[:2]
        k = int((n - 1) * self.ratio)
        attention[torch.arange(bs), :, 0] = -1
        top = attention[:, 0].topk(k, dim=-1)[1]
        chosen = features.gather(1, top.unsqueeze(-1).expand(bs, k, features.shape[2]))
        return self.embed(chosen, [k] * bs)


def tir_layer(reference: ReferenceLayer, special_tokens: int) -> TokenSelectionEmbedding:
    layer = TokenSelectionEmbedding(reference.fc.in_features, reference.fc.out_features, reference.ratio, special_tokens)
    layer.linear.load_state_dict(reference.fc.state_dict())
    layer.mlp[0].load_state_dict(reference.layers[0].state_dict())
    layer.mlp[1].load_state_dict(reference.bns[0].state_dict())
    layer.mlp[3].load_state_dict(reference.layers[1].state_dict())
    return layer


def caption_inputs(words: list[int], length: int, dim: int, generator: torch.Generator):
    """Token ids, features, the full causal last-layer attention [B, L, L] and tir's valid mask."""
    bs = len(words)
    text = torch.zeros(bs, length, dtype=torch.long)
    features = torch.randn(bs, length, dim, generator=generator)
    for row, n in enumerate(words):
        text[row, 0], text[row, n + 1] = 49406, END
        text[row, 1 : n + 1] = torch.randint(300, 5000, (n,), generator=generator)
        features[row, n + 2 :] = features[row, -1]  # padding tokens alike: RDE leaves their order to topk ties
    causal = torch.ones(length, length).tril().bool()
    attention = torch.rand(bs, length, length, generator=generator).masked_fill(~causal, float("-inf")).softmax(-1)
    positions = torch.arange(length)
    end = (text == END).int().argmax(1, keepdim=True)
    valid = (positions > 0) & (positions < end)
    return text, features, attention, valid


def paired_layers(seed: int, special_tokens: int, train: bool):
    """The reference layer and tir's with the same fixed weights and non-trivial BatchNorm running statistics."""
    torch.manual_seed(seed)
    reference = ReferenceLayer(16, 32)
    layer = tir_layer(reference, special_tokens)
    hidden = reference.bns[0].num_features
    for norm in (reference.bns[0], layer.mlp[1]):
        norm.running_mean.copy_(torch.linspace(-1.0, 1.0, hidden))
        norm.running_var.copy_(torch.linspace(0.5, 2.0, hidden))
    reference.train(train), layer.train(train)
    return reference, layer, torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("train", [True, False])
def test_text_side_matches_the_reference_layer(train: bool) -> None:
    reference, layer, generator = paired_layers(0, special_tokens=2, train=train)
    words = [3, 5, 9, 14, 18]  # k = int(0.3 x 18) = 5: short captions pool their words, and padding meets the BatchNorm
    text, features, attention, valid = caption_inputs(words, 20, 16, generator)
    end = (text == END).int().argmax(1)
    got = layer(features, attention[torch.arange(len(words)), end], valid)
    want = reference.text(features, text, attention)
    assert got.shape == (5, 32)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_image_side_matches_the_reference_layer(train: bool) -> None:
    reference, layer, generator = paired_layers(1, special_tokens=1, train=train)
    features = torch.randn(4, 25, 16, generator=generator)
    attention = torch.rand(4, 25, 25, generator=generator).softmax(-1)
    valid = torch.ones(4, 25, dtype=torch.bool)
    valid[:, 0] = False
    assert torch.allclose(layer(features, attention[:, 0], valid), reference.image(features, attention), atol=1e-5)


def test_k_is_fixed_by_the_context_not_the_caption() -> None:
    assert selection_count(77, 2, 0.3) == 22 and selection_count(24 * 8 + 1, 1, 0.3) == 57
    assert selection_count(3, 2, 0.3) == 1  # never empty
    tokens = torch.arange(8, dtype=torch.float32).view(1, 8, 1).repeat(2, 1, 1)
    scores = torch.tensor([[9.0, 5, 4, 3, 2, 1, 0, 0], [9, 1, 2, 3, 0, 0, 0, 0]])
    valid = torch.tensor([[False] + [True] * 5 + [False] * 2, [False, True, True, True, False, False, False, False]])
    selected, pooled = select_top_tokens(tokens, scores, valid, ratio=0.5, special_tokens=2)  # k = 3
    assert selected[0, :, 0].tolist() == [1, 2, 3] and pooled[0].tolist() == [True] * 3
    # a short caption: its words by score, then padding (last position first), never the start or end token
    selected, pooled = select_top_tokens(tokens, scores, valid, ratio=0.9, special_tokens=2)  # k = 5
    assert selected[1, :, 0].tolist() == [3, 2, 1, 7, 6] and pooled[1].tolist() == [True] * 3 + [False] * 2
