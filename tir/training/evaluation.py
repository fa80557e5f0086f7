"""Evaluate a Method on a split: encode gallery and queries, rank in chunks, report metrics.

The gallery is the split's unique images (ordered by ``image_index``), the queries its captions
(ordered by ``pair_index``); a hit is a gallery image of the query's ``pid``.

API (used by the engine for validation each epoch and by ``tir eval``)::

    data = eval_data(manifest_df, "test", load_image, tokenize, batch_size=256, num_workers=4)
    result = evaluate(method, data, device)      # -> EvalResult
    result.metrics     # {"R1", "R5", "R10", "mAP", "mINP", "rSum"} in percent
    result.per_query   # DataFrame: pair_index, pid, first_hit_rank, ap, inp, n_hits, top10, caption,
                       # image_path, first_hit_image, first_hit_path, top10_paths

``load_image(image_path) -> Tensor[3, H, W]`` gives a gallery image: uint8 pixels (tir.training.data.EvalImages;
``evaluate`` normalises them on the device) or a float image already normalised; and
``tokenize(captions) -> LongTensor[n, L]`` the text tokenizer. ``evaluate`` runs the method in
eval mode under ``torch.no_grad`` (autocast to ``amp``) and restores its previous mode. Similarity is
computed ``chunk_size`` queries at a time, so the full [queries, gallery] matrix never exists: only
the per-query summary of where its hits fall and its top-10 gallery images are kept. Call it on one
process with the unwrapped method (under DDP: rank 0, ``model.module``).

``evaluate(..., rerank_k=k)`` also ranks by a ``reranks`` method's re-scoring of each query's top k
(tir.training.rerank), chunk by chunk beside the plain ranking: ``result.reranked`` holds those
metrics and ``result.reranked_per_query`` that table. Without it, features the method declares as
``rerank_only_features`` are not kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from tir.progress import progress_bar
from tir.training.methods.base import Features, Method
from tir.training.metrics import ChunkRanks, GalleryPids, MetricAccumulator, rank_chunk, summarise
from tir.training.precision import autocast
from tir.training.rerank import reranked_similarity
from tir.training.term_scores import TermScores
from tir.training.transforms import model_input

# similarity entries computed and ranked at once (512 MiB of float32 per similarity matrix of a chunk): each
# chunk's matmul packs the whole gallery again, so on 2 cores (tir.training.dot, OpenBLAS here) 1,342 queries against
# a 100,000-image gallery run at 144 GFLOP/s where 671 run at 126 and 335 at 119; 2,684 gain nothing more
CHUNK_ELEMENTS = 1 << 27
TOP_K = 10


@dataclass
class EvalData:
    """A split ready for evaluation.

    ``gallery``: one row per image (image_index, image_path, pid), in gallery order;
    ``queries``: one row per caption (pair_index, pid, image_index, caption), in query order;
    ``gallery_batches()`` / ``query_batches()`` yield image tensors / token ids in those orders.
    """

    gallery: pd.DataFrame
    queries: pd.DataFrame
    gallery_batches: Callable[[], Iterable[torch.Tensor]]
    query_batches: Callable[[], Iterable[torch.Tensor]]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_query: pd.DataFrame
    seconds: float
    reranked: dict[str, float] | None = None  # metrics after re-ranking each query's top k (rerank_k > 0)
    reranked_per_query: pd.DataFrame | None = None
    rerank_seconds: float | None = None  # time spent re-scoring and ranking the re-ranked lists


@dataclass
class Reranking:
    """A method's re-scoring of each query's top ``k``, collected by ``rank_features`` chunk by chunk."""

    k: int
    rescore: Callable[[Features, Features, torch.Tensor], torch.Tensor]  # (queries, gallery, candidates) -> [q, k]
    ranks: MetricAccumulator = field(default_factory=MetricAccumulator)
    seconds: float = 0.0


def split_tables(manifest: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gallery (unique images by image_index) and queries (pairs by pair_index) of ``split``."""
    rows = manifest[manifest["split"].astype(str) == split]
    if rows.empty:
        raise ValueError(f"the manifest has no rows for split {split!r}")
    queries = rows.sort_values("pair_index", kind="stable")[["pair_index", "pid", "image_index", "caption"]]
    gallery = rows.drop_duplicates("image_index").sort_values("image_index", kind="stable")
    return gallery[["image_index", "image_path", "pid"]].reset_index(drop=True), queries.reset_index(drop=True)


