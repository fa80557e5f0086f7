"""A training step never makes the host wait for the GPU: checked on CPU.

On the ``meta`` device tensors have shapes but no values, so anything that needs a value on the host
(``.item()``, ``bool(t)``, ``.tolist()``) or a shape that depends on values (boolean-mask indexing,
``nonzero``) raises there, as it would wait for the GPU (or break a ``torch.compile`` graph) on CUDA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_support import loader_batch, micro_batch

from tir.knowledge.masking import IGNORE_INDEX, MaskPolicy
from tir.training.distributed import DistInfo
from tir.training.engine import _Loop, _run_epoch
from tir.training.heads.cross_modal import CrossModalMLM
from tir.training.losses import mlm_accuracy, mlm_loss
from tir.training.methods.base import StepContext, create_method
from tir.training.mlm import capped_word_mask, mlm_rows, token_words
from tir.training.model import build_backbone
from tir.training.random_batch import random_batch

torch.set_num_threads(1)

# ssan draws with torch.Generator, which the meta device lacks (its own test is below); cfack augments its
# strong view per sample on the host, so it still reads the device every step (see the README's GPU path).
SYNC_FREE = ["clip", "irra", "hkgr", "rde", "ccma"]


@pytest.mark.parametrize("name", SYNC_FREE)
def test_a_methods_step_runs_without_values_and_copies_nothing_from_the_host(name, monkeypatch) -> None:
    torch.manual_seed(0)
    method = create_method(name, build_backbone("tir-micro"), num_classes=4).to("meta")
    batch = {key: value.to("meta") for key, value in micro_batch(4).items()}
    copies, to = [], torch.Tensor.to

    def recording_to(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        moved = to(self, *args, **kwargs)
        if self.device.type == "cpu" and moved.device.type != "cpu":
            copies.append(tuple(self.shape))
        return moved

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    out = method(batch, StepContext(epoch=0, step=0, seed=1))
    sum(value for key, value in out.items() if key.startswith("loss_")).backward()
    assert copies == []  # a host tensor sent to the GPU mid-step waits for the GPU too
    if "loss_mlm" in out:
        assert out["loss_mlm"].shape == () and out["mlm_acc"].shape == ()


def _fused_tokens_and_labels(seed: int, batch: int = 6, length: int = 12, dim: int = 16, vocab: int = 50):
    generator = torch.Generator().manual_seed(seed)
    tokens, image = torch.randn(batch, length, dim, generator=generator), torch.randn(batch, 5, dim, generator=generator)
    picked = torch.rand(batch, length, generator=generator) < 0.3
    picked[0] = False  # a caption with nothing masked
    picked[1, :3] = True  # and one with at least three
    labels = torch.where(picked, torch.randint(0, vocab, (batch, length), generator=generator), IGNORE_INDEX)
    return tokens, image, labels


@pytest.mark.parametrize("width", [12, 4])
def test_the_static_width_mlm_loss_equals_the_loss_on_the_masked_positions_only(width) -> None:
    torch.manual_seed(0)
    head = CrossModalMLM(16, 50, depth=1).eval()
    tokens, image, labels = _fused_tokens_and_labels(1)
    labels[:, width:] = IGNORE_INDEX  # ``width`` bounds every caption's masked positions
    picked = labels != IGNORE_INDEX
    reference_logits = head(tokens, image)[picked]  # the boolean selection the heads made before
    reference = F.cross_entropy(reference_logits, labels[picked])
    accuracy = (reference_logits.argmax(-1) == labels[picked]).float().mean()
    for exact in (True, False):
        rows, row_labels = mlm_rows(labels, width, exact=exact)
        assert rows.shape[0] == (int(picked.sum()) if exact else 6 * width)
        logits = head(tokens, image, rows)
        assert torch.allclose(mlm_loss(logits, row_labels), reference, atol=1e-6)
        assert torch.allclose(mlm_accuracy(logits, row_labels), accuracy, atol=1e-6)


def test_the_mlm_loss_of_a_batch_with_nothing_masked_is_zero_with_a_gradient() -> None:
    logits = torch.randn(8, 50, requires_grad=True)
    loss = mlm_loss(logits, torch.full((8,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and mlm_accuracy(logits, torch.full((8,), IGNORE_INDEX)) == 0


def test_an_fp16_step_with_the_fused_optimiser_reads_nothing_on_the_host(monkeypatch) -> None:
    """GradScaler hands a fused Adam/AdamW (what CUDA runs get) its overflow flag on the device; an unfused
    optimiser would make it read the flag on the host every step."""
    torch.manual_seed(0)
    method = create_method("clip", build_backbone("tir-micro"), num_classes=4)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop = _Loop(method, method, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=True),
                 [loader_batch(4) for _ in range(4)], 4, torch.device("cpu"), None, 1.0, 1, DistInfo(), log_every=4)
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _f=original, _n=name, **k: reads.append(_n) or _f(self, *a, **k))
    means, _ = _run_epoch(loop, 0, 0, 1)
    monkeypatch.undo()
    assert means["loss"] > 0 and sorted(reads) == ["__float__", "tolist"]  # step 4, then the epoch means


def test_cfacks_cap_on_masked_tokens_keeps_the_same_tokens_of_a_pair_in_any_batch() -> None:
    batch = micro_batch(8, length=24)
    text, pairs = batch["text"], batch["pair_index"]

    def capped(rows: list[int]) -> torch.Tensor:
        return capped_word_mask(text[rows], token_words(text[rows], (49406, 49407)), pairs[rows], epoch=0, seed=1,
                                mask_token_id=49408, vocab_size=49409, special_ids=(49406, 49407), probability=0.9,
                                max_masks=2)[1]

    labels = capped(list(range(8)))
    assert ((labels != IGNORE_INDEX).sum(1) == 2).all()  # 90% of 4-8 words masked, then capped at 2
    assert torch.equal(capped([5, 2, 7])[0], labels[5]) and torch.equal(capped([7, 5])[1], labels[5])


def test_graph_masking_takes_the_elements_with_the_lowest_hashed_scores_whatever_their_numbers() -> None:
    """Element numbers far above the text length and elements split across the caption: the ranking, now done
    by sorting tokens instead of a table as wide as the largest number, still takes the ceil(0.3 n) lowest."""
    from tir.knowledge import masking

    generator = torch.Generator().manual_seed(4)
    batch, length, epoch, seed = 12, 30, 2, 9
    text = torch.randint(300, 5000, (batch, length), generator=generator)
    text[:, 0], text[:, -1] = 49406, 49407
    words = torch.arange(length).expand(batch, -1) - 1
    words[:, -1] = -1
    numbers = torch.randint(0, 30000, (batch, 8), generator=generator)  # 8 elements per caption, sparse numbers
    element = numbers.gather(1, torch.randint(0, 8, (batch, length), generator=generator))  # tokens of one interleave
    pairs = torch.arange(batch) * 7 + 3
    _, labels = masking.mask_tokens(text, words, torch.ones_like(text), element, pairs, epoch=epoch, seed=seed,
                                    policy=MaskPolicy.fixed("object"), mask_token_id=49408, vocab_size=49408)
    keys = masking._sample_keys(pairs, epoch, seed)
    for row in range(batch):
        present = element[row, 1:-1].unique()
        score = masking._uniform(keys[row : row + 1], masking._ITEMS, present[None])[0]
        ranked = sorted(zip(score.tolist(), present.tolist()))
        chosen = {number for _, number in ranked[: math.ceil(0.3 * len(present))]}
        expected = torch.tensor([number in chosen for number in element[row].tolist()]) & (words[row] >= 0)
        assert torch.equal(labels[row] != IGNORE_INDEX, expected)


def test_ssans_step_sends_nothing_between_host_and_device_after_the_first(monkeypatch) -> None:
    """SSAN's other-image captions and semi-hard negatives are drawn where the batch is (its tables move there
    on first use); before, every step sent the batch's positions to the host and the draws back."""
    torch.manual_seed(0)
    method = create_method("ssan", build_backbone("tir-micro", image_size=(96, 32)), num_classes=4)
    batch = random_batch(8, (96, 32), 16, words=[4 + row % 5 for row in range(8)])
    method.use_train_set(batch["text"], batch["pids"].numpy(), np.arange(8))  # two images per identity
    first = method(batch, StepContext(epoch=0, step=0, seed=1))
    moves = []
    for name in ("cpu", "to", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def recording(self, *args, _original=original, _name=name, **kwargs):
            device_given = any(isinstance(a, (torch.device, str)) for a in (*args, *kwargs.values()))
            if _name != "to" or device_given:
                moves.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, recording)
    again = method(batch, StepContext(epoch=0, step=0, seed=1))
    monkeypatch.undo()
    assert moves == []
    assert torch.equal(again["loss_ranking"], first["loss_ranking"])  # the same draws for the same step
