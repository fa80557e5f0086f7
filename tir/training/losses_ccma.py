"""CCMA's losses beyond IRRA's: the Integrated Modal Alignment Loss (IMAL) and CMPM.

Both gather features from every rank with gradients (as tir.training.losses does), so a distributed
step optimises the objective of one process on the combined batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tir.training.distributed import all_gather_no_grad, all_gather_with_grad
from tir.training.losses import sdm

INTRA_MODAL = ("reference", "paper")


def imal(
    image: torch.Tensor,
    text: torch.Tensor,
    pids: torch.Tensor,
    scale: float,
    intra_modal: str = "reference",
    temperature: float = 0.5,
    gamma: float = 0.05,
    kl_weight: float = 0.005,
    eps: float = 1e-8,
) -> torch.Tensor:
    """IMAL as CCMA's objectives.py (120-184) computes it, with its arguments put right.

    ``scores = exp(clamp(cos / temperature, -10, 10))`` over the batch's image x text pairs; the
    image->text InfoNCE on ``scores``; plus ``gamma`` x the "intra-modal" term; plus ``kl_weight`` x
    the mean of KL(uniform 1/B^2 || row softmax) over rows and over columns. ``intra_modal``:
    ``reference`` is the code's term, an InfoNCE of ``scale`` x the same image.text cosines (exponent
    clamped to [-10, 10]), i.e. cross-modal; ``paper`` is a true intra-modal term, SDM's KL of the
    image-image and of the text-text similarity rows (``scale`` x cosine) to the same-identity rows,
    averaged over the two modalities.
    """
    if intra_modal not in INTRA_MODAL:
        raise ValueError(f"intra_modal must be one of {INTRA_MODAL}, got {intra_modal!r}")
    local_image, local_text = image, text
    image = all_gather_with_grad(F.normalize(image.float(), dim=-1, eps=eps))
    text = all_gather_with_grad(F.normalize(text.float(), dim=-1, eps=eps))
    size = image.shape[0]
    cosine = image @ text.t()
    scores = torch.exp(torch.clamp(cosine / temperature, -10.0, 10.0))
    row_sums, column_sums = scores.sum(dim=1) + eps, scores.sum(dim=0) + eps
    cross = -torch.log((scores.diagonal() + eps) / row_sums).mean()
    if intra_modal == "reference":
        exponents = torch.exp(torch.clamp(scale * cosine, -10.0, 10.0))
        intra = -torch.log((exponents.diagonal() + eps) / (exponents.sum(dim=1) + eps)).mean()
    else:
        intra = (sdm(local_image, local_image, pids, scale) + sdm(local_text, local_text, pids, scale)) / 4
    uniform = 1.0 / (size * size + eps)
    kl = image.new_zeros(())
    for rows in (scores / row_sums[:, None], scores.t() / column_sums[:, None]):
        kl = kl + (uniform * (math.log(uniform) - torch.log(rows + eps))).sum(dim=1).mean()
    return cross + gamma * intra + kl_weight * kl / 2


def cmpm(image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cross-Modal Projection Matching (Zhang & Lu 2018; CCMA objectives.py 85-118).

    Each feature is projected on the other modality's unit vectors (no temperature); the softmax of a
    row is matched by KL to the L2-normalised same-identity row, image->text plus text->image.
    """
    image = all_gather_with_grad(image.float())
    text = all_gather_with_grad(text.float())
    pids = all_gather_no_grad(pids)
    same = (pids.view(-1, 1) == pids.view(1, -1)).float()
    log_target = torch.log(same / same.norm(dim=1, keepdim=True) + eps)
    loss = image.new_zeros(())
    for source, target in ((image, text), (text, image)):
        log_p = F.log_softmax(source @ F.normalize(target, dim=-1).t(), dim=1)
        loss = loss + (log_p.exp() * (log_p - log_target)).sum(dim=1).mean()
    return loss
