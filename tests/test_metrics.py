"""retrieval_metrics and the chunked form against hand-computed cases and a plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tir.training.metrics as metrics_path
from tir.training.metrics import MetricAccumulator, _hits, rank_chunk, retrieval_metrics, summarise


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def ranking_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with CPU chunks ranked by the compiled kernel and by the torch code (CUDA's path)."""
    monkeypatch.setattr(metrics_path, "COMPILED_ON_CPU", request.param == "compiled")
    return request.param

torch.set_num_threads(1)


def reference(similarity: np.ndarray, query_pids, gallery_pids) -> dict[str, float]:
    """Plain loops: stable ranking by descending score, then the textbook definitions."""
    r = {1: 0, 5: 0, 10: 0}
    aps, inps = [], []
    for row, pid in zip(similarity, query_pids):
        order = sorted(range(len(row)), key=lambda j: -row[j])  # sorted() is stable
        hit_ranks = [i + 1 for i, j in enumerate(order) if gallery_pids[j] == pid]
        for k in r:
            r[k] += bool(hit_ranks) and hit_ranks[0] <= k
        aps.append(np.mean([(n + 1) / rank for n, rank in enumerate(hit_ranks)]) if hit_ranks else 0.0)
        inps.append(len(hit_ranks) / hit_ranks[-1] if hit_ranks else 0.0)
    n = len(query_pids)
    out = {f"R{k}": 100.0 * v / n for k, v in r.items()}
    out.update(mAP=100.0 * np.mean(aps), mINP=100.0 * np.mean(inps))
    out["rSum"] = out["R1"] + out["R5"] + out["R10"]
    return out


def test_hand_computed_several_hits() -> None:
    # gallery pids [1, 2, 1, 3]; ranking by score: 0, 1, 3, 2 -> hits of pid 1 at ranks 1 and 4.
    metrics = retrieval_metrics(np.array([[0.9, 0.8, 0.1, 0.5]]), np.array([1]), np.array([1, 2, 1, 3]))
    assert metrics["R1"] == 100.0
    assert metrics["mAP"] == pytest.approx(100 * (1 / 1 + 2 / 4) / 2)
    assert metrics["mINP"] == pytest.approx(100 * 2 / 4)
    assert metrics["rSum"] == 300.0


def test_ties_keep_gallery_order_and_hit_at_last_rank() -> None:
    sim = np.full((2, 4), 0.5, dtype=np.float32)
    # query 0 (pid 3): all tied -> gallery order, its only hit is last (rank 4)
    # query 1 (pid 2): tie between a miss (index 0) and its hit (index 1) -> rank 2
    metrics = retrieval_metrics(sim, np.array([3, 2]), np.array([1, 2, 1, 3]))
    chunk = rank_chunk(sim, np.array([3, 2]), np.array([1, 2, 1, 3]))
    assert chunk.first_rank.tolist() == [4, 2]
    assert chunk.top.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert metrics["R1"] == 0.0 and metrics["R5"] == 100.0
    assert metrics["mAP"] == pytest.approx(100 * (1 / 4 + 1 / 2) / 2)
    assert metrics["mINP"] == pytest.approx(100 * (1 / 4 + 1 / 2) / 2)


def test_rank_beyond_ten_and_query_without_hit() -> None:
    gallery = np.arange(12)
    sim = np.zeros((2, 12))
    sim[0] = -np.arange(12)  # query pid 11 hits at rank 12
    chunk = rank_chunk(sim, np.array([11, 99]), gallery)
    assert chunk.first_rank.tolist() == [12, 0]
    assert chunk.n_hits.tolist() == [1, 0]
    metrics = summarise(chunk.first_rank, chunk.ap, chunk.inp)
    assert metrics["R10"] == 0.0
    assert metrics["mAP"] == pytest.approx(100 * (1 / 12) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gallery = rng.integers(0, 8, size=40)
    queries = rng.integers(0, 8, size=25)
    sim = rng.integers(0, 4, size=(25, 40)).astype(np.float32)  # few distinct values: many ties
    expected = reference(sim, queries, gallery)
    got = retrieval_metrics(sim, queries, gallery)
    assert got == pytest.approx(expected)


def test_torch_equals_numpy_and_chunking_is_invisible() -> None:
    rng = np.random.default_rng(3)
    gallery = rng.integers(0, 20, size=300)
    queries = rng.integers(0, 20, size=130)
    sim = rng.normal(size=(130, 300)).round(1)
    from_numpy = retrieval_metrics(sim, queries, gallery)
    from_torch = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(queries), torch.from_numpy(gallery))
    chunked = retrieval_metrics(sim, queries, gallery, chunk_size=7)
    assert from_numpy == from_torch == chunked

    accumulator = MetricAccumulator()
    for start in range(0, 130, 50):
        accumulator.add(rank_chunk(sim[start : start + 50], queries[start : start + 50], gallery, top_k=3))
    assert accumulator.compute() == from_numpy
    merged = accumulator.merged()
    assert merged.top.shape == (130, 3)
    assert merged.top[:, 0].tolist() == np.argmax(sim, axis=1).tolist()


