"""CCMA: Differential Attention, IMAL and CMPM against their formulas, and the method on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from train_support import micro_batch

from tir.errors import UserError
from tir.training.heads.diff_attention import DifferentialAttention
from tir.training.losses_ccma import cmpm, imal
from tir.training.methods.base import StepContext, create_method
from tir.training.model import build_backbone

torch.set_num_threads(1)


def _attention(**options) -> DifferentialAttention:
    torch.manual_seed(0)
    return DifferentialAttention(16, heads=2, **options).eval()


def test_lambda_zero_is_plain_attention_of_the_first_query_key_pair() -> None:
    attention = _attention(lambda_init=0.0)
    with torch.no_grad():
        attention.lambda_q2.copy_(attention.lambda_q1)
        attention.lambda_k2.copy_(attention.lambda_k1)
    assert attention.lambda_value().item() == 0.0
    query, context = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    # plain multi-head attention: head h uses query/key sub-head 2h and value channels 8h .. 8h+7
    q = attention.q_proj(query).view(3, 5, 4, 4)[:, :, 0::2].transpose(1, 2)
    k = attention.k_proj(context).view(3, 7, 4, 4)[:, :, 0::2].transpose(1, 2)
    v = attention.v_proj(context).view(3, 7, 2, 8).transpose(1, 2)
    heads = F.scaled_dot_product_attention(q, k, v)
    heads = heads * torch.rsqrt(heads.pow(2).mean(-1, keepdim=True) + 1e-5) * attention.head_norm.weight
    expected = attention.out_proj(heads.transpose(1, 2).reshape(3, 5, 16))
    assert torch.allclose(attention(query, context), expected, atol=1e-5)


def test_a_nonzero_lambda_subtracts_the_second_map() -> None:
    attention = _attention()
    query, context = torch.randn(2, 3, 16), torch.randn(2, 4, 16)
    q = attention.q_proj(query).view(2, 3, 4, 4).transpose(1, 2) / 2.0  # sqrt(4)
    k = attention.k_proj(context).view(2, 4, 4, 4).transpose(1, 2)
    maps = F.softmax(q @ k.transpose(-1, -2), dim=-1)
    expected = maps[:, 0::2] - attention.lambda_value() * maps[:, 1::2]
    assert torch.allclose(attention.weights(query, context), expected, atol=1e-6)
    assert abs(attention.lambda_value().item() - 0.8) < 0.1  # exp(q1.k1) - exp(q2.k2) is small at start


def test_padding_gets_no_weight_and_does_not_change_the_output() -> None:
    attention = _attention()
    query, context = torch.randn(2, 3, 16), torch.randn(2, 6, 16)
    valid = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    weights = attention.weights(query, context, valid)
    assert (weights[1, :, :, 3:] == 0).all() and (weights[0] != 0).all()
    changed = context.clone()
    changed[1, 3:] = 100 * torch.randn(3, 16)
    assert torch.equal(attention(query, context, valid)[1], attention(query, changed, valid)[1])
    alone = attention(query[1:], context[1:, :3])  # the same row without its padding at all
    assert torch.allclose(attention(query, context, valid)[1:], alone, atol=1e-6)


def test_attention_rejects_a_width_that_does_not_split() -> None:
    with pytest.raises(ValueError, match="sub-heads"):
        DifferentialAttention(20, heads=3)


def imal_reference(image, text, logit_scale, temperature=0.5, gamma=0.05, kl_weight=0.005, eps=1e-8) -> float:
    """CCMA's IMAL (objectives.py 120-184) written out element by element in floats."""
    n = len(image)
    unit = lambda rows: [[x / max(math.sqrt(sum(y * y for y in row)), eps) for x in row] for row in rows]  # noqa: E731
    image, text = unit(image.tolist()), unit(text.tolist())
    sim = [[min(max(sum(a * b for a, b in zip(image[i], text[j])), -10), 10) for j in range(n)] for i in range(n)]
    scores = [[math.exp(min(max(sim[i][j] / temperature, -10), 10)) for j in range(n)] for i in range(n)]
    row = [sum(scores[i]) + eps for i in range(n)]
    col = [sum(scores[i][j] for i in range(n)) + eps for j in range(n)]
    loss_cm = sum(-math.log((scores[i][i] + eps) / row[i]) for i in range(n)) / n
    topo = [[math.exp(min(max(logit_scale * sim[i][j], -10), 10)) for j in range(n)] for i in range(n)]
    loss_im = sum(-math.log((topo[i][i] + eps) / (sum(topo[i]) + eps)) for i in range(n)) / n
    uniform = 1 / (n * n + eps)
    kl_row = sum(sum(uniform * (math.log(uniform) - math.log(scores[i][j] / row[i] + eps)) for j in range(n)) for i in range(n)) / n
    kl_col = sum(sum(uniform * (math.log(uniform) - math.log(scores[i][j] / col[j] + eps)) for i in range(n)) for j in range(n)) / n
    return loss_cm + gamma * loss_im + kl_weight * (kl_row + kl_col) / 2


