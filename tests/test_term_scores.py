"""TermScores: the declared plain-dot-product methods' similarity, bit for bit, into reused buffers."""

from __future__ import annotations

import pytest
import torch

from tir.training.dot import dot
from tir.training.evaluation import rank_features
from tir.training.methods.global_retrieval import GlobalAndSelectedRetrieval, GlobalRetrieval
from tir.training.methods.ssan import Ssan
from tir.training.term_scores import TermScores

torch.set_num_threads(1)


def features(n: int, names, generator: torch.Generator, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {name: torch.randn(n, 48, generator=generator) * scale for name in names}


@pytest.mark.parametrize("method", [GlobalRetrieval, GlobalAndSelectedRetrieval, Ssan], ids=lambda m: m.__name__)
def test_scores_equal_the_methods_similarity_bit_for_bit(method) -> None:
    generator = torch.Generator().manual_seed(0)
    terms = method.similarity_terms
    image = features(301, terms, generator, scale=3.0)
    text = features(70, terms, generator)
    scores = TermScores(terms, image)
    for start, stop in ((0, 30), (30, 60), (60, 70)):  # the last chunk is smaller: a view of the same buffer
        chunk = {name: value[start:stop] for name, value in text.items()}
        got = scores(chunk)
        assert torch.equal(got, method.similarity(None, chunk, image))
    assert len(scores.buffers) == (1 if len(terms) == 1 else 2) and scores.buffers[0].shape == (30, 301)


def test_unequal_weights_scale_each_product() -> None:
    generator = torch.Generator().manual_seed(1)
    image, text = features(50, "ab", generator), features(9, "ab", generator)
    got = TermScores({"a": 0.25, "b": 2.0}, image)(text)
    assert torch.equal(got, 0.25 * dot(text["a"], image["a"]) + 2.0 * dot(text["b"], image["b"]))


def test_rank_features_with_terms_equals_the_plain_path() -> None:
    generator = torch.Generator().manual_seed(2)
    terms = GlobalAndSelectedRetrieval.similarity_terms
    image, text = features(400, terms, generator), features(130, terms, generator)
    gallery_pids, query_pids = torch.randint(0, 40, (400,), generator=generator), torch.randint(0, 45, (130,), generator=generator)

    def similarity(queries, gallery):
        return GlobalAndSelectedRetrieval.similarity(None, queries, gallery)

    plain = rank_features(similarity, text, image, query_pids, gallery_pids, chunk_size=48)
    buffered = rank_features(similarity, text, image, query_pids, gallery_pids, chunk_size=48, similarity_terms=terms)
    for name in plain.__dataclass_fields__:
        assert torch.equal(getattr(plain, name), getattr(buffered, name)), name
    assert (plain.n_hits == 0).any() and (plain.n_hits > 3).any()
