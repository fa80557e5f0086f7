"""IRRA's token-level random masking, through the counter-based masking of tir.knowledge.masking.

Each ordinary token is treated as its own word, so ``mask_tokens``' ``random`` strategy masks
tokens independently with the given probability (80% mask / 10% random / 10% kept), keyed by
(seed, epoch, pair_index): a caption is masked the same way whatever batch or rank it lands in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tir.knowledge.masking import MaskPolicy, mask_tokens


def token_words(text: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """Word ids numbering each ordinary token 0, 1, ... in order; -1 for padding and special tokens."""
    ordinary = text != 0
    for special in special_ids:
        ordinary &= text != special
    return torch.where(ordinary, ordinary.long().cumsum(1) - 1, torch.full_like(text, -1, dtype=torch.long))


def random_token_mask(
    text: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    epoch: int,
    seed: int,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked ids and MLM labels (-100 where not predicted), [B, L] long each."""
    words = token_words(text, special_ids)
    return mask_tokens(
        text,
        words,
        torch.zeros_like(words),
        torch.full_like(words, -1),
        pair_index,
        epoch=epoch,
        seed=seed,
        policy=MaskPolicy.fixed("random"),
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        random_rate=probability,
        special_ids=special_ids,
    )
