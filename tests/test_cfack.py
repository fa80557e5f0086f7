"""cfack: EMA, the six-pair loss, hard negatives, re-ranking, the CNN branch, masking and the method on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from train_support import micro_batch

from tir.errors import UserError
from tir.training.heads.cnn_branch import CnnBranch
from tir.training.heads.cross_modal import CrossModalMLM
from tir.training.heads.fusion_encoder import FusionEncoder
from tir.training.losses_cfack import matching_loss
from tir.training.losses_cfack import hard_negatives, identity_contrast, six_pair_contrast
from tir.training.methods.base import StepContext, create_method
from tir.training.mlm import capped_word_mask, token_words
from tir.training.model import build_backbone
from tir.training.optim import parameter_groups
from tir.training.metrics import top_indices
from tir.training.rerank import reranked_similarity
from tir.training.strong_view import StrongView

torch.set_num_threads(1)


def tiny_cfack(**options):
    torch.manual_seed(0)
    options.setdefault("cnn", "none")
    return create_method("cfack", build_backbone("tir-micro"), num_classes=2, options=options)


# ----------------------------------------------------------------------------- EMA
def test_momentum_update_is_the_ema_formula_and_never_trained() -> None:
    method = tiny_cfack(momentum=0.9)
    online = dict(method.backbone.named_parameters())
    before = {name: p.detach().clone() for name, p in method.momentum.module.named_parameters()}
    assert all(torch.equal(before[name], online[name]) for name in before)  # starts as a copy
    with torch.no_grad():  # an optimiser step
        for p in method.backbone.parameters():
            p.add_(torch.randn_like(p))
    method.after_optimizer_step()
    for name, p in method.momentum.module.named_parameters():
        expected = 0.9 * before[name] + 0.1 * online[name].detach()
        assert torch.allclose(p, expected, atol=1e-6, rtol=0), name
        assert not p.requires_grad
    trained = {id(p) for group in parameter_groups(method, {"lr": 1, "new_module_lr_factor": 2, "bias_lr_factor": 1,
                                                            "weight_decay": 0}) for p in group["params"]}
    assert not trained & {id(p) for p in method.momentum.parameters()}
    assert any(name.startswith("momentum.module.") for name in method.state_dict())  # saved in checkpoints


# ----------------------------------------------------------------------------- six-pair loss
def contrast_loop(a: torch.Tensor, b: torch.Tensor, pids: list[int], t: float) -> float:
    """The reference's get_contrastive_loss(a, b, idx) written out entry by entry."""
    n = len(pids)
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            logits = [float(x[i] @ y[j]) / t for j in range(n)]
            top = max(logits)
            log_z = top + math.log(sum(math.exp(v - top) for v in logits))
            same = [j for j in range(n) if pids[j] == pids[i]]
            total += -sum((logits[j] - log_z) / len(same) for j in same) / n
    return total / 2


def test_six_pair_loss_equals_a_direct_transcription() -> None:
    generator = torch.Generator().manual_seed(0)
    feats = [torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=-1) for _ in range(5)]
    oi, ot, mi, mt, cnn = feats
    pids = torch.tensor([0, 1, 0, 2, 2, 3])
    t = torch.tensor(0.07)
    loss, terms = six_pair_contrast(oi, ot, mi, mt, pids, t, cnn, cnn_weight=0.5)
    p = pids.tolist()
    pairs = [(oi, ot), (oi, mt), (mi, ot), (mi, mt), (oi, mi), (ot, mt)]
    expected = (sum(contrast_loop(a, b, p, 0.07) for a, b in pairs) + 0.5 * contrast_loop(oi, cnn, p, 0.07)) / 6.5
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms["oi_cnn"].item() == pytest.approx(contrast_loop(oi, cnn, p, 0.07), rel=1e-5)
    without, _ = six_pair_contrast(oi, ot, mi, mt, pids, t)
    assert without.item() == pytest.approx(sum(contrast_loop(a, b, p, 0.07) for a, b in pairs) / 6, rel=1e-5)


