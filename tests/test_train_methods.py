"""Methods on a tiny model: finite losses and gradients, the mask-leak flag, token selection, model errors."""

from __future__ import annotations

import pytest
import torch
from train_support import micro_batch

from tir.errors import UserError
from tir.training.methods.base import METHODS, StepContext, create_method
from tir.training.model import build_backbone

torch.set_num_threads(1)


def _method(name: str, **options):
    torch.manual_seed(0)
    return create_method(name, build_backbone("tir-micro"), num_classes=2, options=options)


@pytest.mark.parametrize("name", ["clip", "irra", "hkgr"])
def test_forward_gives_finite_losses_and_gradients(name: str) -> None:
    method = _method(name)
    out = method(micro_batch(), StepContext(epoch=0, step=0, seed=1))
    losses = {k: v for k, v in out.items() if k.startswith("loss_")}
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for module in method.new_modules():  # every new module is trained
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    batch = micro_batch()
    similarity = method.similarity(method.encode_text(batch["text"]), method.encode_image(batch["images"]))
    assert similarity.shape == (4, 4) and torch.isfinite(similarity).all()


def test_registry_and_bad_options() -> None:
    assert {"clip", "irra", "hkgr"} <= set(METHODS)
    with pytest.raises(UserError, match="unknown method"):
        create_method("nope", build_backbone("tir-micro"), 2)
    with pytest.raises(UserError, match="bad method_options"):
        create_method("irra", build_backbone("tir-micro"), 2, {"not_an_option": 1})


def test_irra_mask_leak_feeds_the_masked_caption_to_sdm_and_id() -> None:
    batch, context = micro_batch(), StepContext(0, 0, 1)
    clean, leak = _method("irra"), _method("irra", irra_mask_leak=True)
    leak.load_state_dict(clean.state_dict())
    out_clean, out_leak = clean(batch, context), leak(batch, context)
    assert torch.equal(out_clean["loss_mlm"], out_leak["loss_mlm"])
    assert not torch.equal(out_clean["loss_sdm"], out_leak["loss_sdm"])


def test_irra_masking_is_deterministic_per_pair() -> None:
    method, batch = _method("irra"), micro_batch()
    first = method(batch, StepContext(0, 0, 1))["loss_mlm"]
    again = method(batch, StepContext(0, 5, 1))["loss_mlm"]  # same (seed, epoch, pair): same masks
    other = method(batch, StepContext(1, 5, 1))["loss_mlm"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_hkgr_without_plans_is_a_user_error() -> None:
    batch = {k: v for k, v in micro_batch().items() if k not in ("word_ids", "level", "element")}
    with pytest.raises(UserError, match="plan-masks"):
        _method("hkgr")(batch, StepContext(0, 0, 1))


def test_backbone_exposes_attention_and_matches_open_clip() -> None:
    backbone = build_backbone("tir-micro").eval()
    batch = micro_batch()
    text = backbone.encode_text(batch["text"], attention=True)
    image = backbone.encode_image(batch["images"], attention=True)
    assert text["attention"].shape == batch["text"].shape and image["attention"].shape == (4, 9)
    assert torch.allclose(text["attention"].sum(-1), torch.ones(4), atol=1e-5)
    padded = torch.nn.functional.pad(batch["text"], (0, 77 - batch["text"].shape[1]))
    assert torch.allclose(backbone.clip.encode_text(padded), text["global"], atol=1e-5)
    assert torch.allclose(backbone.clip.encode_image(batch["images"]), image["global"], atol=1e-5)
    assert backbone.mask_token_id == 49408 and backbone.vocab_size == 49409


def test_pretrained_file_is_loaded_and_hub_tags_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="never downloads"):
        build_backbone("tir-micro", pretrained="openai")
    torch.manual_seed(3)
    source = build_backbone("tir-micro", image_size=(32, 32))  # a square grid, as CLIP checkpoints have
    state = {k: v for k, v in source.clip.state_dict().items()}
    state["token_embedding.weight"] = state["token_embedding.weight"][:-1]
    torch.save(state, tmp_path / "clip.pt")
    loaded = build_backbone("tir-micro", pretrained=str(tmp_path / "clip.pt"), image_size=(64, 32))
    assert torch.equal(loaded.clip.visual.conv1.weight, source.clip.visual.conv1.weight)
    assert loaded.clip.visual.positional_embedding.shape == (4 * 2 + 1, 64)


@pytest.mark.slow
def test_vit_b16_at_384x128_trains_one_step() -> None:
    from train_support import micro_batch as make

    backbone = build_backbone("ViT-B-16", image_size=(384, 128))
    method = create_method("irra", backbone, num_classes=2)
    batch = make(4)
    batch["images"] = torch.randn(4, 3, 384, 128)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-5)
    out = method(batch, StepContext(0, 0, 1))
    loss = sum(v for k, v in out.items() if k.startswith("loss_"))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and backbone.clip.visual.positional_embedding.shape == (24 * 8 + 1, 768)


def test_hkgr_recipes_carry_each_datasets_script_values() -> None:
    from pathlib import Path

    from tir.training import config as config_io

    configs = Path(__file__).resolve().parents[1] / "configs"
    resolved = {name: config_io.resolve(configs / f"hkgr_{name}.yaml") for name in ("cuhk-pedes", "icfg-pedes", "rstpreid")}
    # HKGR options/run_*.sh
    picked = {name: (c["batch_size"], c["weight_decay"], c["method_options"]["temperature"], c["method_options"]["id_weight"])
              for name, c in resolved.items()}
    assert picked == {"cuhk-pedes": (64, 1e-3, 0.01, 0.0), "icfg-pedes": (32, 4e-5, 0.02, 1.0), "rstpreid": (64, 1e-2, 0.02, 1.0)}
    assert all(c["eps"] == 1e-3 and c["method_options"]["select_lr_factor"] == 10.0 for c in resolved.values())
    options = {**resolved["cuhk-pedes"]["method_options"], "tse_dim": 16, "cmt_depth": 1}
    method = _method("hkgr", **options)
    out = method(micro_batch(), StepContext(epoch=0, step=0, seed=1))
    assert method.classifier is None and "loss_id" not in out and torch.isfinite(out["loss_fine"])
