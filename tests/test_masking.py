"""tir.knowledge.masking: knowledge-guided MLM masks, deterministic per (seed, epoch, pair)."""

from __future__ import annotations

import math

import pytest
import torch

from tir.errors import UserError
from tir.knowledge.masking import IGNORE_INDEX, STRATEGIES, MaskPolicy, choose_strategies, mask_tokens

torch.set_num_threads(1)

SOT, EOT, MASK, VOCAB = 49406, 49407, 49405, 49408


def make_batch(batch: int, length: int = 77, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic plans: words of 1-2 tokens; each word an object, attribute, relation element or none."""
    g = torch.Generator().manual_seed(seed)
    rows = {k: torch.full((batch, length), v, dtype=torch.long) for k, v in
            (("token_ids", 0), ("word_ids", -1), ("level", 0), ("element", -1))}
    for b in range(batch):
        n_words = int(torch.randint(3, 30, (1,), generator=g))
        pos, element = 1, 0
        rows["token_ids"][b, 0] = SOT
        for w in range(n_words):
            width = int(torch.randint(1, 3, (1,), generator=g))
            if pos + width >= length - 1:
                break
            lvl = int(torch.randint(0, 4, (1,), generator=g))
            sl = slice(pos, pos + width)
            rows["token_ids"][b, sl] = torch.randint(1, 40000, (width,), generator=g)
            rows["word_ids"][b, sl] = w
            rows["level"][b, sl] = lvl
            if lvl:
                rows["element"][b, sl] = element
                element += 1
            pos += width
        rows["token_ids"][b, pos] = EOT
    rows["pair_index"] = torch.arange(batch, dtype=torch.long) * 3 + 11
    return rows


def run(batch: dict[str, torch.Tensor], policy: MaskPolicy = MaskPolicy.uniform(), epoch: int = 0, seed: int = 0):
    return mask_tokens(
        batch["token_ids"], batch["word_ids"], batch["level"], batch["element"], batch["pair_index"],
        epoch=epoch, seed=seed, policy=policy, mask_token_id=MASK, vocab_size=VOCAB,
    )


def select(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in batch.items()}


def test_deterministic_and_keyed_by_seed_and_epoch():
    batch = make_batch(32)
    ids, labels = run(batch)
    ids2, labels2 = run(batch)
    assert torch.equal(ids, ids2) and torch.equal(labels, labels2)
    assert not torch.equal(labels, run(batch, seed=1)[1])
    assert not torch.equal(labels, run(batch, epoch=1)[1])


def test_independent_of_batch_order_composition_and_padding():
    batch = make_batch(32)
    ids, labels = run(batch)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    ids_p, labels_p = run(select(batch, order))
    assert torch.equal(ids_p, ids[order]) and torch.equal(labels_p, labels[order])
    short = int(torch.nonzero((batch["token_ids"][:, 39:] == 0).all(1))[0])  # a caption within 39 tokens
    alone = {k: (v[short:short + 1, :40] if v.dim() == 2 else v[short:short + 1]) for k, v in batch.items()}
    ids_a, labels_a = run(alone)  # alone in its batch, with less padding
    assert torch.equal(labels_a[0], labels[short, :40]) and torch.equal(ids_a[0], ids[short, :40])


def test_specials_and_padding_never_touched():
    batch = make_batch(64)
    ids, labels = run(batch)
    special = batch["word_ids"] < 0
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(ids[special], batch["token_ids"][special])
    predicted = labels != IGNORE_INDEX
    assert torch.equal(labels[predicted], batch["token_ids"][predicted])
    assert predicted.any(1).all()  # every caption has something to predict


@pytest.mark.parametrize("strategy", ["object", "attribute", "relation"])
def test_level_ratio_and_whole_elements(strategy):
    code = STRATEGIES.index(strategy)
    batch = make_batch(64, seed=code)
    _, labels = run(batch, MaskPolicy.fixed(strategy))
    predicted = labels != IGNORE_INDEX
    for b in range(64):
        in_level = batch["level"][b] == code
        elements = batch["element"][b][in_level].unique()
        if len(elements) == 0:
            words = batch["word_ids"][b][predicted[b]].unique()
            assert len(words) == 1 and torch.equal(predicted[b], batch["word_ids"][b] == words[0])
            continue
        chosen = batch["element"][b][predicted[b]].unique()
        assert len(chosen) == math.ceil(0.3 * len(elements))
        assert (batch["level"][b][predicted[b]] == code).all()
        assert torch.equal(predicted[b], torch.isin(batch["element"][b], chosen) & in_level)


def test_empty_level_falls_back_to_one_word():
    batch = make_batch(16)
    batch["level"] = torch.where(batch["level"] == 3, 0, batch["level"])
    batch["element"] = torch.where(batch["level"] == 0, -1, batch["element"])
    _, labels = run(batch, MaskPolicy.fixed("relation"))
    for b in range(16):
        words = batch["word_ids"][b][labels[b] != IGNORE_INDEX].unique()
        assert len(words) == 1


def test_random_strategy_masks_whole_words_at_fifteen_percent():
    batch = make_batch(512)
    _, labels = run(batch, MaskPolicy.fixed("random"))
    predicted = labels != IGNORE_INDEX
    hits = total = 0
    for b in range(512):
        words = batch["word_ids"][b]
        for w in words[words >= 0].unique():
            tokens = predicted[b][words == w]
            assert tokens.all() or not tokens.any()  # whole words
            hits += int(tokens.all())
            total += 1
    assert abs(hits / total - 0.15) < 0.02


def test_eighty_ten_ten():
    batch = make_batch(2048)
    ids, labels = run(batch, MaskPolicy.fixed("random"))
    predicted = labels != IGNORE_INDEX
    n = int(predicted.sum())
    masked = int((ids[predicted] == MASK).sum()) / n
    kept = int((ids[predicted] == batch["token_ids"][predicted]).sum()) / n
    assert n > 5000
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(1 - masked - kept - 0.1) < 0.015
    replaced = ids[predicted & (ids != MASK) & (ids != batch["token_ids"])]
    assert not torch.isin(replaced, torch.tensor([SOT, EOT, MASK])).any()
    assert int(replaced.min()) >= 0 and int(replaced.max()) < VOCAB


def test_policy_draws_and_curriculum():
    pairs = torch.arange(40000)
    counts = torch.bincount(choose_strategies(pairs, epoch=0, seed=0, policy=MaskPolicy.uniform()), minlength=4)
    assert ((counts / 40000 - 0.25).abs() < 0.01).all()
    policy = MaskPolicy.parse("0:object, 10:attribute,20:uniform")
    assert policy == MaskPolicy.curriculum({0: "object", 10: "attribute", 20: "uniform"})
    assert (choose_strategies(pairs[:100], epoch=9, seed=0, policy=policy) == 1).all()
    assert (choose_strategies(pairs[:100], epoch=10, seed=0, policy=policy) == 2).all()
    assert policy.weights(25) == (1.0, 1.0, 1.0, 1.0)
    assert MaskPolicy.parse("relation").weights(3) == (0.0, 0.0, 0.0, 1.0)
    for bad in ("objects", "5:object", "x:object"):
        with pytest.raises(UserError):
            MaskPolicy.parse(bad)