class _Images(Dataset):
    def __init__(self, paths: Sequence[str], load_image: Callable[[str], torch.Tensor]) -> None:
        self.paths, self.load_image = list(paths), load_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load_image(self.paths[index])


def eval_data(
    manifest: pd.DataFrame,
    split: str,
    load_image: Callable[[str], torch.Tensor],
    tokenize: Callable[[Sequence[str]], torch.Tensor],
    batch_size: int = 256,
    num_workers: int = 0,
) -> EvalData:
    """EvalData for ``split`` of a manifest; images are decoded by a DataLoader with ``num_workers``."""
    gallery, queries = split_tables(manifest, split)
    images = _Images(gallery["image_path"].tolist(), load_image)
    captions = queries["caption"].tolist()

    def gallery_batches() -> Iterable[torch.Tensor]:
        return DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    def query_batches() -> Iterable[torch.Tensor]:
        return (tokenize(captions[start : start + batch_size]) for start in range(0, len(captions), batch_size))

    return EvalData(gallery, queries, gallery_batches, query_batches)


def encode(
    encoder: Callable[[torch.Tensor], Features],
    batches: Iterable[torch.Tensor],
    device: torch.device,
    total: int | None = None,
    desc: str = "encode",
    quiet: bool = False,
    amp: torch.dtype | None = None,
    skip: Collection[str] = (),
) -> Features:
    """Run ``encoder`` over ``batches`` (autocast to ``amp`` when given) and concatenate each named
    feature (float32, on ``device``), except those named in ``skip``."""
    parts: dict[str, list[torch.Tensor]] = {}
    with progress_bar(total, desc, unit="item", disable=quiet) as bar:
        for batch in batches:
            with autocast(device, amp):
                features = encoder(batch.to(device, non_blocking=True))
            for name, value in features.items():
                if name not in skip:
                    parts.setdefault(name, []).append(value.float())
            bar.update(batch.shape[0])
    if not parts:
        raise ValueError(f"{desc}: no batches to encode")
    return {name: torch.cat(values) for name, values in parts.items()}


def _rows(features: Features, start: int, stop: int) -> Features:
    return {name: value[start:stop] for name, value in features.items()}


