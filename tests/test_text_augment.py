"""RDE's caption augmentation: 20% of word tokens touched, 60% masked / 20% random / 20% deleted."""

from __future__ import annotations

import torch

from tir.training.random_batch import END, START, random_batch
from tir.training.text_augment import DELETE, MASK, RANDOM, augment_text, text_augment_actions

MASK_ID, VOCAB = 49408, 49409
SPECIALS = (START, END)


def _augment(text: torch.Tensor, pair_index: torch.Tensor, epoch: int = 0, seed: int = 1) -> torch.Tensor:
    return augment_text(text, pair_index, epoch=epoch, seed=seed, mask_token_id=MASK_ID, vocab_size=VOCAB,
                        special_ids=SPECIALS)


def test_statistics_over_many_captions_are_rdes() -> None:
    batch = random_batch(3000, (8, 8), 32, words=[5 + row % 26 for row in range(3000)])
    text, pairs = batch["text"], batch["pair_index"]
    out = _augment(text, pairs)
    action = text_augment_actions(text, pairs, epoch=0, seed=1, special_ids=(*SPECIALS, MASK_ID))
    words = (text > 0) & (text != START) & (text != END)
    kept = action != DELETE
    total = int(words.sum())
    survivors_in = [row[keep] for row, keep in zip(text, kept)]
    masked = replaced = 0
    for row_in, row_out in zip(survivors_in, out):
        row_out = row_out[: len(row_in)]
        masked += int((row_out == MASK_ID).sum())
        replaced += int(((row_out != row_in) & (row_out != MASK_ID)).sum())
    deleted = total - int(((out > 0) & (out != START) & (out != END)).sum())
    touched = masked + replaced + deleted
    assert abs(touched / total - 0.20) < 0.02
    for count, share in ((masked, 0.6), (replaced, 0.2), (deleted, 0.2)):
        assert abs(count / touched - share) < 0.02, (count, touched)
    assert (masked, replaced, deleted) == tuple(int((action == a).sum()) for a in (MASK, RANDOM, DELETE))


def test_deletion_shifts_left_and_keeps_the_caption_well_formed() -> None:
    batch = random_batch(200, (8, 8), 20, words=[18] * 200)
    out = _augment(batch["text"], batch["pair_index"])
    assert (out[:, 0] == START).all()
    assert ((out == END).sum(1) == 1).all()
    end = (out == END).int().argmax(1)
    after = torch.arange(20).unsqueeze(0) > end.unsqueeze(1)
    assert (out[after] == 0).all() and (end < 19).any()  # something was deleted somewhere
    random_tokens = out[(out != MASK_ID) & (out != batch["text"]) & ~after & (out != END)]
    assert ((random_tokens > 0) & (random_tokens < START)).all()


def test_same_pair_same_augmentation_whatever_the_batch() -> None:
    batch = random_batch(6, (8, 8), 24, words=[20] * 6)
    whole = _augment(batch["text"], batch["pair_index"])
    part = _augment(batch["text"][3:], batch["pair_index"][3:])
    assert torch.equal(whole[3:], part)
    assert not torch.equal(whole, _augment(batch["text"], batch["pair_index"], epoch=1))
    assert not torch.equal(whole, batch["text"])
