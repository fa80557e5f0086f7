"""CFACK's losses: identity-aware contrast over six feature pairs (+ the CNN pair), hard negatives, matching.

Reference: AIVIETNAMResearch/Pedestrian-Matching 69eb7d1, models/xvlm.py (get_contrastive_loss 804-839,
get_hard_negatives 875-904, get_matching_loss 906-947) and models/model_retrieval.py (the six pairs).
Features passed in are L2-normalised; ``temperature`` is the learnable scalar (logits = a . b / t).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tir.training.distributed import all_gather_no_grad, all_gather_with_grad


class LearnableTemperature(nn.Module):
    """CFACK's ITC temperature: a trained scalar (initially 0.07) clamped in place to [low, high] before use."""

    def __init__(self, initial: float = 0.07, low: float = 0.001, high: float = 0.5) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(initial)))
        self.low, self.high = low, high

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            self.value.clamp_(self.low, self.high)
        return self.value


def identity_contrast(a: torch.Tensor, b: torch.Tensor, pids: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of ``a @ b.T / temperature`` against soft targets spread evenly over the
    same-identity pairs, averaged over both directions; features gathered from every rank."""
    a_all, b_all = all_gather_with_grad(a.float()), all_gather_with_grad(b.float())
    pids_all = all_gather_no_grad(pids).view(-1, 1)
    with torch.autocast(a.device.type, enabled=False):  # float32 logits under mixed precision
        logits = a_all @ b_all.t() / temperature.float()
        same = (pids_all == pids_all.t()).float()
        targets = same / same.sum(dim=1, keepdim=True)
        a_to_b = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
        b_to_a = -(F.log_softmax(logits.t(), dim=1) * targets).sum(dim=1).mean()
    return (a_to_b + b_to_a) / 2


def six_pair_contrast(
    online_image: torch.Tensor,
    online_text: torch.Tensor,
    momentum_image: torch.Tensor,
    momentum_text: torch.Tensor,
    pids: torch.Tensor,
    temperature: torch.Tensor,
    cnn: torch.Tensor | None = None,
    cnn_weight: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CFACK's complete feature aggregation: the mean of the six pairs of {online, momentum} x {image, text}
    (the momentum-momentum pair trains only the temperature), plus ``cnn_weight`` x (online image, CNN)
    when ``cnn`` features are given, divided by 6 + cnn_weight as the reference does (6.5).
    Returns the loss and each pair's term (detached, for logging)."""
    pairs = {
        "oi_ot": (online_image, online_text),
        "oi_mt": (online_image, momentum_text),
        "mi_ot": (momentum_image, online_text),
        "mi_mt": (momentum_image, momentum_text),
        "oi_mi": (online_image, momentum_image),
        "ot_mt": (online_text, momentum_text),
    }
    terms = {name: identity_contrast(a, b, pids, temperature) for name, (a, b) in pairs.items()}
    total, divisor = sum(terms.values()), float(len(terms))
    if cnn is not None:
        terms["oi_cnn"] = identity_contrast(online_image, cnn, pids, temperature)
        total, divisor = total + cnn_weight * terms["oi_cnn"], divisor + cnn_weight
    return total / divisor, {name: value.detach() for name, value in terms.items()}


@torch.no_grad()
def hard_negatives(
    image: torch.Tensor,
    text: torch.Tensor,
    pids: torch.Tensor,
    temperature: torch.Tensor | float,
    generator: torch.Generator | None = None,
    hardness: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One hard negative per image and per text of the local batch.

    A text's negative image is drawn with probability proportional to softmax(hardness x text . image / t)
    + 1e-5 over the images of other identities (same identity: probability 0), and likewise for an image's
    negative text: ``hardness`` 1 is CFACK's sampler, 0 draws uniformly among the other identities.
    Returns (negative image of each text [B], negative text of each image [B], and whether each text /
    image has any other identity in the batch [B] bool); rows without one get index 0, to be dropped by
    the caller.
    """
    with torch.autocast(image.device.type, enabled=False):
        similarity = image.float() @ text.float().t() * (hardness / temperature)
    same = pids.view(-1, 1) == pids.view(1, -1)
    draws = []
    for scores in (similarity.t(), similarity):  # text -> image, then image -> text
        weights = (F.softmax(scores, dim=1) + 1e-5).masked_fill(same, 0.0)
        has_negative = weights.sum(dim=1) > 0
        weights = torch.where(has_negative[:, None], weights, torch.ones_like(weights))
        chosen = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        draws.append((torch.where(has_negative, chosen, torch.zeros_like(chosen)), has_negative))
    (image_for_text, text_ok), (text_for_image, image_ok) = draws
    return image_for_text, text_for_image, text_ok, image_ok


def matching_loss(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> torch.Tensor:
    """2-way cross-entropy over matched pairs (label 1) and hard-negative pairs (label 0), averaged over all."""
    logits = torch.cat([positive_logits, negative_logits]).float()
    labels = torch.cat([
        torch.ones(positive_logits.shape[0], dtype=torch.long, device=logits.device),
        torch.zeros(negative_logits.shape[0], dtype=torch.long, device=logits.device),
    ])
    return F.cross_entropy(logits, labels)
