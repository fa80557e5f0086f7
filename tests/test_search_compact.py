"""The int8 first pass of `tir search` / `tir serve` (tir.search.compact): its bound holds, its top k is the
float32 scan's even on adversarial near-ties where ranking by the int8 scores alone goes wrong, and every
method's declared ``similarity_terms`` is what its ``similarity`` computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tir.search.compact import CompactIndex
from tir.training import config as config_io
from tir.training.build import build_method
from tir.training.methods.base import METHODS
from tir.training.metrics import top_indices

torch.set_num_threads(1)


def global_similarity(text: dict[str, torch.Tensor], image: dict[str, torch.Tensor]) -> torch.Tensor:
    return text["global"] @ image["global"].t()


def near_tie_gallery(query_units: torch.Tensor, rows: int, close: int, generator: torch.Generator) -> torch.Tensor:
    """Rows of multiples of 1/128 (so every float32 dot product with a query of multiples of 1/16 is exact,
    whatever the summation order): ``close`` rows near the query's direction that differ from each other by
    a step or two in one coordinate (scores a few 1/2048 apart, far below the int8 error; some exactly tied,
    rows 0 and 1 duplicates), then random rows scoring far below them, all shuffled."""
    dim = query_units.shape[1]
    near = (query_units * 12).repeat(close, 1)
    coordinates = torch.randint(0, dim, (close,), generator=generator)
    near[torch.arange(close), coordinates] += torch.randint(-2, 3, (close,), generator=generator).float()
    near[1] = near[0]
    far = torch.randint(-100, 101, (rows - close, dim), generator=generator).float()
    gallery = torch.cat([near, far]) / 128
    return gallery[torch.randperm(rows, generator=generator)].contiguous()


def test_first_pass_bound_holds_for_every_row() -> None:
    generator = torch.Generator().manual_seed(1)
    gallery = {"global": F.normalize(torch.randn(3000, 64, generator=generator), dim=-1) * 3,
               "selected": torch.randn(3000, 32, generator=generator)}  # unnormalised rows too
    compact = CompactIndex.build(gallery, {"global": 0.5, "selected": 0.5})
    assert compact is not None, "fbgemm's int8 first pass is unavailable or failed its self-check"
    text = {"global": torch.randn(5, 64, generator=generator), "selected": torch.randn(5, 32, generator=generator)}
    scores, bound = compact.bounds(text)
    exact = ((text["global"].double() @ gallery["global"].double().t())
             + (text["selected"].double() @ gallery["selected"].double().t())) / 2
    assert ((exact - scores.double()).abs() <= bound.double()).all()
    assert (exact - scores.double()).abs().max() > 1e-4  # the int8 pass is really approximate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_equals_the_exact_scan_on_adversarial_near_ties(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    units = torch.randint(-8, 9, (2, 128), generator=generator).float()
    queries = units / 16
    gallery = {"global": near_tie_gallery(units[:1], 5000, 40, generator)}
    compact = CompactIndex.build(gallery, {"global": 1.0})
    assert compact is not None, "fbgemm's int8 first pass is unavailable or failed its self-check"
    text = {"global": queries}
    exact = global_similarity(text, gallery)
    expected = top_indices(exact, 20)
    naive = top_indices(compact.bounds(text)[0], 20)
    assert not torch.equal(naive[0], expected[0])  # ranking by the int8 scores alone gets the near ties wrong
    values, positions = compact.top(global_similarity, text, gallery, 20)
    assert torch.equal(positions, expected)
    assert torch.equal(values, exact.gather(1, expected))
    ties = [(exact[0] == value).nonzero().squeeze(1).tolist() for value in values[0].unique()]
    assert any(len(tie) > 1 for tie in ties)  # exact ties within the top 20 (at least the duplicate rows)
    for tie in ties:  # each tied group in gallery order
        ranked = [int(p) for p in positions[0] if int(p) in tie]
        assert ranked == sorted(ranked)
    assert len(compact.candidates(text, 20)) < 5000  # the first pass did leave rows out


@pytest.mark.parametrize("method", sorted(name for name, cls in METHODS.items() if cls.similarity_terms))
def test_declared_similarity_terms_are_the_similarity(method: str) -> None:
    options = {"tse_dim": 32} if method in ("rde", "hkgr") else {"parts": 4} if method == "ssan" else {}
    config = config_io.resolve(options=dict(manifests="unused", model="tir-micro", image_size=[64, 32], method=method,
                                            method_options=options))
    model = build_method(config, num_classes=2, with_pretrained=False).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        image = model.encode_image(torch.randn(7, 3, 64, 32))
        text = model.encode_text(torch.randint(1, 400, (3, int(config["text_length"]))))
        declared = sum(weight * (text[name].flatten(1) @ image[name].flatten(1).t())
                       for name, weight in model.similarity_terms.items())
        torch.testing.assert_close(model.similarity(text, image), declared)