def default_chunk_size(n_gallery: int) -> int:
    """Queries per similarity chunk so that a chunk holds about CHUNK_ELEMENTS entries."""
    return max(1, CHUNK_ELEMENTS // max(1, n_gallery))


def rank_features(
    similarity: Callable[[Features, Features], torch.Tensor],
    text_features: Features,
    image_features: Features,
    query_pids: np.ndarray | torch.Tensor,
    gallery_pids: np.ndarray | torch.Tensor,
    chunk_size: int | None = None,
    top_k: int = TOP_K,
    reranking: Reranking | None = None,
    similarity_terms: dict[str, float] | None = None,
) -> ChunkRanks:
    """Per-query ranking summary, computing ``similarity`` for ``chunk_size`` queries at a time; with
    ``reranking``, each chunk is also ranked after re-scoring its top k (into ``reranking.ranks``). When
    ``similarity`` is the plain dot product of ``similarity_terms`` (``Method.similarity_terms``), the same
    scores are computed into memory reused from chunk to chunk (tir.training.term_scores)."""
    first_text = next(iter(text_features.values()))
    n_queries, device = first_text.shape[0], first_text.device
    n_gallery = next(iter(image_features.values())).shape[0]
    chunk_size = chunk_size or default_chunk_size(n_gallery)
    query_pids = torch.as_tensor(query_pids)
    gallery = GalleryPids.of(gallery_pids, device)  # sorted once for every chunk
    accumulator = MetricAccumulator()
    buffered = (TermScores(similarity_terms, image_features) if similarity_terms and all(
        name in text_features and name in image_features for name in similarity_terms) else None)
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        queries = _rows(text_features, start, stop)
        scores = buffered(queries) if buffered is not None else similarity(queries, image_features)
        accumulator.add(rank_chunk(scores, query_pids[start:stop], gallery, top_k=top_k))
        if reranking is not None:
            began = time.perf_counter()
            reranked = reranked_similarity(scores, reranking.k, lambda top: reranking.rescore(queries, image_features, top))
            reranking.ranks.add(rank_chunk(reranked, query_pids[start:stop], gallery, top_k=top_k))
            reranking.seconds += time.perf_counter() - began
    return accumulator.merged()


@torch.no_grad()
def evaluate(
    method: Method,
    data: EvalData,
    device: torch.device | str,
    chunk_size: int | None = None,
    quiet: bool = False,
    amp: torch.dtype | None = None,
    rerank_k: int = 0,
) -> EvalResult:
    """Metrics and the per-query table of ``method`` on ``data`` (see the module docstring); encoders
    run under autocast to ``amp`` (the run's setting, tir.training.precision.amp_dtype) when given. With
    ``rerank_k`` > 0 and a ``reranks`` method, also the metrics after re-ranking each query's top ``rerank_k``."""
    device = torch.device(device)
    began = time.perf_counter()
    was_training = method.training
    method.eval()
    reranking = Reranking(rerank_k, method.rerank) if rerank_k > 0 and method.reranks else None
    skip = () if reranking is not None else method.rerank_only_features
    try:
        image_features = encode(lambda images: method.encode_image(model_input(images)), data.gallery_batches(), device,
                                len(data.gallery), "gallery", quiet, amp, skip)
        text_features = encode(method.encode_text, data.query_batches(), device, len(data.queries), "queries", quiet, amp,
                               skip)
        gallery_pids = torch.tensor(data.gallery["pid"].to_numpy(np.int64), device=device)
        query_pids = torch.tensor(data.queries["pid"].to_numpy(np.int64), device=device)
        ranks = rank_features(method.similarity, text_features, image_features, query_pids, gallery_pids, chunk_size,
                              reranking=reranking, similarity_terms=method.similarity_terms)
    finally:
        method.train(was_training)
    metrics = summarise(ranks.first_rank, ranks.ap, ranks.inp)
    result = EvalResult(metrics, per_query_table(data, ranks), time.perf_counter() - began)
    if reranking is not None:
        reranked = reranking.ranks.merged()
        result.reranked = summarise(reranked.first_rank, reranked.ap, reranked.inp)
        result.reranked_per_query = per_query_table(data, reranked)
        result.rerank_seconds = reranking.seconds
    return result


def per_query_table(data: EvalData, ranks: ChunkRanks) -> pd.DataFrame:
    """One row per query: pair_index, pid, first_hit_rank (0 = none), ap, inp, n_hits, top10 image_index,
    and for failure analysis the caption, its own image_path, the best-ranked hit (first_hit_image, -1 = none;
    first_hit_path, None = none) and the top-10 image paths."""
    image_index = data.gallery["image_index"].to_numpy(np.int64)
    image_path = data.gallery["image_path"].to_numpy(object)
    top = ranks.top.numpy()
    first_hit = ranks.first_hit.numpy()
    found = first_hit >= 0
    own_path = dict(zip(image_index, image_path))
    return pd.DataFrame(
        {
            "pair_index": data.queries["pair_index"].to_numpy(np.int64),
            "pid": data.queries["pid"].to_numpy(np.int64),
            "first_hit_rank": ranks.first_rank.numpy(),
            "ap": ranks.ap.numpy(),
            "inp": ranks.inp.numpy(),
            "n_hits": ranks.n_hits.numpy(),
            "top10": list(image_index[top]),
            "caption": data.queries["caption"].to_numpy(object),
            "image_path": [own_path.get(int(i)) for i in data.queries["image_index"]],
            "first_hit_image": np.where(found, image_index[np.maximum(first_hit, 0)], -1),
            "first_hit_path": np.where(found, image_path[np.maximum(first_hit, 0)], None),
            "top10_paths": [list(row) for row in image_path[top]],
        }
    )
