"""Token selection (HKGR's MGA fine branch, RDE's TSE): pool the most attended tokens.

The tokens a modality's last layer attends to most from its summary token (image CLS, text EOT)
are kept (top ``ratio`` of the eligible ones), embedded by ``Linear(x) + MLP(x)`` and max-pooled.
"""

from __future__ import annotations

import torch
from torch import nn


def select_top_tokens(
    tokens: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the top ``ratio`` of each row's valid tokens by ``scores``.

    ``tokens`` [B, L, D], ``scores`` [B, L], ``valid`` [B, L] bool (positions eligible for
    selection). Each row keeps ``max(1, int(ratio * n_valid))`` tokens. Returns the selected
    tokens [B, K, D] (K the largest count in the batch, highest score first) and a mask [B, K]
    telling which of them are real for that row.
    """
    n_valid = valid.sum(dim=1)
    keep = torch.clamp((n_valid.to(torch.float32) * ratio).floor().long(), min=1)
    width = int(keep.max().item())
    masked = scores.float().masked_fill(~valid, float("-inf"))
    order = masked.topk(width, dim=1).indices  # [B, K]
    selected = tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    real = torch.arange(width, device=tokens.device).unsqueeze(0) < keep.unsqueeze(1)
    return selected, real


class TokenSelectionEmbedding(nn.Module):
    """Embed the top-attended tokens of one modality and max-pool them to one vector.

    ``forward(tokens [B, L, D], scores [B, L], valid [B, L] bool) -> [B, out_dim]`` (not normalised).
    The backbone in tir.training.model gives ``tokens``, ``attention`` (use as ``scores``) and
    ``valid`` for both modalities.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, ratio: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, out_dim // 2),
            nn.ReLU(inplace=True),
            nn.Linear(out_dim // 2, out_dim),
        )

    def forward(self, tokens: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        selected, real = select_top_tokens(tokens, scores, valid, self.ratio)
        embedded = self.linear(selected) + self.mlp(selected)
        embedded = embedded.masked_fill(~real.unsqueeze(-1), float("-inf"))
        return embedded.max(dim=1).values