def test_shape_mismatch_and_nan_are_errors() -> None:
    with pytest.raises(ValueError, match="does not match"):
        retrieval_metrics(np.zeros((2, 3)), np.array([1]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[0.1, np.nan, 0.2]]), np.array([1]), np.array([1, 2, 3]))


@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_and_hit_ranks_equal_a_stable_full_sort(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sort-free ranking gives a full stable sort's top k and hit ranks, also when hits span several blocks."""
    import tir.training.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "HIT_BLOCK_ELEMENTS", {"cpu": 50})  # a block of one or two hits at a time
    rng = np.random.default_rng(seed)
    gallery = rng.integers(0, 6, size=37)
    queries = rng.integers(0, 7, size=19)  # pid 6 never occurs in the gallery: queries without a hit
    sim = rng.integers(0, 3, size=(19, 37)).astype(np.float32)
    chunk = rank_chunk(sim, queries, gallery, top_k=10)
    for row, pid, top, first in zip(sim, queries, chunk.top.tolist(), chunk.first_rank.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        assert top == order[:10]
        hit_ranks = [i + 1 for i, j in enumerate(order) if gallery[j] == pid]
        assert first == (hit_ranks[0] if hit_ranks else 0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_hits_are_every_matching_pair_in_row_then_gallery_order(dtype):
    generator = torch.Generator().manual_seed(3)
    queries = torch.randint(0, 40, (300,), generator=generator).to(dtype)
    gallery = torch.randint(5, 60, (500,), generator=generator).to(dtype)  # ids 0-4 have no image: queries without a hit
    rows, cols = _hits(queries, gallery)
    expected_rows, expected_cols = (gallery[None, :] == queries[:, None]).nonzero(as_tuple=True)
    assert torch.equal(rows, expected_rows) and torch.equal(cols, expected_cols)
    assert (queries < 5).any() and rows.numel() > 0



@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_by_group_maxima_equals_a_stable_full_sort(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grouped first pass (groups of 4 columns here, a partial group at the end) gives a stable sort's top k,
    with ties inside and across groups (rows of few distinct values fall back to topk), and in the last group."""
    import tir.training.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "TOP_GROUP", 4)
    rng = np.random.default_rng(seed)
    sim = np.concatenate([rng.integers(0, 3, size=(20, 99)), rng.integers(0, 40, size=(20, 99))]).astype(np.float32)
    sim[5, 98] = 10.0  # the best score in the partial last group
    sim[25, 97] = sim[25].max()  # tied with the best, after it in gallery order
    for k in (1, 5, 10):
        top = metrics_module.top_indices(torch.from_numpy(sim), k)
        expected = [sorted(range(99), key=lambda j: -row[j])[:k] for row in sim]
        assert top.tolist() == expected
    assert metrics_module._top(torch.from_numpy(sim), 10)[1].tolist() == sim.max(axis=1).tolist()


def test_nan_anywhere_is_an_error_with_the_grouped_top_k(monkeypatch: pytest.MonkeyPatch) -> None:
    import tir.training.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "TOP_GROUP", 4)
    for column in (0, 50, 98):  # in a group and in the partial last group
        sim = np.random.default_rng(column).normal(size=(3, 99))
        sim[1, column] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            rank_chunk(sim, np.array([1, 2, 3]), np.arange(99))


def test_many_hits_ties_and_queries_without_hits_match_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """One person with 120 of the 300 images (its hits span many hit blocks), scores on a coarse grid (ties
    between hits and misses on both sides of each hit), and a person with no image at all."""
    import tir.training.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "HIT_BLOCK_ELEMENTS", {"cpu": 700})  # two hits per block
    monkeypatch.setattr(metrics_module, "TOP_GROUP", 8)
    rng = np.random.default_rng(7)
    gallery = np.where(rng.random(300) < 0.4, 0, rng.integers(1, 30, size=300))
    queries = np.array([0, 0, 5, 99, 0, 12, 99])
    sim = rng.integers(0, 6, size=(7, 300)).astype(np.float32)
    assert retrieval_metrics(sim, queries, gallery) == pytest.approx(reference(sim, queries, gallery))
    chunk = rank_chunk(sim, queries, gallery)
    assert chunk.n_hits.tolist() == [(gallery == pid).sum() for pid in queries]
    assert chunk.first_rank[3] == 0 and chunk.first_hit[3] == -1 and chunk.ap[3] == 0


def test_gallery_ids_sorted_once_rank_like_the_plain_ids() -> None:
    rng = np.random.default_rng(11)
    gallery = rng.integers(0, 9, size=200)
    queries = rng.integers(0, 10, size=17)
    sim = rng.normal(size=(17, 200)).astype(np.float32)
    sorted_once = metrics_path.GalleryPids.of(gallery)
    plain, shared = rank_chunk(sim, queries, gallery), rank_chunk(sim, queries, sorted_once)
    for name in plain.__dataclass_fields__:
        assert torch.equal(getattr(plain, name), getattr(shared, name)), name
    with pytest.raises(ValueError, match="200 gallery"):
        rank_chunk(sim[:, :100], queries, sorted_once)
