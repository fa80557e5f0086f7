"""RDE's Triplet Alignment Loss (TAL).

For a batch with cosine similarities ``S[i, j]`` between text i and image j, and positives P(i) =
the batch items with the same person id (the pair itself included), the loss of text i is::

    [ m - sum_{j in P(i)} a_ij S_ij + tau * log sum_{j not in P(i)} exp(S_ij / tau) ]_+

with ``a_i = softmax_{j in P(i)}(S_ij / tau)`` detached, and the same for image i over the columns.
A pair's loss is the sum of its text's and its image's losses. The log-sum-exp term is a smooth
maximum over negatives (the hardest negative as tau -> 0); a row without negatives has loss 0.
Computed in float32 outside autocast (tir.training.precision).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tir.training.distributed import all_gather_no_grad, all_gather_with_grad
from tir.training.precision import float32_body

NO_NEGATIVE = -1.0e4  # finite stand-in for log(0), so rows without negatives give 0 loss and 0 gradient


def _one_direction(scores: torch.Tensor, positive: torch.Tensor, tau: float, margin: float) -> torch.Tensor:
    logits = scores / tau
    weights = torch.softmax(logits.masked_fill(~positive, float("-inf")), dim=1).detach()
    pulled = (weights * scores).sum(dim=1)
    pushed = tau * torch.logsumexp(logits.masked_fill(positive, NO_NEGATIVE), dim=1)
    return (margin - pulled + pushed).clamp(min=0)


@float32_body
def tal_per_sample(
    image: torch.Tensor, text: torch.Tensor, pids: torch.Tensor, tau: float = 0.015, margin: float = 0.1
) -> torch.Tensor:
    """TAL of each pair [B] (text->image plus image->text) for features [B, D] of one batch."""
    image = F.normalize(image.float(), dim=-1)
    text = F.normalize(text.float(), dim=-1)
    scores = text @ image.t()
    positive = pids.view(-1, 1) == pids.view(1, -1)
    return _one_direction(scores, positive, tau, margin) + _one_direction(scores.t(), positive, tau, margin)


@float32_body
def weighted_tal(
    image: torch.Tensor,
    text: torch.Tensor,
    pids: torch.Tensor,
    weights: torch.Tensor,
    tau: float = 0.015,
    margin: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over the (gathered) batch of ``weights * TAL`` as RDE optimises it, and the per-pair TAL.

    Features, pids and weights are gathered from every rank (features with gradients), so every rank
    computes the loss of the combined batch, as the IRRA-family losses in tir.training.losses do.
    """
    image, text = all_gather_with_grad(image.float()), all_gather_with_grad(text.float())
    pids, weights = all_gather_no_grad(pids), all_gather_no_grad(weights.float())
    per_sample = tal_per_sample(image, text, pids, tau, margin)
    return (weights * per_sample).sum(), per_sample.detach()
