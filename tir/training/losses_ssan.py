"""SSAN's losses: per-part identity loss and the compound ranking loss (zifyloo/SSAN, RankingLoss.py).

Features of one level (global [B, D], local or non-local parts [B, P, D]) are compared by the cosine
of the whole flattened vector, as SSAN does. The ranking term of a level is a bidirectional triplet
loss, **summed** over anchors, with one semi-hard negative per anchor drawn at random among those
with ``s_pos - margin < s_neg < s_pos`` (different identity); an anchor without one adds nothing.
The compound term adds ``beta`` x the same loss where the positive is a caption of *another* image
of the anchor's identity, with margin ``margin / 2`` before the adaptive epoch and from then on
``(min(|s_cr| / |s|, 1) + 1) x margin / 2`` per pair (``s``, ``s_cr``: the pair's cosine with its own
and with the other caption), anchors whose adaptive margin is below ``skip_below`` (0.16) skipped.

Departures from the reference, both on degenerate batches: where a direction finds no semi-hard
negative at all, the reference falls back to one arbitrary triplet (the last anchor, its first
negative); tir adds nothing. Pairs whose identity has a single image have no other caption: they
take no part in the compound term (SSAN drops those identities from the data instead).
Distributed: features are gathered from every rank and each rank draws the same negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tir.training.distributed import all_gather_no_grad, all_gather_with_grad


def flat_normalised(features: torch.Tensor) -> torch.Tensor:
    """Features [B, ...] flattened per row and L2-normalised (SSAN's ``norm + 1e-8``)."""
    flat = features.float().reshape(features.shape[0], -1)
    return flat / (flat.norm(dim=1, keepdim=True) + 1e-8)


def semi_hard_triplets(
    similarity: torch.Tensor,
    pids: torch.Tensor,
    margin: torch.Tensor,
    anchors: torch.Tensor,
    negatives: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Summed triplet loss of the anchors (rows) of ``similarity`` [B, B], positive on the diagonal.

    ``margin`` [B] per anchor; ``anchors`` [B] bool which rows take part; ``negatives`` [B] bool which
    columns may be negatives (besides a different identity). One semi-hard negative per anchor is
    drawn uniformly with ``generator`` (on ``similarity``'s device, so the draw is not copied there).
    """
    positive = similarity.diagonal()
    detached = similarity.detach()
    gap = detached - positive.detach().unsqueeze(1) + margin.unsqueeze(1)  # loss of each candidate
    candidate = (gap > 0) & (gap < margin.unsqueeze(1)) & (pids.view(-1, 1) != pids.view(1, -1))
    candidate &= anchors.view(-1, 1) & negatives.view(1, -1)
    draw = torch.rand(similarity.shape, generator=generator, device=similarity.device)
    chosen = torch.where(candidate, draw, torch.full_like(draw, -1.0)).argmax(dim=1)
    has = candidate.any(dim=1)
    rows = torch.arange(similarity.shape[0], device=similarity.device)
    losses = F.relu(margin - positive + similarity[rows, chosen])
    return (losses * has).sum()


def cross_margin(match_cross: torch.Tensor, match: torch.Tensor, margin: float) -> torch.Tensor:
    """SSAN's adaptive margin of the compound term: ``(min(|s_cr| / |s|, 1) + 1) x margin / 2`` (no gradient)."""
    ratio = (match_cross.detach().abs() / match.detach().abs()).nan_to_num(nan=1.0).clamp(max=1.0)
    return (ratio + 1.0) * margin / 2.0


def compound_ranking_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    cross_text: torch.Tensor,
    has_cross: torch.Tensor,
    pids: torch.Tensor,
    adaptive: bool,
    generator: torch.Generator,
    margin: float = 0.2,
    beta: float = 0.1,
    skip_below: float = 0.16,
) -> torch.Tensor:
    """SSAN's compound ranking loss of one feature level (see the module docstring).

    ``image``, ``text``, ``cross_text`` [B, ...]: the pair's image and caption features and those of a
    caption of another image of the same identity; ``has_cross`` [B] bool whether such a caption exists.
    """
    image = all_gather_with_grad(flat_normalised(image))
    text = all_gather_with_grad(flat_normalised(text))
    cross = all_gather_with_grad(flat_normalised(cross_text))
    pids, has_cross = all_gather_no_grad(pids), all_gather_no_grad(has_cross)
    everyone = torch.ones_like(has_cross)
    similarity, similarity_cross = image @ text.t(), image @ cross.t()
    fixed = torch.full(pids.shape, margin, device=image.device)
    loss = semi_hard_triplets(similarity, pids, fixed, everyone, everyone, generator)
    loss = loss + semi_hard_triplets(similarity.t(), pids, fixed, everyone, everyone, generator)
    if adaptive:
        margin_cross = cross_margin(similarity_cross.diagonal(), similarity.diagonal(), margin)
        anchors = has_cross & (margin_cross >= skip_below)
    else:
        margin_cross, anchors = fixed / 2.0, has_cross
    # image anchors meet other captions (only those that exist); caption anchors meet every image
    cross_loss = semi_hard_triplets(similarity_cross, pids, margin_cross, anchors, has_cross, generator)
    cross_loss = cross_loss + semi_hard_triplets(similarity_cross.t(), pids, margin_cross, anchors, everyone, generator)
    return loss + beta * cross_loss


def part_id_loss(classifiers: torch.nn.ModuleList, image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """SSAN's ID loss of one level: per part (one classifier shared by both modalities) the image CE
    plus the text CE, averaged over parts. ``image``, ``text`` [B, P, D]."""
    total = image.new_zeros((), dtype=torch.float32)
    for p, classifier in enumerate(classifiers):
        total = total + F.cross_entropy(classifier(image[:, p]).float(), pids)
        total = total + F.cross_entropy(classifier(text[:, p]).float(), pids)
    return total / len(classifiers)
