"""Retrieval metrics for text-to-image person search: R@K, mAP, mINP (percentages) and rSum.

Queries are captions, the gallery is images, a hit is a gallery image with the query's person id.
For one query with hits at 1-based ranks ``r_1 < ... < r_n`` in the ranked gallery:

- R@K: 1 when ``r_1 <= K``;
- AP: ``mean_i(i / r_i)`` (precision at each hit's rank);
- INP: ``n / r_n`` (how much of the list must be read to find every hit).

Ties keep gallery order (as a stable sort would), so equal scores rank the lower gallery index first. The
gallery is never sorted: a hit's rank is one plus the count of items scoring above it (or tied at a lower
index), and only the ten best items per query are ordered (for the per-query table). A query
without any hit counts as a miss with AP = INP = 0 and first-hit rank 0.

Two forms:

- ``retrieval_metrics(similarity, query_pids, gallery_pids)`` for a whole matrix;
- ``rank_chunk`` + ``MetricAccumulator`` for a chunk of queries at a time, so that a 100k x 100k
  evaluation never holds the full matrix (``tir.training.evaluation`` uses this form).

Inputs may be numpy arrays or torch tensors (any device). On CPU a chunk is ranked by one compiled pass per
row (``tir.training.rank_kernel``, numba); elsewhere (CUDA) by the torch code below, vectorised per chunk.
Both give the same ranks and top k (tests/test_rank_kernel.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
METRIC_KEYS: tuple[str, ...] = ("R1", "R5", "R10", "mAP", "mINP", "rSum")
NAN_SIMILARITY = "the similarity holds NaN: the model's features are not finite (did training diverge?)"


def _tensor(values: ArrayLike, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        array = np.asarray(values)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    return tensor.to(device) if device is not None else tensor


@dataclass
class ChunkRanks:
    """Per-query results for a chunk of queries (all tensors on CPU, length = queries in the chunk)."""

    first_rank: torch.Tensor  # int64, 1-based rank of the first hit (0 when the query has no hit)
    ap: torch.Tensor  # float64 in [0, 1]
    inp: torch.Tensor  # float64 in [0, 1]
    n_hits: torch.Tensor  # int64
    top: torch.Tensor  # int64 [q, top_k]: gallery indices of the best-ranked images
    first_hit: torch.Tensor  # int64, gallery index of the best-ranked hit (-1 when the query has no hit)


# Similarity entries compared per block of hits: 1 MiB of float32 stays in a CPU core's cache (L2: 1 MiB here)
# through the gather, subtract, sign and sums (3x faster than 64 MiB blocks; on one thread, 4,000 hits against
# 50,000 images: 309 ms against 356 for 2 MiB blocks and 403 for 512 KiB); GPUs want large blocks instead.
HIT_BLOCK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 26}
# On CPU, chunks are ranked by the compiled kernel (tir.training.rank_kernel); tests turn this off to run the torch
# path, which CUDA takes, on CPU too.
COMPILED_ON_CPU = True
# Columns per group in the top k's first pass (``_top_by_groups``): one maximum per group of a row.
TOP_GROUP = 64


def _hit_ranks(sim: torch.Tensor, hit_rows: torch.Tensor, hit_cols: torch.Tensor) -> torch.Tensor:
    """1-based rank of each hit: gallery items scoring above it, plus ties with a lower gallery index, plus 1.

    Each hit is compared with its query's row only, so the cost is (number of hits) x gallery, with no sort.
    The signs of ``row - own score`` give both counts in two sums: their sum is above - below and the sum of
    their magnitudes above + below; a hit tied with another item (rare with real features) is then resolved
    by gallery order.
    """
    n_gallery = sim.shape[1]
    ranks = torch.empty(hit_rows.numel(), dtype=torch.int64, device=sim.device)
    block = max(1, HIT_BLOCK_ELEMENTS.get(sim.device.type, 1 << 24) // max(1, n_gallery))
    count_dtype = torch.float32 if n_gallery < 2**24 else torch.float64  # sums of +-1 stay exact
    for start in range(0, hit_rows.numel(), block):
        rows, cols = hit_rows[start : start + block], hit_cols[start : start + block]
        own = sim[rows, cols][:, None]
        signs = sim.index_select(0, rows).sub_(own).sign_()
        difference = signs.sum(1, dtype=count_dtype)
        unequal = signs.abs_().sum(1, dtype=count_dtype)
        above = ((difference + unequal) / 2).long()
        tied = n_gallery - 1 - unequal.long()  # items other than the hit itself with exactly its score
        ranks[start : start + block] = above + 1
        if bool((tied > 0).any()):
            ties = (tied > 0).nonzero().squeeze(1)
            positions = torch.arange(n_gallery, device=sim.device)
            tied_before = ((sim[rows[ties]] == own[ties]) & (positions < cols[ties, None])).sum(1)
            ranks[start + ties] += tied_before
    return ranks


@dataclass(frozen=True)
class GalleryPids:
    """The gallery's person ids sorted once (stably), so that each query's hits are one slice of them.

    ``rank_chunk`` takes it in place of the ids, so that evaluating chunk after chunk sorts the gallery once."""

    sorted_pids: torch.Tensor  # int64, ascending
    positions: torch.Tensor  # int64: the gallery index of each sorted id

    @classmethod
    def of(cls, gallery_pids: ArrayLike, device: torch.device | None = None) -> "GalleryPids":
        order = torch.sort(_tensor(gallery_pids, device).reshape(-1).long(), stable=True)
        return cls(order.values, order.indices)

    def __len__(self) -> int:
        return self.sorted_pids.numel()


def _hits(query_pids: torch.Tensor, gallery: GalleryPids | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(query row, gallery index) of every hit, rows ascending and gallery indices ascending within a row.

    With the gallery's ids sorted, each query's hits are one slice of them: the cost is the number of hits
    (plus a sort of the gallery ids when ``gallery`` holds them unsorted), not queries x gallery.
    """
    order = gallery if isinstance(gallery, GalleryPids) else GalleryPids.of(gallery)
    queries = query_pids.long()
    first = torch.searchsorted(order.sorted_pids, queries)
    n_hits = torch.searchsorted(order.sorted_pids, queries, right=True) - first
    rows = torch.repeat_interleave(torch.arange(queries.numel(), device=queries.device), n_hits)
    within = torch.arange(rows.numel(), device=queries.device) - (n_hits.cumsum(0) - n_hits)[rows]
    return rows, order.positions[first[rows] + within]


