"""SSAN's part heads: horizontal image stripes, word-part scores, per-part projections, non-local parts.

Stripe rule: a patch grid of R rows is cut into P horizontal stripes of whole rows; stripe s holds
rows ``floor(s R / P)`` to ``floor((s + 1) R / P) - 1``, all columns. Every patch lies in exactly one
stripe and stripe heights differ by at most one row (ViT-B/16 at 384x128: 24 rows, 6 stripes of 4
rows x 8 columns, as SSAN's 12x4 ResNet map pooled to 6x1). A grid with fewer rows than stripes
cannot be cut and is a one-line UserError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tir.errors import UserError

LEAKY_SLOPE = 0.25  # SSAN's LeakyReLU(0.25)


def stripe_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """The [start, stop) patch rows of each of ``parts`` stripes over a grid of ``rows`` rows."""
    if parts < 1:
        raise UserError(f"ssan: method_options.parts is {parts}; set at least 1 (SSAN: 6)")
    if rows < parts:
        raise UserError(
            f"ssan: the image's patch grid has {rows} rows, fewer than the {parts} stripes; "
            f"use a taller image_size (at least {parts} patches high) or set method_options.parts <= {rows}"
        )
    edges = [(s * rows) // parts for s in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def stripe_of_patches(grid: tuple[int, int], parts: int) -> torch.Tensor:
    """Stripe index of every patch [rows x cols], in the ViT's row-major token order."""
    rows, cols = grid
    labels = torch.empty(rows, dtype=torch.long)
    for stripe, (start, stop) in enumerate(stripe_bounds(rows, parts)):
        labels[start:stop] = stripe
    return labels.repeat_interleave(cols)


def pool_stripes(patches: torch.Tensor, grid: tuple[int, int], parts: int) -> torch.Tensor:
    """Max-pool patch features [B, rows*cols, D] (row-major) over each stripe -> [B, parts, D]."""
    rows, cols = grid
    if patches.shape[1] != rows * cols:
        raise ValueError(f"expected {rows * cols} patch tokens for a {rows}x{cols} grid, got {patches.shape[1]}")
    grid_features = patches.reshape(patches.shape[0], rows, cols, patches.shape[-1])
    pooled = [grid_features[:, start:stop].amax(dim=(1, 2)) for start, stop in stripe_bounds(rows, parts)]
    return torch.stack(pooled, dim=1)


class WordPartScores(nn.Module):
    """Per-word sigmoid scores for each part (SSAN's word classifier: a bias-free linear map + sigmoid).

    ``forward(tokens [B, L, D], valid [B, L] bool) -> (parts [B, P, D], scores [B, L, P])``: part p is
    the max over the valid words of ``word x score_p``; positions that are not words (start, end,
    padding) get score 0 and never reach the max. A caption without words gives zero parts.
    """

    def __init__(self, dim: int, parts: int) -> None:
        super().__init__()
        self.classify = nn.Linear(dim, parts, bias=False)

    def scores(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classify(tokens)) * valid.unsqueeze(-1)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(tokens, valid)
        weighted = tokens.unsqueeze(2) * scores.unsqueeze(-1)  # [B, L, P, D]
        weighted = weighted.masked_fill(~valid[:, :, None, None], float("-inf"))
        parts = weighted.amax(dim=1)
        parts = torch.where(valid.any(dim=1)[:, None, None], parts, torch.zeros_like(parts))
        return parts, scores


def kaiming_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A bias-free linear map initialised as SSAN's 1x1 convolutions (Kaiming normal, fan out)."""
    layer = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


class PerPart(nn.Module):
    """One bias-free linear map per part: [B, P, in] -> [B, P, out] (SSAN's per-part 1x1 convolutions)."""

    def __init__(self, parts: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(kaiming_linear(in_dim, out_dim) for _ in range(parts))

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        return torch.stack([layer(parts[:, p]) for p, layer in enumerate(self.maps)], dim=1)


class NonLocalParts(nn.Module):
    """SSAN's non-local part module, shared by both modalities.

    For parts x [B, P, F]: per part, two maps F -> F/2 with LeakyReLU(0.25) give a query and a key;
    both are L2-normalised, attention between parts is their cosine (no temperature) with the
    diagonal at -1e6, softmax over the attending parts; the attended reduced features go up F/2 -> F
    through a per-part map, BatchNorm and LeakyReLU, are added to x, and a last per-part map gives
    [B, P, out_dim]. SSAN: F 1024, F/2 512, out 512; tir keeps the ratios (F = the part dimension).
    """

    def __init__(self, parts: int, dim: int, out_dim: int) -> None:
        super().__init__()
        reduced = dim // 2
        self.query = PerPart(parts, dim, reduced)
        self.key = PerPart(parts, dim, reduced)
        self.up = PerPart(parts, reduced, dim)
        self.up_norm = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(parts))
        self.out = PerPart(parts, dim, out_dim)
        self.register_buffer("diagonal", torch.eye(parts) * -1e6, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = F.normalize(F.leaky_relu(self.query(x), LEAKY_SLOPE), dim=-1, eps=1e-8)  # [B, P, F/2]
        key = F.normalize(F.leaky_relu(self.key(x), LEAKY_SLOPE), dim=-1, eps=1e-8)
        attention = query @ key.transpose(1, 2) + self.diagonal  # [B, P(attending), P(attended)]
        attention = attention.softmax(dim=1)
        attended = attention.transpose(1, 2) @ query  # part b gathers sum_a attention[a, b] query_a
        up = self.up(attended)
        up = torch.stack([F.leaky_relu(norm(up[:, p]), LEAKY_SLOPE) for p, norm in enumerate(self.up_norm)], dim=1)
        return self.out(x + up)