def _features(n: int = 6, dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    text = image + 0.8 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return image, text, torch.tensor([0, 0, 1, 2, 2, 3])


@pytest.mark.parametrize("scale", [1.0, 3.0, 50.0])  # 50: most exponents hit the reference's clamp at 10
def test_imal_equals_the_reference_formula(scale: float) -> None:
    image, text, pids = _features()
    assert imal(image, text, pids, scale).item() == pytest.approx(imal_reference(image, text, scale), rel=1e-5)
    assert imal(image, text, pids, scale, temperature=0.2, gamma=0.5, kl_weight=1.0).item() == pytest.approx(
        imal_reference(image, text, scale, temperature=0.2, gamma=0.5, kl_weight=1.0), rel=1e-5)


def test_imal_paper_intra_term_is_the_kl_to_same_identity_rows_within_each_modality() -> None:
    image, text, pids = _features()
    base = imal(image, text, pids, 3.0, gamma=0.0)
    same = (pids[:, None] == pids[None]).double()
    target = same / same.sum(1, keepdim=True)
    intra = 0.0
    for features in (image, text):
        unit = F.normalize(features, dim=-1)
        p = F.softmax(3.0 * unit @ unit.t(), dim=1)
        intra += (p * (p.log() - (target + 1e-8).log())).sum(1).mean() / 2
    paper = imal(image, text, pids, 3.0, intra_modal="paper", gamma=0.5)
    assert paper.item() == pytest.approx((base + 0.5 * intra).item(), rel=1e-6)
    shuffled = torch.tensor([3, 0, 1, 2, 2, 0])  # the paper term depends on identities, the reference one does not
    assert imal(image, text, shuffled, 3.0, intra_modal="paper") != imal(image, text, pids, 3.0, intra_modal="paper")
    assert imal(image, text, shuffled, 3.0) == imal(image, text, pids, 3.0)


def test_cmpm_equals_the_reference_formula() -> None:
    image, text, pids = _features()
    n, eps = len(pids), 1e-8
    expected = 0.0
    for source, target in ((image, text), (text, image)):
        proj = source @ F.normalize(target, dim=-1).t()
        for i in range(n):
            same = [float(pids[i] == pids[j]) for j in range(n)]
            norm = math.sqrt(sum(same))
            log_z = math.log(sum(math.exp(proj[i, j].item()) for j in range(n)))
            for j in range(n):
                p = math.exp(proj[i, j].item() - log_z)
                expected += p * (proj[i, j].item() - log_z - math.log(same[j] / norm + eps)) / n
    assert cmpm(image, text, pids).item() == pytest.approx(expected, rel=1e-6)


def _ccma(**options):
    torch.manual_seed(0)
    return create_method("ccma", build_backbone("tir-micro"), num_classes=3, options=options)


@pytest.mark.parametrize("intra_modal", ["reference", "paper"])
def test_every_new_parameter_gets_a_gradient(intra_modal: str) -> None:
    method = _ccma(intra_modal=intra_modal).train()
    out = method(micro_batch(), StepContext(epoch=0, step=0, seed=1))
    assert {"loss_itc", "loss_sdm", "loss_imal", "loss_cmpm", "loss_id", "loss_mlm"} <= set(out)
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    for module in (method.text_guided_image, method.image_guided_text):
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for module in method.new_modules():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_guided_vectors_ignore_caption_padding() -> None:
    method = _ccma().eval()
    batch = micro_batch()
    image = method.backbone.encode_image(batch["images"])
    caption = method.backbone.encode_text(batch["text"])
    first, _ = method.guided(image, caption, batch["text"])
    longer = F.pad(batch["text"], (0, 6))  # more padding: the same guided vectors
    again, _ = method.guided(image, method.backbone.encode_text(longer), longer)
    assert torch.allclose(first, again, atol=1e-5)


def test_ccma_tests_by_global_features_and_checks_its_options() -> None:
    method, batch = _ccma().eval(), micro_batch()
    text, images = method.encode_text(batch["text"]), method.encode_image(batch["images"])
    assert set(text) == set(images) == {"global"}
    assert method.similarity(text, images).shape == (4, 4)
    with pytest.raises(UserError, match="intra_modal"):
        _ccma(intra_modal="both")
    with pytest.raises(UserError, match="diff_heads"):
        _ccma(diff_heads=3)


@pytest.mark.parametrize("dataset", ["CUHK-PEDES", *(pytest.param(name, marks=pytest.mark.slow) for name in ("ICFG-PEDES", "RSTPReid"))])
def test_ccma_trains_and_evaluates_on_each_format(dataset: str, tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from tir.cli import cli

    runner = CliRunner()
    raw, manifests = tmp_path / "raw", tmp_path / "manifests"
    for args in (["synth", dataset, "--out", str(raw), "--ids", "12", "--images-per-id", "2", "--size", "32x64", "--jobs", "1"],
                 ["prepare", dataset, "--root", str(raw), "--out", str(manifests / dataset), "--jobs", "1"],
                 ["train", "--dataset", dataset, "--manifests", str(manifests), "--model", "tir-micro", "--method", "ccma",
                  "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs"),
                  "--name", "ccma", "--set", "image_size=[64, 32]", "--set", "text_length=24",
                  "--set", "max_steps_per_epoch=2", "--set", "method_options.intra_modal=paper"],
                 ["eval", str(tmp_path / "runs" / "ccma"), "--json", str(tmp_path / "eval.json"), "--device", "cpu", "--no-plot"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, f"tir {args[0]}: {result.output}"
    metrics = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert 0 < metrics["R10"] <= 100 and 0 < metrics["mAP"] <= 100
    logged = [json.loads(line) for line in (tmp_path / "runs" / "ccma" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_imal" in json.dumps(row) for row in logged)


def test_recipes_resolve_to_the_reference_settings_and_build() -> None:
    from pathlib import Path

    from tir.training import config as config_io
    from tir.training.build import build_method, check_config

    recipes = sorted(Path(__file__).resolve().parents[1].glob("configs/ccma_*.yaml"))
    assert [p.stem for p in recipes] == ["ccma_cuhk-pedes", "ccma_icfg-pedes", "ccma_rstpreid"]
    for recipe in recipes:
        config = config_io.resolve(recipe)
        check_config(config)
        assert config["method"] == "ccma" and (config["optimizer"], config["eps"]) == ("adam", 1e-3)
        assert (config["batch_size"], config["epochs"], config["image_size"]) == (64, 60, [384, 128])
        assert config["method_options"]["temperature"] == 0.02
    config = config_io.resolve(recipes[0], overrides=["model=tir-micro", "image_size=[64, 32]", "quick_gelu=false"])
    method = build_method(config, num_classes=2, with_pretrained=False)
    assert method.imal_options == {"intra_modal": "reference", "temperature": 0.5, "gamma": 0.05, "kl_weight": 0.005}
