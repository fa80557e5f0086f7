"""IRRA's token-level random masking, through the counter-based masking of tir.knowledge.masking.

Each ordinary token is treated as its own word, so ``mask_tokens``' ``random`` strategy masks
tokens independently with the given probability (80% mask / 10% random / 10% kept), keyed by
(seed, epoch, pair_index): a caption is masked the same way whatever batch or rank it lands in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tir.knowledge.masking import IGNORE_INDEX, MaskPolicy, cap_draws, mask_tokens

WORDS_AT_RANDOM = MaskPolicy.fixed("random")  # built once, not per step


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
    return capped_word_mask(text, token_words(text, special_ids), pair_index, epoch=epoch, seed=seed,
                            mask_token_id=mask_token_id, vocab_size=vocab_size, special_ids=special_ids,
                            probability=probability, max_masks=0)


def capped_word_mask(
    text: torch.Tensor,
    word_ids: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    epoch: int,
    seed: int,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    probability: float,
    max_masks: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each whole word of ``word_ids`` masked with ``probability`` (80/10/10), keeping at most ``max_masks``
    masked tokens per caption (0: no cap; the tokens kept are drawn per (seed, epoch, pair_index) by
    ``cap_draws``, the others restored): masked ids and MLM labels (-100 where not predicted)."""
    masked, labels = mask_tokens(
        text,
        word_ids,
        torch.zeros_like(word_ids),
        torch.full_like(word_ids, -1),
        pair_index,
        epoch=epoch,
        seed=seed,
        policy=WORDS_AT_RANDOM,
        mask_token_id=mask_token_id,
        vocab_size=vocab_size,
        random_rate=probability,
        special_ids=special_ids,
    )
    if max_masks <= 0:
        return masked, labels
    chosen = labels != IGNORE_INDEX
    score = cap_draws(pair_index, text.shape[1], epoch=epoch, seed=seed).masked_fill(~chosen, 2.0)  # chosen first
    kept = torch.zeros_like(chosen).scatter_(1, score.argsort(dim=1, stable=True)[:, :max_masks], True) & chosen
    return torch.where(kept, masked, text), torch.where(kept, labels, torch.full_like(labels, IGNORE_INDEX))


def mlm_rows(labels: torch.Tensor, width: int, exact: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the flattened [B x L] text positions an MLM head scores, and their labels (-100: none).

    ``exact`` (default: on the CPU, where reading their number on the host costs nothing): exactly the
    masked positions. Otherwise ``width`` positions per caption, the masked ones first (``width`` must
    bound a caption's masked tokens): a static shape, so a GPU step never waits to learn how many rows
    there are; the unused rows carry label -100, which the MLM loss leaves out, so the loss is the same.
    """
    batch, length = labels.shape
    picked = labels.reshape(-1) != IGNORE_INDEX
    if labels.device.type == "cpu" if exact is None else exact:
        rows = picked.nonzero().squeeze(1)
    else:
        order = (~picked).view(batch, length).long().argsort(dim=1, stable=True)[:, : min(width, length)]
        rows = (order + torch.arange(batch, device=labels.device)[:, None] * length).reshape(-1)
    return rows, labels.reshape(-1)[rows]
