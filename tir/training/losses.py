"""Losses of the IRRA family. Features are L2-normalised here; ``scale`` is 1 / temperature.
Loss bodies run in float32, outside autocast (tir.training.precision).

Batch-level losses (``infonce``, ``sdm``) gather features from every rank with gradients, so a
distributed step optimises the same objective as one process on the combined batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tir.training.distributed import all_gather_no_grad, all_gather_with_grad
from tir.training.precision import float32_body

IGNORE_INDEX = -100


def _gathered(image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor | None = None):
    image = all_gather_with_grad(F.normalize(image.float(), dim=-1))
    text = all_gather_with_grad(F.normalize(text.float(), dim=-1))
    return image, text, (all_gather_no_grad(pids) if pids is not None else None)


@float32_body
def infonce(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's symmetric contrastive loss: the i-th text matches the i-th image only."""
    image, text, _ = _gathered(image, text)
    logits = scale * text @ image.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


@float32_body
def sdm(image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor, scale: float, eps: float = 1e-8) -> torch.Tensor:
    """IRRA's similarity distribution matching: KL(p || q) image->text plus text->image.

    p is the softmax of the scaled cosine similarities of a row, q the row-normalised
    same-identity matrix.
    """
    image, text, pids = _gathered(image, text, pids)
    same = (pids.view(-1, 1) == pids.view(1, -1)).float()
    target = same / same.sum(dim=1, keepdim=True)
    image_to_text = scale * image @ text.t()
    loss = image.new_zeros(())
    for logits in (image_to_text, image_to_text.t()):
        log_p = F.log_softmax(logits, dim=1)
        loss = loss + (log_p.exp() * (log_p - torch.log(target + eps))).sum(dim=1).mean()
    return loss


@float32_body
def id_loss(image_logits: torch.Tensor, text_logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Identity classification with one classifier shared by both modalities: mean of the two CEs."""
    return (F.cross_entropy(image_logits.float(), pids) + F.cross_entropy(text_logits.float(), pids)) / 2


@float32_body
def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` [n, V] against ``labels`` [n] over the rows whose label is not
    IGNORE_INDEX (tir.training.mlm.mlm_rows); 0 if none. No host read: the row count stays on the device."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def mlm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of labelled rows (not IGNORE_INDEX) whose token is predicted exactly (for logging); 0 if none."""
    hits = (logits.argmax(-1) == labels).sum()  # an IGNORE_INDEX row never matches
    return hits.float() / (labels != IGNORE_INDEX).sum().clamp(min=1)