def _stable_top(values: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
    """Of candidate (value, gallery index) pairs per row, the indices of the ``k`` best, ties by index."""
    by_index = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.sort(-values, dim=1, stable=True).indices[:, :k]  # ascending stable sort keeps index order
    return indices.gather(1, by_value)


def top_indices(sim: torch.Tensor, top_k: int) -> torch.Tensor:
    """Gallery indices of each query's ``top_k`` best scores, ties by gallery order (as a stable sort)."""
    n_queries, n_gallery = sim.shape
    k = min(top_k, n_gallery)
    if k == 0 or n_queries == 0:
        return torch.empty(n_queries, k, dtype=torch.int64, device=sim.device)
    return _top(sim, k)[0]


def _top(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``top_indices(sim, k)``, each row's largest score: NaN where the row holds a NaN) for 1 <= k <= gallery."""
    if sim.shape[1] // TOP_GROUP > 2 * (k + 1):
        return _top_by_groups(sim, k)
    return _top_by_topk(sim, k)


def _top_by_topk(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_top`` by one ``torch.topk`` over every score of a row."""
    n_gallery = sim.shape[1]
    values, indices = torch.topk(sim, min(k + 1, n_gallery), dim=1)
    top = _stable_top(values[:, :k], indices[:, :k], k)
    if k < n_gallery:
        # Where the k-th best score recurs after the k-th place, topk may have kept a later gallery index:
        # redo those rows over every item scoring at least that much.
        boundary = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
        for row in boundary.tolist():
            candidates = (sim[row] >= values[row, k - 1]).nonzero().squeeze(1)
            top[row] = _stable_top(sim[row, candidates][None], candidates[None], k)[0]
    return top, values[:, 0]


def _top_by_groups(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_top`` from the maximum of each run of TOP_GROUP columns: one pass over the scores (3x to 5x faster on
    CPU than ``torch.topk``, which orders as it goes), then only the columns of the k + 1 groups with the largest
    maxima, and of the last partial group, are ordered. The k largest group maxima are k distinct scores, so the
    k-th best score is at least the k-th largest maximum T, and every score that can be among the top k lies
    in a group whose maximum reaches T: in those k + 1 groups, unless the (k + 1)-th maximum ties T too; such
    rows are ranked over every score (``_top_by_topk``)."""
    n_queries, n_gallery = sim.shape
    n_groups = n_gallery // TOP_GROUP
    whole = n_groups * TOP_GROUP
    maxima = sim[:, :whole].reshape(n_queries, n_groups, TOP_GROUP).amax(2)  # amax propagates NaN
    best, groups = torch.topk(maxima, k + 1, dim=1)  # a NaN maximum comes first
    groups = groups.sort(dim=1).values  # candidate columns ascend, so ties among them keep gallery order
    offsets = torch.arange(TOP_GROUP, device=sim.device)
    columns = (groups[:, :, None] * TOP_GROUP + offsets).reshape(n_queries, -1)
    tail = torch.arange(whole, n_gallery, device=sim.device).expand(n_queries, -1)
    columns = torch.cat([columns, tail], dim=1)
    top = columns.gather(1, _top_by_topk(sim.gather(1, columns), k)[0])
    tied = (best[:, k] == best[:, k - 1]).nonzero().squeeze(1)
    if tied.numel():
        top[tied] = _top_by_topk(sim[tied], k)[0]
    return top, torch.maximum(best[:, 0], sim[:, whole:].amax(1)) if whole < n_gallery else best[:, 0]


def _checked_top(sim: torch.Tensor, k: int) -> torch.Tensor:
    """``top_indices(sim, k)``, after checking that ``sim`` holds no NaN (the torch path, for CUDA)."""
    n_queries = sim.shape[0]
    if k and n_queries:
        top, row_max = _top(sim, k)
    else:  # amax propagates NaN in one pass, with no mask
        top, row_max = torch.empty(n_queries, k, dtype=torch.int64, device=sim.device), sim.amax() if sim.numel() else sim.sum()
    if bool(torch.isnan(row_max).any()):
        raise ValueError(NAN_SIMILARITY)
    return top


def rank_chunk(similarity: ArrayLike, query_pids: ArrayLike, gallery_pids: ArrayLike | GalleryPids,
               top_k: int = 10) -> ChunkRanks:
    """Rank the gallery for a chunk of queries and summarise where each query's hits fall.

    ``similarity`` is [q, G] (higher = more similar), ``query_pids`` [q], ``gallery_pids`` [G] (or
    ``GalleryPids.of`` them, on the similarity's device, to sort them once for many chunks).
    The gallery is never sorted: a hit's rank is the count of items scoring above it (ties by gallery
    order), and only the ``top_k`` best items are ordered. Memory is O(q x G); choose the chunk size accordingly.
    """
    sim = _tensor(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D [queries, gallery], got shape {tuple(sim.shape)}")
    qp = _tensor(query_pids, sim.device).reshape(-1)
    gallery = gallery_pids if isinstance(gallery_pids, GalleryPids) else GalleryPids.of(gallery_pids, sim.device)
    if sim.shape != (qp.numel(), len(gallery)):
        raise ValueError(f"similarity shape {tuple(sim.shape)} does not match {qp.numel()} queries x {len(gallery)} gallery")
    n_queries, n_gallery = sim.shape
    k = min(top_k, n_gallery)
    hit_rows, hit_cols = _hits(qp, gallery)
    n_hits = torch.bincount(hit_rows, minlength=n_queries)
    if COMPILED_ON_CPU and sim.device.type == "cpu" and sim.dtype in (torch.float32, torch.float64):
        from tir.training.rank_kernel import rank_rows  # compiled on first use

        hit_start = torch.zeros(n_queries + 1, dtype=torch.int64)
        torch.cumsum(n_hits, 0, out=hit_start[1:])
        top, hit_rank, finite = rank_rows(sim, hit_start, hit_cols, k)
        if not finite:
            raise ValueError(NAN_SIMILARITY)
    else:
        top = _checked_top(sim, k)
        hit_rank = _hit_ranks(sim, hit_rows, hit_cols)
    by_rank = torch.argsort(hit_rows * (n_gallery + 1) + hit_rank)  # rows stay grouped, ranks ascend within a row
    rows, rank = hit_rows[by_rank], hit_rank[by_rank]
    ends = n_hits.cumsum(0)  # one past each query's last hit in (rows, rank)
    starts = ends - n_hits
    ordinal = torch.arange(1, rows.numel() + 1, device=rows.device) - starts[rows]
    precision_sum = torch.zeros(n_queries, dtype=torch.float64, device=rows.device)
    precision_sum.index_add_(0, rows, ordinal.double() / rank.double())
    has_hit = n_hits > 0
    padded = torch.cat([rank.new_zeros(1), rank])  # padded[0] = 0 for queries without a hit
    first_rank = padded[torch.where(has_hit, starts + 1, 0)]
    last_rank = padded[ends].clamp(min=1)
    first_hit = torch.cat([hit_cols.new_full((1,), -1), hit_cols[by_rank]])[torch.where(has_hit, starts + 1, 0)]
    ap = precision_sum / n_hits.clamp(min=1).double()
    inp = n_hits.double() / last_rank.double()
    return ChunkRanks(
        first_rank=first_rank.long().cpu(),
        ap=ap.cpu(),
        inp=inp.cpu(),
        n_hits=n_hits.long().cpu(),
        top=top.cpu(),
        first_hit=first_hit.long().cpu(),
    )


def summarise(first_rank: ArrayLike, ap: ArrayLike, inp: ArrayLike, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Metrics in percent from per-query first-hit ranks (0 = no hit), APs and INPs."""
    first = _tensor(first_rank).long()
    if first.numel() == 0:
        raise ValueError("no queries to evaluate")
    found = first > 0
    result = {f"R{k}": float(100.0 * (found & (first <= k)).double().mean()) for k in ks}
    result["mAP"] = float(100.0 * _tensor(ap).double().mean())
    result["mINP"] = float(100.0 * _tensor(inp).double().mean())
    result["rSum"] = sum(result[f"R{k}"] for k in (1, 5, 10) if f"R{k}" in result)
    return result


class MetricAccumulator:
    """Collects ``ChunkRanks`` of successive query chunks and computes the metrics at the end."""

    def __init__(self) -> None:
        self.chunks: list[ChunkRanks] = []

    def add(self, chunk: ChunkRanks) -> None:
        self.chunks.append(chunk)

    def merged(self) -> ChunkRanks:
        """All chunks concatenated in the order they were added."""
        if not self.chunks:
            raise ValueError("no query chunk was added")
        return ChunkRanks(*(torch.cat([getattr(c, name) for c in self.chunks]) for name in ChunkRanks.__dataclass_fields__))

    def compute(self) -> dict[str, float]:
        merged = self.merged()
        return summarise(merged.first_rank, merged.ap, merged.inp)


def retrieval_metrics(
    similarity: ArrayLike, query_pids: ArrayLike, gallery_pids: ArrayLike, chunk_size: int = 1024
) -> dict[str, float]:
    """R1, R5, R10, mAP, mINP (percent) and rSum for a [queries, gallery] similarity matrix.

    Works on numpy arrays or torch tensors; ranks ``chunk_size`` queries at a time.
    """
    sim = _tensor(similarity)
    qp = _tensor(query_pids).reshape(-1)
    if sim.ndim != 2 or sim.shape[0] != qp.numel():
        raise ValueError(f"similarity shape {tuple(sim.shape)} does not match {qp.numel()} queries")
    accumulator = MetricAccumulator()
    gallery = GalleryPids.of(gallery_pids, sim.device)
    for start in range(0, sim.shape[0], chunk_size):
        accumulator.add(rank_chunk(sim[start : start + chunk_size], qp[start : start + chunk_size], gallery, top_k=0))
    return accumulator.compute()
