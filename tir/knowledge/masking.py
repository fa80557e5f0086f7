"""Knowledge-guided masked language modelling: choose what to mask in a batch of mask plans.

The trainer calls::

    mask_tokens(token_ids, word_ids, level, element, pair_index, *, epoch: int, seed: int,
                policy: MaskPolicy, mask_token_id: int, vocab_size: int, ratio: float = 0.3,
                random_rate: float = 0.15, special_ids: Sequence[int] = (49406, 49407))
        -> tuple[masked_ids [B, L] long, labels [B, L] long (-100 where not predicted)]

``token_ids, word_ids, level, element`` are [B, L] integer tensors (rows of mask_plans.parquet
padded with token 0, word -1, level 0, element -1; element numbers below 2**16, as its int16 column
holds); ``pair_index`` is [B]. Per sample a strategy is drawn from ``policy`` (``choose_strategies``):
``random`` masks each whole word with probability ``random_rate`` (BERT-style, at least one word);
``object`` / ``attribute`` / ``relation`` mask all tokens of ``ceil(ratio x n)`` of the n graph elements
of that level, or one random word when the caption has none. Each chosen token becomes
``mask_token_id`` (80%), a random ordinary token (10%: uniform over ``[0, vocab_size)`` without
``mask_token_id`` and ``special_ids``) or stays (10%), and its label is the original id. Start, end
and padding tokens (word -1) are never chosen.

Every draw is a counter-based hash of (seed, epoch, pair_index, what is drawn), so a sample is
masked the same way whatever batch it is in, on any device, with no global RNG state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from tir.errors import UserError

STRATEGIES: tuple[str, ...] = ("random", "object", "attribute", "relation")
"""Strategy codes 0..3; codes 1..3 equal the ``level`` codes of mask_plans.parquet."""

IGNORE_INDEX = -100

Weights = tuple[float, float, float, float]


@dataclass(frozen=True)
class MaskPolicy:
    """Weights over STRATEGIES per sample, changing at given epochs (a curriculum).

    ``stages`` is ``((first_epoch, weights), ...)`` sorted by epoch, the first at epoch 0.
    """

    stages: tuple[tuple[int, Weights], ...] = ((0, (1.0, 1.0, 1.0, 1.0)),)
    edges: dict[tuple[float, ...], tuple[float, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        epochs = [start for start, _ in self.stages]
        if not epochs or epochs[0] != 0 or epochs != sorted(set(epochs)):
            raise UserError(f"mask policy stages must start at epoch 0 and increase, got epochs {epochs}")
        for _, weights in self.stages:
            if len(weights) != len(STRATEGIES) or min(weights) < 0 or sum(weights) <= 0:
                raise UserError(f"mask policy weights must be {len(STRATEGIES)} non-negative numbers, not all 0: {weights}")
        # each stage's cumulative shares as float32 values, computed once: a step compares draws with plain floats
        shares = {tuple(w): torch.tensor(w, dtype=torch.float64).cumsum(0) / sum(w) for _, w in self.stages}
        object.__setattr__(self, "edges", {w: tuple(c.to(torch.float32).tolist()) for w, c in shares.items()})

    def weights(self, epoch: int) -> Weights:
        """The strategy weights in force at ``epoch`` (0-based)."""
        current = self.stages[0][1]
        for start, weights in self.stages:
            if start <= epoch:
                current = weights
        return current

    @classmethod
    def uniform(cls) -> "MaskPolicy":
        """HKGR: each sample draws random / object / attribute / relation with equal probability."""
        return cls()

    @classmethod
    def fixed(cls, strategy: str) -> "MaskPolicy":
        """Always the one strategy (``random`` is IRRA's plain MLM)."""
        return cls(((0, _one_hot(strategy)),))

    @classmethod
    def curriculum(cls, schedule: Mapping[int, str | Sequence[float]]) -> "MaskPolicy":
        """From ``{first_epoch: strategy name, "uniform" or 4 weights}``, e.g. ``{0: "object", 10: "uniform"}``."""
        return cls(tuple((int(epoch), _weights(spec)) for epoch, spec in sorted(schedule.items())))

    @classmethod
    def parse(cls, spec: str) -> "MaskPolicy":
        """From a config string: ``uniform``, a strategy name, or ``0:object,10:attribute,20:uniform``."""
        text = spec.strip()
        if ":" not in text:
            return cls(((0, _weights(text)),))
        schedule: dict[int, str] = {}
        for part in text.split(","):
            epoch, _, name = part.partition(":")
            if not epoch.strip().isdigit():
                raise UserError(f"bad mask policy stage {part!r}; write e.g. 0:object,10:uniform")
            schedule[int(epoch)] = name.strip()
        return cls.curriculum(schedule)


def _one_hot(strategy: str) -> Weights:
    if strategy not in STRATEGIES:
        raise UserError(f"unknown masking strategy {strategy!r}; choose one of {', '.join(STRATEGIES)} or uniform")
    return tuple(float(name == strategy) for name in STRATEGIES)  # type: ignore[return-value]


def _weights(spec: str | Sequence[float]) -> Weights:
    if isinstance(spec, str):
        return (1.0, 1.0, 1.0, 1.0) if spec == "uniform" else _one_hot(spec)
    return tuple(float(w) for w in spec)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- counter-based hashing
_M32 = 0xFFFFFFFF


def _mul32(h: torch.Tensor, constant: int) -> torch.Tensor:
    """``h * constant mod 2**32`` for h in [0, 2**32) without int64 overflow (16-bit halves)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (h * low + (((h * high) & 0xFFFF) << 16)) & _M32


def _fmix(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser on int64 tensors holding values in [0, 2**32)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _mix(h: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    """Fold a 32-bit ``value`` into hash state ``h``."""
    return _fmix(_mul32(h ^ (value & _M32), 0x9E3779B1) ^ 0x2545F491)


def _sample_keys(pair_index: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """A [B] hash state per sample from (seed, epoch, pair_index)."""
    pair = pair_index.to(torch.int64)
    h = torch.full_like(pair, 0x6A09E667)
    for part in (seed & _M32, (seed >> 32) & _M32, epoch & _M32):
        h = _mix(h, part)
    return _mix(_mix(h, pair & _M32), (pair >> 32) & _M32)


def _uniform(keys: torch.Tensor, stream: int, index: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform floats in [0, 1): [B] for ``index`` None, else broadcast of keys [B, 1] with ``index``."""
    h = _mix(keys, stream)
    if index is not None:
        h = _mix(h[:, None], index)
    return (h >> 8).to(torch.float32) / float(1 << 24)


def _hash(keys: torch.Tensor, stream: int, index: torch.Tensor) -> torch.Tensor:
    return _mix(_mix(keys, stream)[:, None], index)


_STRATEGY, _ITEMS, _WORDS, _FALLBACK, _ACTION, _REPLACEMENT, _CAP = range(7)  # hash streams
_OUT_OF_LEVEL = 1 << 62  # sort key of tokens outside the chosen level, above every element's key


# ----------------------------------------------------------------------------- the API
def choose_strategies(pair_index: torch.Tensor, *, epoch: int, seed: int, policy: MaskPolicy) -> torch.Tensor:
    """The strategy code (index into STRATEGIES) of each sample, [B] long."""
    draw = _uniform(_sample_keys(pair_index, epoch, seed), _STRATEGY)
    strategy = torch.zeros_like(pair_index, dtype=torch.long)
    for edge in policy.edges[tuple(policy.weights(epoch))][:-1]:  # edges at or below the draw (searchsorted right)
        strategy = strategy + (draw >= edge).long()
    return strategy


def cap_draws(pair_index: torch.Tensor, length: int, *, epoch: int, seed: int) -> torch.Tensor:
    """[B, length] uniform floats per (seed, epoch, pair_index, position), independent of the masking's own
    draws: the order in which a cap on masked tokens keeps them."""
    positions = torch.arange(length, device=pair_index.device)
    return _uniform(_sample_keys(pair_index, epoch, seed), _CAP, positions)


def mask_tokens(
    token_ids: torch.Tensor,
    word_ids: torch.Tensor,
    level: torch.Tensor,
    element: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    epoch: int,
    seed: int,
    policy: MaskPolicy,
    mask_token_id: int,
    vocab_size: int,
    ratio: float = 0.3,
    random_rate: float = 0.15,
    special_ids: Sequence[int] = (49406, 49407),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked token ids and MLM labels ([B, L] long each); see the module docstring."""
    device = token_ids.device
    word_ids, level, element = word_ids.long(), level.long(), element.long()
    length = token_ids.shape[1]
    keys = _sample_keys(pair_index, epoch, seed)
    strategy = choose_strategies(pair_index, epoch=epoch, seed=seed, policy=policy)
    real = word_ids >= 0

    # graph strategies: ceil(ratio x n) of the n elements of the chosen level, by hashed score (ties: the lower
    # element number first). Tokens are sorted by their element's (score, number), so no width depends on data.
    in_level = real & (element >= 0) & (level == strategy[:, None])
    score = _hash(keys, _ITEMS, element.clamp(min=0)) >> 8  # 24 bits, as _uniform's; element numbers fit 16 bits
    key = torch.where(in_level, (score << 16) + element, _OUT_OF_LEVEL)
    ordered, order = key.sort(dim=1)
    starts = torch.cat([torch.ones_like(ordered[:, :1], dtype=torch.bool), ordered[:, 1:] != ordered[:, :-1]], 1)
    rank = torch.empty_like(order).scatter_(1, order, starts.long().cumsum(1) - 1)  # each token's element rank
    wanted = torch.ceil((starts & (ordered != _OUT_OF_LEVEL)).sum(1).double() * ratio - 1e-9).long()
    chosen = in_level & (rank < wanted[:, None])

    # random strategy: each whole word with probability random_rate
    n_words = word_ids.max(1).values + 1  # [B]; words are numbered 0.. in caption order
    word_draw = _uniform(keys, _WORDS, torch.arange(length, device=device))  # indexed by word id
    word_hit = word_draw.gather(1, word_ids.clamp(min=0)) < random_rate
    chosen = torch.where((strategy == 0)[:, None], real & word_hit, chosen)

    # fallback: one random word when nothing was chosen (empty level, or unlucky random draw)
    fallback_word = (_uniform(keys, _FALLBACK) * n_words.clamp(min=1)).long()
    empty = ~chosen.any(1)
    chosen = chosen | (empty[:, None] & real & (word_ids == fallback_word[:, None]))

    # 80% mask / 10% random token / 10% kept, decided per token
    positions = torch.arange(length, device=device)
    action = _uniform(keys, _ACTION, positions)
    replacement = _random_tokens(_hash(keys, _REPLACEMENT, positions), vocab_size, mask_token_id, special_ids)
    masked = torch.where(action < 0.8, torch.full_like(token_ids, mask_token_id), token_ids)
    masked = torch.where((action >= 0.8) & (action < 0.9), replacement.to(token_ids.dtype), masked)
    masked = torch.where(chosen, masked, token_ids)
    labels = torch.where(chosen, token_ids.long(), torch.full_like(token_ids, IGNORE_INDEX, dtype=torch.long))
    return masked, labels


def _random_tokens(h: torch.Tensor, vocab_size: int, mask_token_id: int, special_ids: Sequence[int]) -> torch.Tensor:
    """Uniform ids in [0, vocab_size) other than the mask and special ids, from 32-bit hashes ``h``."""
    excluded = sorted({i for i in (mask_token_id, *special_ids) if 0 <= i < vocab_size})
    allowed = vocab_size - len(excluded)
    if allowed <= 0:
        raise ValueError(f"no ordinary token ids below vocab_size={vocab_size}")
    token = h % allowed
    for skip in excluded:  # shift past each excluded id, in increasing order
        token = token + (token >= skip).long()
    return token

