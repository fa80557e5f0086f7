"""RDE's caption augmentation (``--txt_aug``, RDE datasets/bases.py ``txt_data_aug``), on token ids.

Each word token (not padding, start, end or mask token) is touched with probability ``rate`` (0.2); a
touched token becomes the mask token (60%), a random ordinary token (20%) or is deleted (20%: the tokens
after it move left and padding fills the end). Draws are counter-based hashes of (seed, epoch,
pair_index) as in tir.knowledge.masking, so a caption is augmented the same way on any batch, rank or device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tir.knowledge.masking import _hash, _random_tokens, _sample_keys, _uniform
from tir.training.mlm import token_words

KEEP, MASK, RANDOM, DELETE = range(4)
_TOUCH, _ACTION, _REPLACEMENT = 16, 17, 18  # hash streams apart from the MLM masking's


def text_augment_actions(
    text: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    epoch: int,
    seed: int,
    special_ids: Sequence[int],
    rate: float = 0.2,
    mask_share: float = 0.6,
    random_share: float = 0.2,
) -> torch.Tensor:
    """What happens to each position [B, L] long: KEEP, MASK, RANDOM or DELETE (deletion takes the rest)."""
    word = token_words(text, special_ids) >= 0  # ordinary tokens: not padding, not a special
    keys = _sample_keys(pair_index, epoch, seed)
    positions = torch.arange(text.shape[1], device=text.device)
    touched = word & (_uniform(keys, _TOUCH, positions) < rate)
    draw = _uniform(keys, _ACTION, positions)
    action = torch.where(draw < mask_share, MASK, torch.where(draw < mask_share + random_share, RANDOM, DELETE))
    return torch.where(touched, action, KEEP)


def augment_text(
    text: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    epoch: int,
    seed: int,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    rate: float = 0.2,
) -> torch.Tensor:
    """Augmented token ids [B, L] (same shape; deletions leave padding at the end).

    ``special_ids``: the start and end token ids; padding (0) and ``mask_token_id`` are never touched, and
    random tokens are ordinary ids (not 0, the specials or the mask token), as RDE draws from 1..49404.
    """
    protected = (*special_ids, mask_token_id)
    action = text_augment_actions(text, pair_index, epoch=epoch, seed=seed, special_ids=protected, rate=rate)
    positions = torch.arange(text.shape[1], device=text.device)
    replacement = _random_tokens(_hash(_sample_keys(pair_index, epoch, seed), _REPLACEMENT, positions),
                                 vocab_size, mask_token_id, (0, *special_ids))
    out = torch.where(action == MASK, mask_token_id, text)
    out = torch.where(action == RANDOM, replacement.to(text.dtype), out)
    keep = action != DELETE
    length = text.shape[1]
    target = torch.where(keep, keep.long().cumsum(1) - 1, length)  # deleted tokens go to a spare column
    shifted = torch.zeros(text.shape[0], length + 1, dtype=text.dtype, device=text.device)
    shifted.scatter_(1, target, out)
    return shifted[:, :length]
