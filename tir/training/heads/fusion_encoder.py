"""CFACK's fusion encoder: cross layers that keep the text stream (X2-VLM's BERT fusion layers).

Each layer adds to the caption's token stream a self-attention over the caption's own tokens, a
cross-attention to the image tokens and a feed-forward block (torch's ``TransformerDecoderLayer``,
pre-LayerNorm). IRRA's module (tir.training.heads.cross_modal) instead replaces the text by its
cross-attention output, so a caption reaches the fused sequence only through attention weights: enough
for IRRA's MLM, not for a matching head that must compare a caption with an image.
"""

from __future__ import annotations

import torch
from torch import nn

from tir.training.heads.cross_modal import FusedMLM, vocabulary_head


class FusionEncoder(FusedMLM):
    """``fuse(text_tokens [B, Lt, D], image_tokens [B, Li, D], text_padding [B, Lt] bool | None) -> [B, Lt, D]``;
    ``forward`` adds the MLM head over the vocabulary (``FusedMLM``) when built with a ``vocab_size``."""

    def __init__(self, dim: int, vocab_size: int | None, depth: int = 4, heads: int | None = None) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.ln_pre_text = nn.LayerNorm(dim)
        self.ln_pre_image = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([
            nn.TransformerDecoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)
        ])
        self.ln_post = nn.LayerNorm(dim)
        self.head = vocabulary_head(dim, vocab_size) if vocab_size is not None else None  # None: fusion only

    def fuse(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor, text_padding: torch.Tensor | None = None) -> torch.Tensor:
        """Fused text tokens; the self-attention ignores the ``text_padding`` positions (True) when given."""
        x, image = self.ln_pre_text(text_tokens), self.ln_pre_image(image_tokens)
        for layer in self.layers:
            x = layer(x, image, tgt_key_padding_mask=text_padding)
        return self.ln_post(x)


def matching_head(dim: int) -> nn.Sequential:
    """X2-VLM's 2-way matching head on a fused token: Linear(D, 2D), LayerNorm, GELU, Linear(2D, 2)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, 2))
