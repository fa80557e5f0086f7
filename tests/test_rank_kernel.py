"""The compiled CPU ranking (tir.training.rank_kernel) against a stable full sort and the torch path (CUDA's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tir.training.metrics as metrics
from tir.training.rank_kernel import MIN_ELEMENTS_PER_THREAD, TILE, WARM, rank_rows


def by_torch(monkeypatch: pytest.MonkeyPatch, sim: np.ndarray, queries: np.ndarray, gallery: np.ndarray, k: int = 10):
    with monkeypatch.context() as patch:
        patch.setattr(metrics, "COMPILED_ON_CPU", False)
        return metrics.rank_chunk(sim, queries, gallery, top_k=k)


def assert_same(first: metrics.ChunkRanks, second: metrics.ChunkRanks) -> None:
    for name in metrics.ChunkRanks.__dataclass_fields__:
        assert torch.equal(getattr(first, name), getattr(second, name)), name


def stable_order(row: np.ndarray) -> list[int]:
    return sorted(range(len(row)), key=lambda j: -row[j])


def with_ties(rng: np.random.Generator, rows: int, gallery: int, dtype) -> np.ndarray:
    """Continuous scores, plus columns copied onto others (exact ties, some across tiles) and a few infinities."""
    sim = rng.normal(size=(rows, gallery)).astype(dtype)
    for source, target in ((5, 3), (7, gallery - 2), (TILE + 9, 11), (WARM + 3, TILE * 2 + 1)):
        if max(source, target) < gallery:
            sim[:, target] = sim[:, source]
    sim[0, min(4, gallery - 1)] = np.inf
    sim[1, -1] = -np.inf
    return sim


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_and_hit_ranks_equal_a_stable_full_sort_across_tiles(dtype) -> None:
    rng = np.random.default_rng(0)
    n_gallery = 2 * TILE + 100  # two whole tiles and a partial one
    gallery = rng.integers(0, 40, size=n_gallery)
    queries = np.concatenate([rng.integers(0, 40, size=23), [99]])  # the last query has no hit
    sim = with_ties(rng, len(queries), n_gallery, dtype)
    chunk = metrics.rank_chunk(sim, queries, gallery, top_k=10)
    for row, pid, top, first, hits in zip(sim, queries, chunk.top.tolist(), chunk.first_rank.tolist(), chunk.n_hits.tolist()):
        order = stable_order(row)
        ranks = [i + 1 for i, j in enumerate(order) if gallery[j] == pid]
        assert top == order[:10]
        assert (first, hits) == ((ranks[0], len(ranks)) if ranks else (0, 0))
    assert chunk.n_hits.max() > 4  # several groups of hits per row


def test_hits_tied_with_each_other_and_with_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores on a coarse grid: every hit ties with others before and after it; ranks match the torch path."""
    rng = np.random.default_rng(1)
    gallery = rng.integers(0, 8, size=3000)
    queries = rng.integers(0, 9, size=31)
    sim = rng.integers(0, 5, size=(31, 3000)).astype(np.float32)
    compiled = metrics.rank_chunk(sim, queries, gallery)
    assert_same(compiled, by_torch(monkeypatch, sim, queries, gallery))
    rows, cols = metrics._hits(torch.from_numpy(queries), torch.from_numpy(gallery))
    ranks = metrics._hit_ranks(torch.from_numpy(sim), rows, cols)
    starts = torch.zeros(32, dtype=torch.int64)
    starts[1:] = torch.bincount(rows, minlength=31).cumsum(0)
    assert torch.equal(rank_rows(torch.from_numpy(sim), starts, cols, 10)[1], ranks)


@pytest.mark.parametrize("top_k", [0, 1, 10, 50])
def test_small_galleries_and_any_k_match_the_torch_path(monkeypatch: pytest.MonkeyPatch, top_k: int) -> None:
    rng = np.random.default_rng(2)
    for n_gallery in (1, 7, 64, 65, WARM + 1):
        gallery = rng.integers(0, 3, size=n_gallery)
        queries = rng.integers(0, 4, size=9)
        sim = with_ties(rng, 9, n_gallery, np.float32)
        assert_same(metrics.rank_chunk(sim, queries, gallery, top_k=top_k), by_torch(monkeypatch, sim, queries, gallery, top_k))


def test_threads_split_the_rows_without_changing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n_gallery = TILE + 300
    rows = 2 * MIN_ELEMENTS_PER_THREAD // n_gallery + 3  # enough for two threads
    gallery = rng.integers(0, 500, size=n_gallery)
    queries = rng.integers(0, 520, size=rows)
    sim = with_ties(rng, rows, n_gallery, np.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = metrics.rank_chunk(sim, queries, gallery)
        torch.set_num_threads(2)
        two = metrics.rank_chunk(sim, queries, gallery)
    finally:
        torch.set_num_threads(threads)
    assert_same(one, two)
    assert_same(two, by_torch(monkeypatch, sim, queries, gallery))


@pytest.mark.parametrize("top_k", [0, 10])
def test_nan_anywhere_in_any_row_is_an_error(top_k: int) -> None:
    rng = np.random.default_rng(4)
    n_gallery = TILE + 500
    gallery = rng.integers(0, 5, size=n_gallery)
    for column in (0, 9, 500, WARM + 70, TILE + 3, n_gallery - 1):  # the first k, the warm-up, later blocks, a later tile
        sim = rng.normal(size=(4, n_gallery)).astype(np.float32)
        sim[2, column] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            metrics.rank_chunk(sim, np.array([0, 1, 99, 3]), gallery, top_k=top_k)  # row 2 has no hit
