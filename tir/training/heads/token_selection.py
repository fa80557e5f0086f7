"""Token selection (HKGR's MGA fine branch, RDE's TSE) as RDE's CrossEmbeddingLayer_tse builds it.

A fixed number k of the positions a modality's last layer attends to most from its summary token (image
CLS, text end token) is kept: ``k = int(ratio x (L - special_tokens))`` for a sequence of L positions (57 of
193 image positions at 384x128, 22 of 77 text positions). The kept token features are L2-normalised,
embedded by ``Linear(x) + MLP(x)`` (MLP: Linear - BatchNorm1d - ReLU - Linear, the BatchNorm over every
kept token of the batch) and max-pooled over the first ``min(n_valid, k)`` of them (a caption shorter
than k words pools its words only; images always pool k patches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def selection_count(length: int, special_tokens: int, ratio: float) -> int:
    """RDE's fixed k: ``int(ratio x (length - special_tokens))``, at least 1."""
    return max(1, int((length - special_tokens) * ratio))


def select_top_tokens(
    tokens: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, ratio: float, special_tokens: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k highest-scoring positions of each row, valid ones first (``k = selection_count(L, special_tokens, ratio)``).

    ``tokens`` [B, L, D], ``scores`` [B, L], ``valid`` [B, L] bool (positions eligible for selection).
    As RDE ranks them, valid positions come first by score, then the other positions, the last one first
    (padding before the end and start tokens, which a k of at most L - 2 never reaches). Returns the
    selected tokens [B, k, D] (highest score first) and a mask [B, k] of the first ``min(n_valid, k)``
    (at least one), the positions that are pooled.
    """
    length = tokens.shape[1]
    k = selection_count(length, special_tokens, ratio)
    positions = torch.arange(length, device=tokens.device)
    scores = scores.float()
    below = scores.amin(dim=1, keepdim=True) - 2.0  # every invalid position ranks below every valid one
    ranked = torch.where(valid, scores, below + positions / length)
    order = ranked.topk(k, dim=1).indices
    selected = tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    pooled = positions[:k].unsqueeze(0) < valid.sum(dim=1, keepdim=True).clamp(min=1)
    return selected, pooled


class TokenSelectionEmbedding(nn.Module):
    """Embed the top-attended tokens of one modality and max-pool them to one vector.

    ``forward(tokens [B, L, D], scores [B, L], valid [B, L] bool) -> [B, out_dim]`` (not normalised).
    The backbone in tir.training.model gives ``tokens``, ``attention`` (use as ``scores``) and
    ``valid`` for both modalities. ``special_tokens``: positions never selected (1 for images: CLS;
    2 for text: start and end token), which sets k.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, ratio: float = 0.3, special_tokens: int = 1) -> None:
        super().__init__()
        self.ratio, self.special_tokens = ratio, special_tokens
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, out_dim // 2),
            nn.BatchNorm1d(out_dim // 2),
            nn.ReLU(inplace=True),
            nn.Linear(out_dim // 2, out_dim),
        )

    def forward(self, tokens: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        selected, pooled = select_top_tokens(tokens, scores, valid, self.ratio, self.special_tokens)
        selected = F.normalize(selected, dim=-1)
        batch, k, dim = selected.shape
        embedded = self.linear(selected) + self.mlp(selected.reshape(batch * k, dim)).view(batch, k, -1)
        embedded = embedded.masked_fill(~pooled.unsqueeze(-1), float("-inf"))
        return embedded.max(dim=1).values