def test_momentum_momentum_term_trains_only_the_temperature() -> None:
    temperature = torch.nn.Parameter(torch.tensor(0.07))
    mi, mt = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    identity_contrast(mi, mt, torch.tensor([0, 0, 1, 2]), temperature).backward()
    assert temperature.grad is not None and temperature.grad.abs() > 0


# ----------------------------------------------------------------------------- hard negatives
def test_hard_negatives_are_never_of_the_same_identity() -> None:
    pids = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    for seed in range(50):
        generator = torch.Generator().manual_seed(seed)
        image = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=-1)
        text = torch.nn.functional.normalize(image + 0.1 * torch.randn(8, 16, generator=generator), dim=-1)
        image_for_text, text_for_image, text_ok, image_ok = hard_negatives(image, text, pids, 0.07, generator)
        assert text_ok.all() and image_ok.all()
        assert (pids[image_for_text] != pids).all() and (pids[text_for_image] != pids).all()
    alone = hard_negatives(image[:3], text[:3], torch.zeros(3, dtype=torch.long), 0.07)  # one identity: no negative
    assert not alone[2].any() and not alone[3].any()


def test_hard_negatives_follow_similarity() -> None:
    image = torch.eye(4)
    text = torch.eye(4)
    text[0] = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 0.1, 0.0]), dim=0)  # caption 0 resembles image 1
    draws = [hard_negatives(image, text, torch.arange(4), 0.01, torch.Generator().manual_seed(s))[0][0].item()
             for s in range(20)]
    assert draws.count(1) >= 19  # image 1 (other identity, most similar) is caption 0's hard negative


def test_hardness_zero_draws_negatives_whatever_the_similarity() -> None:
    pids = torch.tensor([0, 0, 1, 2, 3, 4])
    generator = torch.Generator().manual_seed(0)
    one = torch.nn.functional.normalize(torch.randn(2, 6, 8, generator=generator), dim=-1)
    other = torch.nn.functional.normalize(torch.randn(2, 6, 8, generator=generator), dim=-1)
    seeds = range(30)
    uniform = [hard_negatives(*one, pids, 0.01, torch.Generator().manual_seed(s), hardness=0.0) for s in seeds]
    also_uniform = [hard_negatives(*other, pids, 0.01, torch.Generator().manual_seed(s), hardness=0.0) for s in seeds]
    hard = [hard_negatives(*one, pids, 0.01, torch.Generator().manual_seed(s)) for s in seeds]
    hard_other = [hard_negatives(*other, pids, 0.01, torch.Generator().manual_seed(s)) for s in seeds]
    for a, b in zip(uniform, also_uniform):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the features do not matter
        assert (pids[a[0]] != pids).all() and (pids[a[1]] != pids).all()
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(hard, hard_other))  # they do for CFACK's sampler
    counts = torch.bincount(torch.stack([draw[0][2] for draw in uniform]), minlength=6)  # text 2 (pid 1)
    assert counts[2] == 0 and (counts[[0, 1, 3, 4, 5]] > 0).all()


# ----------------------------------------------------------------------------- re-ranking
def test_reranking_changes_only_the_top_k_of_each_ranking() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 20, (7, 40), generator=generator).float() / 20  # many ties
    k = 5
    new_scores = torch.randn(7, k, generator=generator)
    reranked = reranked_similarity(scores, k, lambda candidates: new_scores)
    before = torch.sort(-scores, dim=1, stable=True).indices
    after = torch.sort(-reranked, dim=1, stable=True).indices
    assert torch.equal(after[:, k:], before[:, k:])
    assert torch.equal(after[:, :k].sort(dim=1).values, before[:, :k].sort(dim=1).values)
    expected = before[:, :k].gather(1, new_scores.argsort(dim=1, descending=True))
    assert torch.equal(after[:, :k], expected)
    assert torch.equal(top_indices(scores, k), before[:, :k])
    whole = reranked_similarity(scores, 100, lambda c: torch.zeros(c.shape))  # k beyond the gallery, ties kept
    assert torch.equal(torch.sort(-whole, dim=1, stable=True).indices, before)


