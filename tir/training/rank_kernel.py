"""Ranking a CPU chunk of the similarity in one compiled pass per row (numba): top k and every hit's rank.

For each query row, in tiles of TILE scores (16 KiB of float32, which stay in the core's L1 cache):

- the top k, kept sorted as the tile streams by: a block of BLOCK scores is looked at one by one only when
  one of them is above the current k-th best (a vectorised count decides), after the first WARM columns;
- each hit's counts of scores above it and at least as high as it (vectorised, one pass over the tile per
  hit), summed in float32 (exact: a tile holds far fewer than 2^24 scores) and added up in int64.

A hit's rank is 1 + the scores above it, plus, only when another score equals it, those equal scores at a
lower gallery index; the top k keep gallery order among equal scores. These are the definitions of
``tir.training.metrics`` (whose torch code does the same on CUDA). A row holding a NaN is reported.

The chunk is split into as many row ranges as torch has threads, each run by a thread of a pool (the compiled
code releases the GIL). Compiled on first use (seconds) and cached on disk by numba.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from numba import njit

TILE = 4096  # scores per tile: in L1 while the top k and every hit read it
BLOCK = 64  # scores per block whose count against the k-th best decides whether to look at them one by one
WARM = 1024  # leading columns looked at one by one, where the k-th best still rises often
MIN_ELEMENTS_PER_THREAD = 1 << 20  # a chunk smaller than this per thread runs on the calling thread
F32 = np.float32


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _count_not_at_most(part, threshold):
    """Scores in ``part`` above ``threshold`` or NaN (float32 sum: exact for fewer than 2^24 scores)."""
    count = F32(0)
    for j in range(part.shape[0]):
        count += F32(not (part[j] <= threshold))
    return count


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _above_and_at_least(part, score):
    """(scores above ``score``, scores at least ``score``) in ``part``, as exact float32 counts."""
    above = F32(0)
    at_least = F32(0)
    for j in range(part.shape[0]):
        x = part[j]
        above += F32(x > score)
        at_least += F32(x >= score)
    return above, at_least


@njit(nogil=True, cache=True)
def _insert(values, indices, filled, k, value, column):
    """Insert (value, column) into the descending top list; the last entry drops out when it is full.
    Equal values stay in column order (a later column never moves ahead of an equal earlier one)."""
    place = filled if filled < k else k - 1
    while place > 0 and values[place - 1] < value:
        values[place] = values[place - 1]
        indices[place] = indices[place - 1]
        place -= 1
    values[place] = value
    indices[place] = column


@njit(nogil=True, cache=True)
def _scan(part, offset, k, values, indices, filled):
    """Feed ``part`` (columns from ``offset``) one score at a time; the new fill count, or -1 on a NaN."""
    for i in range(part.shape[0]):
        value = part[i]
        if value != value:
            return -1
        if filled < k:
            _insert(values, indices, filled, k, value, offset + i)
            filled += 1
        elif value > values[k - 1]:
            _insert(values, indices, k, k, value, offset + i)
    return filled


@njit(nogil=True, cache=True)
def _feed_top(part, offset, k, values, indices, filled):
    """Feed a tile to the top ``k`` (or, when k is 0, only look for NaN); the fill count, or -1 on a NaN."""
    if k == 0:
        return -1 if _count_not_at_most(part, np.inf) > 0 else 0
    for start in range(0, part.shape[0], BLOCK):
        block = part[start : start + BLOCK]
        if filled < k or offset + start < WARM or _count_not_at_most(block, values[k - 1]) > 0:
            filled = _scan(block, offset + start, k, values, indices, filled)
            if filled < 0:
                return -1
    return filled


@njit(nogil=True, cache=True)
def _rank_rows(sim, first_row, stop_row, hit_start, hit_cols, k, ranks, top, finite):
    """Rows [first_row, stop_row) of ``sim``: top ``k`` columns into ``top``, the 1-based rank of each hit
    (the hits of row r are hit_cols[hit_start[r]:hit_start[r + 1]]) into ``ranks``; finite[r] = False on NaN."""
    n_gallery = sim.shape[1]
    values = np.empty(max(k, 1), sim.dtype)
    for r in range(first_row, stop_row):
        row = sim[r]
        cols = hit_cols[hit_start[r] : hit_start[r + 1]]
        scores = np.empty(cols.shape[0], sim.dtype)
        for i in range(cols.shape[0]):
            scores[i] = row[cols[i]]
        above = np.zeros(cols.shape[0], np.int64)
        at_least = np.zeros(cols.shape[0], np.int64)
        filled = 0
        for start in range(0, n_gallery, TILE):
            tile = row[start : start + TILE]
            filled = _feed_top(tile, start, k, values, top[r], filled)
            if filled < 0:
                break
            for i in range(cols.shape[0]):
                tile_above, tile_at_least = _above_and_at_least(tile, scores[i])
                above[i] += np.int64(tile_above)
                at_least[i] += np.int64(tile_at_least)
        if filled < 0:
            finite[r] = False
            continue
        out = ranks[hit_start[r] : hit_start[r + 1]]
        for i in range(cols.shape[0]):
            rank = above[i] + 1
            if at_least[i] - above[i] > 1:  # another score equals the hit's: those at lower columns come first
                for j in range(cols[i]):
                    rank += row[j] == scores[i]
            out[i] = rank


@lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="tir-rank")


def rank_rows(sim: torch.Tensor, hit_start: torch.Tensor, hit_cols: torch.Tensor,
              k: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(top [q, k] gallery indices, ranks [n_hits], whether no row holds a NaN) of a CPU float32/float64
    similarity chunk [q, G]. ``hit_start`` [q + 1] (int64) delimits each row's hits in ``hit_cols`` (int64
    gallery indices, ascending within a row)."""
    scores = np.ascontiguousarray(sim.detach().numpy())
    n_rows, n_gallery = scores.shape
    starts, cols = hit_start.numpy(), hit_cols.numpy()
    ranks = np.zeros(len(cols), np.int64)
    top = np.zeros((n_rows, k), np.int64)
    finite = np.ones(n_rows, np.bool_)
    threads = max(1, min(torch.get_num_threads(), n_rows, n_rows * n_gallery // MIN_ELEMENTS_PER_THREAD))
    bounds = np.linspace(0, n_rows, threads + 1).astype(np.int64)
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    if threads == 1:
        _rank_rows(scores, 0, n_rows, starts, cols, k, ranks, top, finite)
    else:
        list(_pool(threads).map(lambda span: _rank_rows(scores, span[0], span[1], starts, cols, k, ranks, top, finite), ranges))
    return torch.from_numpy(top), torch.from_numpy(ranks), bool(finite.all())
