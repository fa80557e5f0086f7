"""RDE: Triplet Alignment Loss, Confident Consensus Division, and the method on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tir.training import ccd
from tir.training.losses_rde import tal_per_sample, weighted_tal
from tir.training.methods.base import EpochContext, StepContext
from tir.training.methods.rde import Rde
from tir.training.model import build_backbone
from tir.training.random_batch import random_batch

torch.set_num_threads(1)


def tal_loop(image, text, pids, tau, margin):
    """The TAL formula written out pair by pair."""
    image = torch.nn.functional.normalize(image, dim=-1)
    text = torch.nn.functional.normalize(text, dim=-1)
    n = len(pids)
    scores = (text @ image.t()).tolist()
    losses = []
    for i in range(n):
        total = 0.0
        for rows in (scores, [list(col) for col in zip(*scores)]):  # text->image, then image->text
            positives = [j for j in range(n) if pids[j] == pids[i]]
            negatives = [j for j in range(n) if pids[j] != pids[i]]
            z = sum(math.exp(rows[i][j] / tau) for j in positives)
            pulled = sum(math.exp(rows[i][j] / tau) / z * rows[i][j] for j in positives)
            pushed = tau * math.log(sum(math.exp(rows[i][j] / tau) for j in negatives)) if negatives else -math.inf
            total += max(0.0, margin - pulled + pushed)
        losses.append(total)
    return torch.tensor(losses)


@pytest.mark.parametrize("tau", [0.015, 0.5])
def test_tal_matches_loop(tau: float) -> None:
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    pids = torch.tensor([0, 1, 0, 2, 2, 3])
    got = tal_per_sample(image, text, pids, tau=tau, margin=0.1)
    assert torch.allclose(got.double(), tal_loop(image, text, pids.tolist(), tau, 0.1).double(), atol=1e-4)


def test_tal_without_negatives_is_zero_with_finite_gradient() -> None:
    image = torch.randn(3, 4, requires_grad=True)
    loss, per_sample = weighted_tal(image, torch.randn(3, 4), torch.zeros(3, dtype=torch.long), torch.ones(3))
    loss.backward()
    assert per_sample.eq(0).all() and torch.isfinite(image.grad).all()


def test_tal_weights_select_pairs() -> None:
    generator = torch.Generator().manual_seed(1)
    image, text = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    pids = torch.arange(5)
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    loss, per_sample = weighted_tal(image, text, pids, weights)
    assert loss.item() == pytest.approx(per_sample[[0, 2, 4]].sum().item(), rel=1e-6)


def synthetic_losses(seed: int, n: int = 2000, noise: float = 0.4):
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < noise
    losses = np.where(noisy, rng.normal(3.0, 0.4, n), rng.normal(1.0, 0.3, n))
    return losses, noisy


def test_gmm_recovers_noisy_set() -> None:
    losses, noisy = synthetic_losses(0)
    clean = ccd.clean_probability(losses, seed=0) > 0.5
    scores = ccd.detection_scores(~clean, noisy)
    assert scores["precision"] > 0.98 and scores["recall"] > 0.98
    weights, _, _ = ccd.divide(losses, losses.copy(), seed=0)  # agreeing embeddings: no coin flips
    assert np.array_equal(weights == 0, ~clean)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pairs_tied_at_zero_loss_do_not_collapse_the_clean_component() -> None:
    # A hinge loss is exactly 0 for the pairs the model fits: a point mass beside the other clean pairs
    rng = np.random.default_rng(1)
    n = 4000
    noisy = rng.random(n) < 0.5
    clean_losses = np.where(rng.random(n) < 0.45, 0.0, rng.exponential(0.03, n))
    losses = np.where(noisy, rng.normal(0.4, 0.2, n).clip(0.1, None), clean_losses)
    fixed = ccd.detection_scores(~(ccd.clean_probability(losses, seed=0) > 0.5), noisy)
    assert fixed["precision"] > 0.9 and fixed["recall"] > 0.95
    published = ccd.GmmSettings(fit_floor=True)  # RDE's fit: the low component sits on the zeros alone
    collapsed = ccd.detection_scores(~(ccd.clean_probability(losses, seed=0, gmm=published) > 0.5), noisy)
    assert collapsed["precision"] < 0.75 and collapsed["recall"] > 0.95
    assert ccd.clean_probability(losses, seed=0)[losses == 0].min() == 1.0


def test_consensus_rule_and_determinism() -> None:
    a = np.array([True, True, False, False] * 500)
    b = np.array([True, False, True, False] * 500)
    weights = ccd.consensus_weights(a, b, seed=3)
    assert (weights[a & b] == 1).all() and (weights[~a & ~b] == 0).all()
    disagree = weights[a != b]
    assert 0.4 < disagree.mean() < 0.6  # a fair coin
    assert np.array_equal(weights, ccd.consensus_weights(a, b, seed=3))
    assert not np.array_equal(weights, ccd.consensus_weights(a, b, seed=4))
    losses, _ = synthetic_losses(2)
    first, second = ccd.divide(losses, losses[::-1].copy(), seed=5), ccd.divide(losses, losses[::-1].copy(), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))


def test_minmax_and_constant_losses() -> None:
    assert ccd.minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert ccd.clean_probability(np.full(10, 0.7)).tolist() == [1.0] * 10
    assert ccd.detection_scores(np.array([True, False]), np.array([False, False])) == {"precision": 0.0, "recall": 1.0}


def tiny_rde(**options) -> Rde:
    torch.manual_seed(0)
    return Rde(build_backbone("tir-micro"), num_classes=4, tse_dim=32, **options)


def batch(n: int = 6, start: int = 0) -> dict[str, torch.Tensor]:
    return random_batch(n, (64, 32), 12, words=[5] * n, seed=start, first_index=start)


def test_rde_forward_backward_and_ccd_pass() -> None:
    method = tiny_rde()
    method.train()
    out = method(batch(), StepContext(epoch=0, step=0, seed=0))
    (out["loss_bge"] + out["loss_tse"]).backward()
    assert method.image_select.linear.weight.grad is not None
    assert out["trusted"].item() == 1.0

    truth = torch.zeros(12, dtype=torch.bool)
    truth[[1, 7]] = True
    context = EpochContext(epoch=0, device=torch.device("cpu"), seed=0, num_train=12,
                           clean_batches=lambda: iter([batch(6, 0), batch(6, 6)]), noise_truth=truth)
    metrics = method.on_epoch_start(context)
    assert method.training  # train mode restored
    assert {"ccd_precision", "ccd_recall", "ccd_trusted"} <= set(metrics)
    assert method.pair_weights.shape == (12,) and set(method.pair_weights.tolist()) <= {0.0, 1.0}
    again = tiny_rde()
    again.load_state_dict(method.state_dict())
    assert again.on_epoch_start(context) == metrics  # deterministic for (seed, epoch)
    assert torch.equal(again.pair_weights, method.pair_weights)

    images, text = method.encode_image(batch()["images"]), method.encode_text(batch()["text"])
    assert set(images) == {"global", "selected"}
    assert method.similarity(text, images).shape == (6, 6)


def test_rde_eval_mode_train_flag_reproduces_published_behaviour() -> None:
    method = tiny_rde(rde_eval_mode_train=True, ccd_warmup_epochs=1)
    context = EpochContext(epoch=0, device=torch.device("cpu"), seed=0, num_train=6,
                           clean_batches=lambda: iter([batch(6, 0)]))
    method.train()
    assert method.on_epoch_start(context) == {}  # warm-up: no division yet
    assert method.training and method.pair_weights is None
    method.on_epoch_start(EpochContext(**{**context.__dict__, "epoch": 1}))
    method.train()
    assert not method.training  # left in eval mode, as the published code does


def test_rde_eval_mode_train_changes_the_loss() -> None:
    # the token-selection BatchNorm runs on its running statistics when the method stays in eval mode
    context = EpochContext(epoch=0, device=torch.device("cpu"), seed=0, num_train=6,
                           clean_batches=lambda: iter([batch(6, 0)]))
    losses = {}
    for flag in (False, True):
        method = tiny_rde(rde_eval_mode_train=flag)
        method.train()
        method.on_epoch_start(context)
        method.train()
        assert method.training != flag
        out = method(batch(6, 0), StepContext(epoch=0, step=0, seed=0))
        losses[flag] = out["loss_tse"].item(), out["loss_bge"].item()
    assert losses[False][1] == pytest.approx(losses[True][1], rel=1e-6)  # the backbone has no BatchNorm
    assert abs(losses[False][0] - losses[True][0]) > 1e-4


def _ccd_rank(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    method = tiny_rde()
    shard = [batch(6, 6 * rank)]  # rank r scores positions 6r .. 6r+5
    context = EpochContext(epoch=2, device=torch.device("cpu"), seed=7, num_train=12, clean_batches=lambda: iter(shard))
    method.on_epoch_start(context)
    torch.save(method.pair_weights, f"{out}.{rank}")
    dist.destroy_process_group()


def test_ccd_under_two_processes_matches_one(tmp_path) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "weights")
    mp.spawn(_ccd_rank, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    single = tiny_rde()  # each rank's batch of 6 is scored within the gathered batch of 12, as in training
    both = [batch(6, 0), batch(6, 6)]
    combined = {key: torch.cat([part[key] for part in both]) for key in both[0]}
    single.on_epoch_start(EpochContext(epoch=2, device=torch.device("cpu"), seed=7, num_train=12,
                                       clean_batches=lambda: iter([combined])))
    for rank in range(2):
        assert torch.equal(torch.load(f"{out}.{rank}"), single.pair_weights)


def test_recipes_resolve_and_build() -> None:
    from pathlib import Path

    from tir.training import config as config_io
    from tir.training.methods.base import create_method

    recipes = sorted(Path(__file__).parents[1].glob("configs/rde_*.yaml"))
    assert len(recipes) == 9
    for recipe in recipes:
        config = config_io.resolve(recipe, overrides=["model=tir-micro", "method_options.tse_dim=16"])
        assert config["method"] == "rde" and config["method_options"]["tau"] == 0.015
        assert (config["noise"] is None) == recipe.stem.endswith("noise0")
    assert isinstance(create_method("rde", build_backbone("tir-micro"), 3, config["method_options"]), Rde)


def test_a_division_that_finds_no_noise_still_calls_the_least_likely_pairs_noisy() -> None:
    # RDE (after NCR): when every posterior says clean, the least likely 1/100 are called noisy
    probability = np.linspace(0.6, 1.0, 250)
    losses = np.linspace(1.0, 0.0, 250)
    clean = ccd.split_clean(probability, losses, 0.01)
    assert np.flatnonzero(~clean).tolist() == [0, 1, 2]  # ceil(250 / 100) pairs, the least likely
    assert ccd.split_clean(probability, losses, 0.0).all()
    tied = ccd.split_clean(np.ones(5), np.array([0.0, 0.3, 0.0, 0.9, 0.1]), 0.2)  # ties: the highest loss goes
    assert np.flatnonzero(~tied).tolist() == [3]
    assert ccd.split_clean(np.ones(4), np.full(4, 0.5), 0.5).all()  # equal losses: nothing to rank
    found = ccd.split_clean(np.array([0.2, 0.9, 0.8]), np.array([3.0, 1.0, 1.5]), 0.5)
    assert found.tolist() == [False, True, True]  # a division that found noise is left as it is
    with pytest.raises(ValueError):
        ccd.split_clean(probability, losses, 1.0)
    # end to end: a clean loss vector with a single mode
    losses = np.random.default_rng(0).normal(1.0, 0.05, 1000)
    weights, clean_a, _ = ccd.divide(losses, losses.copy(), seed=0, min_noisy_fraction=0.01)
    assert 10 <= (~clean_a).sum() and (weights == 0).sum() >= 10


def test_rde_rejects_a_bad_minimum_noisy_share() -> None:
    from tir.errors import UserError

    with pytest.raises(UserError, match="ccd_min_noisy_fraction"):
        tiny_rde(ccd_min_noisy_fraction=1.5)


def test_txt_aug_is_on_by_default_and_switches_off() -> None:
    text_seen = {}
    for flag in (True, False):
        method = tiny_rde(txt_aug=flag)
        text_seen[flag] = method._augmented_text(batch(6, 0), StepContext(epoch=0, step=0, seed=0))
    assert torch.equal(text_seen[False], batch(6, 0)["text"])
    assert not torch.equal(text_seen[True], text_seen[False])
    assert tiny_rde().txt_aug