def test_evaluation_reports_plain_and_reranked_metrics_in_chunks() -> None:
    from tir.training.evaluation import Reranking, rank_features

    generator = torch.Generator().manual_seed(1)
    text = {"global": torch.nn.functional.normalize(torch.randn(9, 8, generator=generator), dim=-1)}
    image = {"global": torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=-1)}
    query_pids, gallery_pids = torch.arange(9) % 3, torch.arange(6) % 3
    similarity = lambda t, i: t["global"] @ i["global"].t()  # noqa: E731

    def oracle(queries, gallery, candidates):  # a perfect matching head: hits first
        return (gallery_pids[candidates] == queries["pid"][:, None]).float()

    text["pid"] = query_pids.float()
    results = []
    for chunk in (2, 9):
        reranking = Reranking(6, lambda q, g, c: oracle({"pid": q["pid"].long()}, g, c))
        plain = rank_features(similarity, text, image, query_pids, gallery_pids, chunk_size=chunk, reranking=reranking)
        results.append((plain, reranking.ranks.merged()))
    (plain, reranked), (plain_whole, reranked_whole) = results
    assert torch.equal(plain.first_rank, plain_whole.first_rank) and torch.equal(reranked.ap, reranked_whole.ap)
    assert (reranked.first_rank == 1).all() and (reranked.ap == 1).all()  # every hit moved to the top
    assert not (plain.ap == 1).all()


# ----------------------------------------------------------------------------- parts
@pytest.mark.parametrize("fusion_type", [CrossModalMLM, FusionEncoder])
def test_fusion_ignores_padding_when_given_the_mask(fusion_type) -> None:
    torch.manual_seed(0)
    fusion = fusion_type(16, 50, depth=2).eval()
    text, image = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    padding = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    changed = text.clone()
    changed[0, 4:] = torch.randn(2, 16)
    a, b = fusion.fuse(text, image, padding), fusion.fuse(changed, image, padding)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6) and torch.allclose(a[1], b[1])
    assert not torch.allclose(fusion.fuse(text, image)[0, :4], fusion.fuse(changed, image)[0, :4])


def test_fusion_only_encoder_fuses_and_refuses_mlm_logits() -> None:
    fusion = FusionEncoder(16, None, depth=1).eval()
    text, image = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    assert fusion.fuse(text, image).shape == (2, 6, 16)
    assert not any(name.startswith("head") for name, _ in fusion.named_parameters())
    with pytest.raises(TypeError, match="fuse"):
        fusion(text, image)


# ----------------------------------------------------------------------------- matching head
def test_match_logit_depends_on_the_caption_even_when_every_image_token_is_the_same() -> None:
    method = tiny_cfack().eval()
    dim = method.backbone.embed_dim
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 1, dim, generator=generator).expand(4, 5, dim)  # one image, all tokens alike
    text = torch.randn(4, 6, dim, generator=generator)  # four different captions
    with torch.no_grad():
        logits = method._match_logits(text, torch.zeros(4, 6, dtype=torch.bool), image)
    assert (logits[1:] - logits[0]).abs().max() > 1e-3


