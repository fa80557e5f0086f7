"""SSAN: stripes, word-part scores, the compound ranking loss against the reference's formula, the method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tir.errors import UserError
from tir.training.cross_captions import CrossCaptions
from tir.training.heads.parts import WordPartScores, pool_stripes, stripe_bounds, stripe_of_patches
from tir.training.losses_ssan import compound_ranking_loss
from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone
from tir.training.random_batch import random_batch

torch.set_num_threads(1)
MICRO_SIZE = (96, 32)  # tir-micro at 96x32: a 6x2 patch grid


@pytest.mark.parametrize("grid", [(24, 8), (8, 3), (6, 2), (13, 5), (7, 1)])
def test_stripes_cover_every_patch_exactly_once(grid: tuple[int, int]) -> None:
    rows, cols = grid
    labels = stripe_of_patches(grid, 6)
    assert labels.shape == (rows * cols,)
    assert torch.equal(labels.bincount(minlength=6).sum(), torch.tensor(rows * cols))  # each patch once
    heights = [stop - start for start, stop in stripe_bounds(rows, 6)]
    assert min(heights) >= 1 and max(heights) - min(heights) <= 1 and sum(heights) == rows
    by_row = labels.view(rows, cols)
    assert (by_row == by_row[:, :1]).all() and (by_row[1:, 0] >= by_row[:-1, 0]).all()  # whole rows, top to bottom
    if grid == (24, 8):
        assert labels.bincount().tolist() == [32] * 6  # ViT-B/16 at 384x128: 4 rows x 8 columns each
    patches = torch.randn(2, rows * cols, 5)
    pooled = pool_stripes(patches, grid, 6)
    for stripe in range(6):
        assert torch.equal(pooled[:, stripe], patches[:, labels == stripe].amax(dim=1))


def test_a_grid_shorter_than_the_stripes_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="patch grid has 4 rows, fewer than the 6 stripes"):
        stripe_bounds(4, 6)
    with pytest.raises(UserError, match="method_options.parts <= 4"):
        create_method("ssan", build_backbone("tir-micro"), num_classes=2)  # 64x32: a 4x2 grid
    assert len(create_method("ssan", build_backbone("tir-micro"), 2, {"parts": 4}).stripes) == 4


def test_word_part_scores_ignore_padding_and_special_tokens() -> None:
    torch.manual_seed(0)
    head = WordPartScores(8, 6)
    tokens = torch.randn(3, 10, 8)
    valid = torch.zeros(3, 10, dtype=torch.bool)
    valid[0, 1:4], valid[1, 1:9] = True, True  # row 2: no words at all
    parts, scores = head(tokens, valid)
    assert (scores[~valid] == 0).all() and (scores[valid] > 0).all()
    loud = tokens.masked_fill(~valid.unsqueeze(-1), 1e4)  # start, end, padding: huge values
    loud_parts, loud_scores = head(loud, valid)
    assert torch.equal(parts, loud_parts) and torch.equal(scores, loud_scores)
    manual = (tokens[0, 1:4].unsqueeze(1) * torch.sigmoid(head.classify(tokens[0, 1:4])).unsqueeze(-1)).amax(0)
    assert torch.allclose(parts[0], manual) and (parts[2] == 0).all()


def test_padding_after_the_end_token_changes_nothing_in_the_method() -> None:
    method = _method().eval()
    batch = random_batch(4, MICRO_SIZE, 16, words=[3, 5, 7, 9])
    noisy = batch["text"].clone()
    after_end = torch.arange(16).unsqueeze(0) > (noisy == 49407).int().argmax(1, keepdim=True)
    noisy[after_end] = 1234
    with torch.no_grad():
        assert torch.equal(method.word_part_scores(batch["text"]), method.word_part_scores(noisy))
        clean, garbled = method.encode_text(batch["text"]), method.encode_text(noisy)
    assert all(torch.allclose(clean[k], garbled[k], atol=1e-6) for k in clean)
    assert (method.word_part_scores(noisy)[after_end] == 0).all()


# ---------------------------------------------------------------------- the reference's ranking loss
def reference_cr_loss(img, txt, txt_cr, labels, auto_margin_flag, draws, margin=0.2, beta=0.1):
    """zifyloo/SSAN src/loss/RankingLoss.py (CRLoss.forward) transcribed with numpy loops. Its random
    semi-hard choice ``np.random.choice(candidates)`` is made explicit: the candidate with the largest
    value in the next uniform matrix of ``draws`` (a uniform choice as well)."""

    def similarity_of(a, b):
        a = a.reshape(len(a), -1)
        b = b.reshape(len(b), -1)
        a = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-8)
        b = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-8)
        return a @ b.T, (a * b).sum(axis=1)

    def triplet_sum(similarity, margins, draw):
        total = 0.0
        for idx, label in enumerate(labels):
            if margins[idx] >= 0.16 or auto_margin_flag is False:
                negative = np.where(labels != label)[0]
                ap_sim = similarity[idx, idx]
                loss = similarity[idx, negative] - ap_sim + margins[idx]
                semi_hard = np.where(np.logical_and(loss < margins[idx], loss > 0))[0]
                if len(semi_hard) > 0:
                    chosen = negative[semi_hard[np.argmax(draw[idx, negative[semi_hard]])]]
                    total += max(0.0, margins[idx] - similarity[idx, idx] + similarity[idx, chosen])
        return total

    def calculate_loss(similarity, margins):
        return triplet_sum(similarity, margins, next(draws)) + triplet_sum(similarity.T, margins, next(draws))

    similarity, match = similarity_of(img, txt)
    similarity_cr, match_cr = similarity_of(img, txt_cr)
    margins = np.repeat(margin, len(labels))
    if auto_margin_flag:
        lambda_cr = np.abs(match_cr) / np.abs(match)
        lambda_cr = (lambda_cr <= 1) * lambda_cr + (lambda_cr >= 1)
        margins_cr = (lambda_cr + 1) * margin / 2.0
    else:
        margins_cr = np.repeat(margin / 2.0, len(labels))
    return calculate_loss(similarity, margins) + beta * calculate_loss(similarity_cr, margins_cr), margins_cr


def _draws(seed: int, n: int):
    generator = torch.Generator().manual_seed(seed)
    return iter([torch.rand(n, n, generator=generator).numpy() for _ in range(4)])


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("shape", [(4,), (6, 3)])  # a global level, and a part level [B, P, D]
def test_compound_ranking_loss_equals_the_reference(adaptive: bool, shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(7)
    n = 16
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7])
    image, text = torch.randn(n, *shape, generator=generator), torch.randn(n, *shape, generator=generator)
    cross = text[torch.arange(n) ^ 1] + 0.8 * torch.randn(n, *shape, generator=generator)  # the pair partner's caption
    image.requires_grad_(True)
    got = compound_ranking_loss(image, text, cross, torch.ones(n, dtype=torch.bool), pids, adaptive,
                                torch.Generator().manual_seed(3))
    # SSAN keeps parts as [B, D, P]: the same numbers in another order
    as_reference = [x.detach().transpose(1, 2).numpy() if x.ndim == 3 else x.detach().numpy() for x in (image, text, cross)]
    expected, margins_cr = reference_cr_loss(*as_reference, pids.numpy(), adaptive, _draws(3, n))
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert expected > 0
    if adaptive:  # the case is exercised: margins vary and some anchors are skipped (below 0.16)
        assert (margins_cr < 0.16).any() and (margins_cr >= 0.16).any() and len(set(margins_cr.round(6))) > 2
    got.backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_pairs_without_another_image_take_no_part_in_the_compound_term() -> None:
    generator = torch.Generator().manual_seed(1)
    image, text, cross = (torch.randn(8, 4, generator=generator) for _ in range(3))
    pids = torch.arange(8) // 2
    found = torch.tensor([True, True, False, True, True, False, True, True])
    loss = compound_ranking_loss(image, text, cross, found, pids, True, torch.Generator().manual_seed(0))
    other = cross.clone()
    other[~found] = torch.randn(2, 4)
    again = compound_ranking_loss(image, text, other, found, pids, True, torch.Generator().manual_seed(0))
    assert torch.equal(loss, again)


def test_cross_captions_come_from_another_image_of_the_identity() -> None:
    pids = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    images = np.array([0, 0, 1, 2, 2, 3, 4, 5])  # id 1 and id 2: a single image each
    text = torch.arange(8).unsqueeze(1)
    cross = CrossCaptions(text, pids, images)
    seen: dict[int, set[int]] = {i: set() for i in range(8)}
    for step in range(40):
        chosen, found = cross.draw(torch.arange(8), seed=1, epoch=0, step=step)
        assert found.tolist() == [True, True, True, False, False, False, True, True]
        for position, value in enumerate(chosen[:, 0].tolist()):
            seen[position].add(value)
    assert seen[0] == {2} and seen[1] == {2} and seen[2] == {0, 1}  # captions of the other image, both drawn
    assert seen[3] == {3} and seen[5] == {5} and seen[6] == {7} and seen[7] == {6}
    first, _ = cross.draw(torch.arange(8), 1, 0, 5)
    assert torch.equal(first, cross.draw(torch.arange(8), 1, 0, 5)[0])  # reproducible per (seed, epoch, step)


# ---------------------------------------------------------------------- the method
def _method(**options):
    torch.manual_seed(0)
    return create_method("ssan", build_backbone("tir-micro", image_size=MICRO_SIZE), num_classes=4, options=options)


@pytest.mark.parametrize("epoch", [0, 5])
def test_every_new_parameter_gets_a_gradient(epoch: int) -> None:
    method = _method()
    batch = random_batch(8, MICRO_SIZE, 16, words=[4 + row % 5 for row in range(8)])
    method.use_train_set(batch["text"], batch["pids"].numpy(), np.arange(8))
    out = method(batch, StepContext(epoch=epoch, step=0, seed=1))
    assert out["cross_found"].item() == 1.0
    loss = out["loss_ranking"] + out["loss_id"]
    assert torch.isfinite(loss)
    loss.backward()
    new = [(name, p) for name, p in method.named_parameters() if not name.startswith("backbone.")]
    assert len(new) > 6 * 3
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in new), [n for n, p in new if p.grad is None]
    assert method.backbone.clip.visual.conv1.weight.grad.abs().sum() > 0


def test_similarity_is_the_sum_of_the_three_cosines() -> None:
    method = _method().eval()
    batch = random_batch(4, MICRO_SIZE, 16, words=[4, 5, 6, 7])
    with torch.no_grad():
        images, texts = method.encode_image(batch["images"]), method.encode_text(batch["text"])
        image_levels, text_levels = method.image_levels(batch["images"]), method.text_levels(batch["text"])
    assert set(images) == {"global", "local", "non_local"}
    expected = sum(F.normalize(t.flatten(1), dim=-1) @ F.normalize(i.flatten(1), dim=-1).t()
                   for i, t in zip(image_levels, text_levels))
    assert torch.allclose(method.similarity(texts, images), expected, atol=1e-5)


def test_training_without_the_train_set_is_refused() -> None:
    with pytest.raises(RuntimeError, match="use_train_set"):
        _method()(random_batch(4, MICRO_SIZE, 16), StepContext(0, 0, 1))


# ---------------------------------------------------------------------- train + eval from the CLI
@pytest.mark.parametrize("fmt", ["CUHK-PEDES", "ICFG-PEDES", "RSTPReid"])
def test_train_and_eval_on_each_synthetic_format(fmt: str, tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from tir.cli import cli

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    manifests = tmp_path / "manifests"
    run("synth", fmt, "--out", str(tmp_path / "raw"), "--ids", "12", "--images-per-id", "2", "--jobs", "1")
    run("prepare", fmt, "--root", str(tmp_path / "raw"), "--out", str(manifests / fmt), "--jobs", "1")
    run("train", "--dataset", fmt, "--manifests", str(manifests), "--model", "tir-micro", "--method", "ssan",
        "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs"),
        "--name", "ssan", "--set", "image_size=[96, 32]", "--set", "text_length=24", "--set", "image_cache=false",
        "--set", "max_steps_per_epoch=2")
    record = json.loads((tmp_path / "runs" / "ssan" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["cross_found"] == 1.0 and record["loss_ranking"] >= 0 and record["loss_id"] > 0
    output = run("eval", str(tmp_path / "runs" / "ssan"), "--device", "cpu", "--json", str(tmp_path / "eval.json"))
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["method"] == "ssan" and 0 <= summary["metrics"]["R1"] <= 100 and "R@1" in output
    picture = tmp_path / "runs" / "ssan" / "eval-test-parts.png"
    assert summary["figures"] == {"parts_plot": str(picture)} and f"parts plot: {picture}" in output
    assert picture.stat().st_size > 5000
