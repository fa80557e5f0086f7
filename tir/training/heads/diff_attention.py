"""Differential Attention (Ye et al., 2024) as CCMA uses it, here across modalities.

Queries come from one modality, keys and values from the other. Each of ``heads`` differential
heads has two query/key sub-heads of ``dim / (2 * heads)`` channels and one value head of twice
that width; its weights are ``softmax(Q1 K1^T / sqrt d) - lambda * softmax(Q2 K2^T / sqrt d)`` with
``lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init``, shared by all heads. Each head's output
is RMS-normalised (eps 1e-5) and scaled by ``1 - lambda_init`` before the output projection, as
CCMA's ``DiffAttention`` (model/build.py 130-255) computes it for one input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DifferentialAttention(nn.Module):
    """``forward(query [B, Lq, D], context [B, Lk, D], context_valid [B, Lk] bool | None) -> [B, Lq, D]``.

    ``context_valid`` marks the context positions that may be attended (False: padding, which gets
    exactly zero weight in both maps); every row must have at least one valid position.
    """

    def __init__(self, dim: int, heads: int = 4, lambda_init: float = 0.8, dropout: float = 0.1, qkv_bias: bool = True) -> None:
        super().__init__()
        if heads < 1 or dim % (2 * heads):
            raise ValueError(f"width {dim} must split into 2 x {heads} query/key sub-heads")
        self.heads = heads
        self.head_dim = dim // (2 * heads)
        self.lambda_init = lambda_init
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)
        self.head_norm = nn.RMSNorm(2 * self.head_dim, eps=1e-5)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(self.head_dim) * 0.1) for _ in range(4)
        )

    def lambda_value(self) -> torch.Tensor:
        """The current lambda (a scalar tensor)."""
        first = torch.exp(torch.dot(self.lambda_q1, self.lambda_k1))
        second = torch.exp(torch.dot(self.lambda_q2, self.lambda_k2))
        return first - second + self.lambda_init

    def weights(self, query: torch.Tensor, context: torch.Tensor, context_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Differential attention weights [B, heads, Lq, Lk] (after attention dropout)."""
        batch, lq, lk = query.shape[0], query.shape[1], context.shape[1]
        q = self.q_proj(query).view(batch, lq, 2 * self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(context).view(batch, lk, 2 * self.heads, self.head_dim).transpose(1, 2)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)  # [B, 2h, Lq, Lk]
        if context_valid is not None:
            scores = scores.masked_fill(~context_valid[:, None, None, :], float("-inf"))
        maps = self.attn_drop(F.softmax(scores, dim=-1)).view(batch, self.heads, 2, lq, lk)
        return maps[:, :, 0] - self.lambda_value() * maps[:, :, 1]

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_valid: torch.Tensor | None = None) -> torch.Tensor:
        batch, lq, lk = query.shape[0], query.shape[1], context.shape[1]
        v = self.v_proj(context).view(batch, lk, self.heads, 2 * self.head_dim).transpose(1, 2)
        heads = self.weights(query, context, context_valid) @ v  # [B, h, Lq, 2 d]
        heads = self.head_norm(heads) * (1 - self.lambda_init)
        return self.proj_drop(self.out_proj(heads.transpose(1, 2).reshape(batch, lq, -1)))