class AttributeMatching:
    """A small fixed matching problem: a caption names one of ``values`` values in each of ``slots`` slots
    (one token per slot, then an end token summing them); an image is ``image_length`` copies of one token
    that sums its values' embeddings. Each caption comes with its image and two images that differ from
    it in one slot, so neither the caption nor the image alone says whether a pair matches (loss floor
    without fusion: H(1/3))."""

    def __init__(self, dim: int, slots: int = 3, values: int = 4, image_length: int = 4) -> None:
        generator = torch.Generator().manual_seed(0)
        self.text_vocab = torch.randn(slots, values, dim, generator=generator)
        self.image_vocab = torch.randn(slots, values, dim, generator=generator)
        self.slot_position = torch.randn(slots, dim, generator=generator)
        self.slots, self.values, self.image_length = slots, values, image_length

    def _changed(self, codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = torch.arange(codes.shape[0])
        slot = torch.randint(0, self.slots, (codes.shape[0],), generator=generator)
        changed = codes.clone()
        changed[rows, slot] = (codes[rows, slot] + torch.randint(1, self.values, (codes.shape[0],), generator=generator)) % self.values
        return changed

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(caption tokens [3n, slots + 1, D], image tokens [3n, image_length, D], labels [3n]: 1 = match)."""
        codes = torch.randint(0, self.values, (n, self.slots), generator=generator)
        slots = torch.arange(self.slots)
        words = self.text_vocab[slots, codes] + self.slot_position
        captions = torch.cat([words, words.sum(dim=1, keepdim=True)], dim=1).repeat(3, 1, 1)
        images = torch.cat([codes, self._changed(codes, generator), self._changed(codes, generator)])
        image_tokens = self.image_vocab[slots, images].sum(dim=1, keepdim=True).expand(-1, self.image_length, -1)
        return captions, image_tokens, (torch.arange(3 * n) < n).long()


def test_matching_head_learns_a_small_fixed_problem_below_the_prior() -> None:
    method = tiny_cfack(fusion_depth=1)
    problem = AttributeMatching(method.backbone.embed_dim)
    parameters = [*method.fusion.parameters(), *method.itm_head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    generator = torch.Generator().manual_seed(1)

    def loss_of(n: int) -> torch.Tensor:
        captions, images, labels = problem.batch(n, generator)
        logits = method._match_logits(captions, torch.zeros(captions.shape[:2], dtype=torch.bool), images)
        return matching_loss(logits[labels == 1], logits[labels == 0])

    for _ in range(150):
        optimizer.zero_grad()
        loss_of(32).backward()
        optimizer.step()
    prior = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3)
    with torch.no_grad():
        held_out = loss_of(256).item()  # fresh pairs
    assert held_out < 0.6 * prior, (held_out, prior)


def test_mlm_masks_whole_words_at_most_max_masks_and_never_padding() -> None:
    batch = micro_batch(8, length=24)
    text = batch["text"]
    words = token_words(text, (49406, 49407))
    masked, labels = capped_word_mask(text, words, batch["pair_index"], epoch=0, seed=1, mask_token_id=49408,
                                      vocab_size=49409, special_ids=(49406, 49407), probability=0.9, max_masks=3)
    chosen = labels != -100
    assert (chosen.sum(1) <= 3).all() and (chosen.sum(1) >= 1).all()
    assert not (chosen & (words < 0)).any()  # start, end and padding never masked
    assert torch.equal(masked[~chosen], text[~chosen])
    again = capped_word_mask(text, words, batch["pair_index"], epoch=0, seed=1, mask_token_id=49408,
                             vocab_size=49409, special_ids=(49406, 49407), probability=0.9, max_masks=3)
    assert torch.equal(again[0], masked)


def test_strong_view_is_seeded_per_pair_and_leaves_the_global_rng_alone() -> None:
    images = torch.randn(4, 3, 64, 32)
    view = StrongView()
    torch.manual_seed(5)
    first = view(images, torch.arange(4), seed=1, epoch=0)
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), after)
    swapped = view(images.flip(0), torch.arange(4).flip(0), seed=1, epoch=0)
    assert torch.equal(swapped.flip(0), first)  # a pair gets the same view wherever it sits in the batch
    assert not torch.equal(view(images, torch.arange(4), seed=1, epoch=1), first)
    with pytest.raises(UserError, match="strong_augment"):
        StrongView("uniform")


def test_cnn_branch_loads_a_local_torchvision_checkpoint_or_says_why_not(tmp_path) -> None:
    torch.manual_seed(2)
    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    branch = CnnBranch("resnet18", 16, tmp_path / "resnet18.pt")
    assert torch.equal(branch.trunk.conv1.weight, source.conv1.weight)
    assert branch(torch.randn(2, 3, 64, 32)).shape == (2, 16)
    with pytest.raises(UserError, match="not a file"):
        CnnBranch("resnet18", 16, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        CnnBranch("resnet18", 16, tmp_path / "junk.pt")
    with pytest.raises(UserError, match="does not fit"):
        CnnBranch("mobilenet_v3_small", 16, tmp_path / "resnet18.pt")
    with pytest.raises(UserError, match="unknown cnn"):
        CnnBranch("vgg16", 16)


def test_forward_trains_every_new_module_but_not_the_momentum_encoders() -> None:
    method = tiny_cfack(cnn="mobilenet_v3_small")
    out = method(micro_batch(), StepContext(epoch=0, step=0, seed=1))
    losses = {k: v for k, v in out.items() if k.startswith("loss_")}
    assert set(losses) == {"loss_itc", "loss_itm", "loss_mlm"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for module in method.new_modules():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), type(module).__name__
    assert all(p.grad is None for p in method.momentum.parameters())
    assert out["temperature"].item() == pytest.approx(0.07)
    method.eval()
    batch = micro_batch()
    text, image = method.encode_text(batch["text"]), method.encode_image(batch["images"])
    assert method.similarity(text, image).shape == (4, 4)
    scores = method.rerank(text, image, torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]]))
    assert scores.shape == (4, 2) and torch.isfinite(scores).all()


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="negative_hardness"):
        tiny_cfack(negative_hardness=1.5)
    with pytest.raises(UserError, match="momentum"):
        tiny_cfack(momentum=1.5)
    with pytest.raises(UserError, match="pretrained-cnn"):
        tiny_cfack(cnn="none", pretrained_cnn="x.pt")


def test_recipes_carry_cfacks_schedule_and_build() -> None:
    from pathlib import Path

    from tir.training import config as config_io
    from tir.training.build import check_config

    recipes = {p.stem: p for p in Path(__file__).parents[1].glob("configs/cfack_*.yaml")}
    assert set(recipes) == {"cfack_cuhk-pedes", "cfack_icfg-pedes", "cfack_rstpreid"}
    for stem, recipe in recipes.items():
        config = config_io.resolve(recipe)
        check_config(config)
        assert (config["optimizer"], config["lr"], config["weight_decay"], config["betas"]) == ("adamw", 1e-5, 0.01, [0.9, 0.98])
        assert config["epochs"] == (31 if "cuhk" in stem else 61)
        assert config["warmup_epochs"] == pytest.approx(config["epochs"] / 10) and config["warmup_factor"] == 0
        assert config["method"] == "cfack" and config["method_options"]["cnn"] == "resnet50"
    options = {**config["method_options"], "cnn": "none", "fusion_depth": 1}
    assert create_method("cfack", build_backbone("tir-micro"), 2, options).momentum is not None


def test_matching_head_has_its_own_fusion_unless_told_to_share_mlms() -> None:
    config = {"lr": 1, "new_module_lr_factor": 2, "bias_lr_factor": 1, "weight_decay": 0}
    own, shared = tiny_cfack(fusion_depth=1), tiny_cfack(fusion_depth=1, own_itm_fusion=False)
    assert own.itm_fusion is not own.fusion and own.itm_fusion.head is None
    assert shared.itm_fusion is shared.fusion
    for method in (own, shared):
        trained = [id(p) for group in parameter_groups(method, config) for p in group["params"]]
        assert len(trained) == len(set(trained))  # a shared fusion is trained once
        batch = micro_batch()
        out = method(batch, StepContext(epoch=0, step=0, seed=1))
        out["loss_itm"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.itm_fusion.parameters())
