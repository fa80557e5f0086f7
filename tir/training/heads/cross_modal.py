"""IRRA's cross-modal MLM module: masked text attends to image tokens, then predicts the tokens.

One cross-attention layer (text queries, image keys/values), a ``depth``-layer transformer, and
the head Linear - QuickGELU - LayerNorm - Linear to the vocabulary.
"""

from __future__ import annotations

import abc

import torch
from open_clip.transformer import QuickGELU, Transformer
from torch import nn

from tir.training.lr_rules import LrRule


def vocabulary_head(dim: int, vocab_size: int) -> nn.Sequential:
    """IRRA's MLM head on fused tokens: Linear - QuickGELU - LayerNorm - Linear to the vocabulary."""
    return nn.Sequential(nn.Linear(dim, dim), QuickGELU(), nn.LayerNorm(dim), nn.Linear(dim, vocab_size))


class FusedMLM(nn.Module, abc.ABC):
    """A fusion of text with image tokens (``fuse``) followed by an MLM ``head`` over the vocabulary
    (None: a fusion-only module, whose ``forward`` refuses and says to call ``fuse``)."""

    head: nn.Module | None

    @abc.abstractmethod
    def fuse(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor, text_padding: torch.Tensor | None = None) -> torch.Tensor:
        """Fused text tokens [B, Lt, D]; positions where ``text_padding`` [B, Lt] is True are ignored."""

    def forward(
        self,
        text_tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        rows: torch.Tensor | None = None,
        text_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MLM logits [B, Lt, vocab_size], or [n, vocab_size] for the ``rows`` of the flattened positions."""
        if self.head is None:
            raise TypeError(f"this {type(self).__name__} was built without a vocabulary head (vocab_size=None): call fuse()")
        x = self.fuse(text_tokens, image_tokens, text_padding)
        return self.head(x if rows is None else x.flatten(0, 1)[rows])


class CrossModalMLM(FusedMLM):
    """``forward(text_tokens [B, Lt, D], image_tokens [B, Li, D], rows [n] long | None) -> logits``.

    Logits are [B, Lt, vocab_size], or [n, vocab_size] for the ``rows`` of the flattened [B x Lt]
    positions only (tir.training.mlm.mlm_rows: the vocabulary projection dominates the cost, and MLM
    needs only the masked positions).
    """

    def __init__(self, dim: int, vocab_size: int, depth: int = 4, heads: int | None = None) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_pre_text = nn.LayerNorm(dim)
        self.ln_pre_image = nn.LayerNorm(dim)
        self.transformer = Transformer(width=dim, layers=depth, heads=heads, act_layer=QuickGELU)
        self.ln_post = nn.LayerNorm(dim)
        self.head = vocabulary_head(dim, vocab_size)
        self._init(dim, depth)

    def _init(self, dim: int, depth: int) -> None:
        attn_std, proj_std, fc_std = dim**-0.5, dim**-0.5 * (2 * depth) ** -0.5, (2 * dim) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.cross_attn.in_proj_weight, std=attn_std)
        nn.init.normal_(self.cross_attn.out_proj.weight, std=proj_std)
        nn.init.normal_(self.head[0].weight, std=fc_std)
        nn.init.normal_(self.head[3].weight, std=proj_std)

    def lr_rules(self) -> list[LrRule]:
        """IRRA's rates (solver/build.py): the cross-attention and cross-modal transformer (names with
        ``cross``) at the new-module rate with their biases at the backbone's bias rate; the MLM head at the
        new-module rate, biases included; the three LayerNorms around them at the backbone's rates."""
        return [LrRule(self.cross_attn, biases_as_backbone=True), LrRule(self.transformer, biases_as_backbone=True),
                LrRule(self.head)]

    def fuse(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor, text_padding: torch.Tensor | None = None) -> torch.Tensor:
        """Fused text tokens [B, Lt, D]: cross-attention to the image tokens, then the transformer, whose
        self-attention ignores the ``text_padding`` [B, Lt] bool positions when given (IRRA gives none)."""
        image = self.ln_pre_image(image_tokens)
        x = self.cross_attn(self.ln_pre_text(text_tokens), image, image, need_weights=False)[0]
        mask = None
        if text_padding is not None:
            heads = self.transformer.resblocks[0].attn.num_heads
            keys = torch.zeros(text_padding.shape, dtype=x.dtype, device=x.device).masked_fill(text_padding, float("-inf"))
            mask = keys[:, None, :].expand(-1, text_padding.shape[1], -1).repeat_interleave(heads, dim=0)
        return self.ln_post(self.transformer(x, attn_mask=mask))
