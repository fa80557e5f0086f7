"""Re-ranking each query's top k: a method re-scores its best candidates, the rest keep their order.

``reranked_similarity(scores, k, rescore)`` returns a similarity matrix whose ranking (stable
descending sort, as tir.training.metrics ranks) puts the k best candidates of each query by ``scores``
first, ordered by their new scores (ties keep the old order), followed by every other gallery item in
its old order. Only the top k of a ranking change, and only in order: CFACK's test (Retrieval.py
164-171) scores the top 128 by its matching head and sets the rest to -100.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tir.training.metrics import top_indices


def reranked_similarity(
    scores: torch.Tensor, k: int, rescore: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``scores`` [q, G] with each row's top ``k`` re-ordered by ``rescore(candidates [q, k]) -> [q, k]``
    (higher first) and placed above the rest; returned as float64 [q, G]."""
    candidates = top_indices(scores, k)  # best first, ties in gallery order
    new = rescore(candidates).to(scores.device)
    if new.shape != candidates.shape:
        raise ValueError(f"rescore returned shape {tuple(new.shape)} for candidates {tuple(candidates.shape)}")
    width = candidates.shape[1]
    within = torch.sort(-new.double(), dim=1, stable=True).indices  # candidate positions in the new order
    out = scores.double().clone()
    above = out.max(dim=1, keepdim=True).values + 1.0  # every re-ranked value exceeds all others of its row
    places = above + torch.arange(width, 0, -1, device=out.device, dtype=out.dtype)  # distinct, decreasing
    out.scatter_(1, candidates.gather(1, within), places)
    return out
