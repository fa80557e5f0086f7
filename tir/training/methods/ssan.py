"""``ssan``: SSAN (Ding et al., 2021) ported onto the CLIP backbone: part-aware alignment.

Three feature levels per modality, all from the backbone's projected tokens:

- global: the image CLS / text end-token feature;
- local (P parts, SSAN: 6): image = the patch grid cut in P horizontal stripes (tir.training.heads.parts),
  max-pooled; text = per-word sigmoid scores for the P parts over the words between the start and end
  tokens, part p the max over words of word x score_p; then one bias-free projection per part
  **shared** by image and text, and LeakyReLU(0.25) (SSAN's in-place LeakyReLU makes its local
  features the activated ones);
- non-local: the local parts through SSAN's non-local part module, shared by both modalities.

Losses (SSAN train.py): ID = ID_global + 0.5 (ID_local + ID_nonlocal), per-part classifiers shared by
both modalities; ranking = R_global + 0.5 (R_local + R_nonlocal), each SSAN's compound ranking loss
(tir.training.losses_ssan) with a caption of another image of the same identity, drawn per step.
Test similarity: the sum of the global, local and non-local cosine similarities.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tir.training.cross_captions import CrossCaptions
from tir.training.dot import dot
from tir.training.heads.parts import LEAKY_SLOPE, NonLocalParts, PerPart, WordPartScores, pool_stripes, stripe_bounds
from tir.training.losses_ssan import compound_ranking_loss, flat_normalised, part_id_loss
from tir.training.methods.base import EpochContext, EvalFigures, Features, Method, StepContext, register
from tir.training.methods.irra import identity_classifier
from tir.training.model import Backbone

LEVELS = ("global", "local", "non_local")


@register
class Ssan(Method):
    """Options: ``parts`` 6 (horizontal stripes / word-part scores), ``part_dim`` (default: the
    backbone's embedding size; SSAN: 1024 on ResNet-50), ``margin`` 0.2, ``cross_beta`` 0.1 (weight of
    the other-caption term), ``adaptive_margin_epoch`` 5 (0-based epoch from which that term's margin
    adapts; SSAN: 5), ``skip_below`` 0.16, ``part_weight`` 0.5 (local and non-local levels),
    ``id_weight`` / ``ranking_weight`` 1.0."""

    name = "ssan"
    similarity_terms = {level: 1.0 for level in LEVELS}

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        parts: int = 6,
        part_dim: int | None = None,
        margin: float = 0.2,
        cross_beta: float = 0.1,
        adaptive_margin_epoch: int = 5,
        skip_below: float = 0.16,
        part_weight: float = 0.5,
        id_weight: float = 1.0,
        ranking_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.grid: tuple[int, int] = tuple(backbone.clip.visual.grid_size)  # type: ignore[assignment]
        self.stripes = stripe_bounds(self.grid[0], parts)  # fails early on a grid too short to cut
        self.parts = parts
        self.margin, self.cross_beta, self.skip_below = margin, cross_beta, skip_below
        self.adaptive_margin_epoch = adaptive_margin_epoch
        self.part_weight, self.id_weight, self.ranking_weight = part_weight, id_weight, ranking_weight
        dim = backbone.embed_dim
        part_dim = part_dim or dim
        self.word_parts = WordPartScores(dim, parts)
        self.part_projection = PerPart(parts, dim, part_dim)
        self.non_local = NonLocalParts(parts, part_dim, part_dim // 2)
        self.global_classifier = nn.ModuleList([identity_classifier(dim, num_classes)])
        self.local_classifiers = nn.ModuleList(identity_classifier(part_dim, num_classes) for _ in range(parts))
        self.non_local_classifiers = nn.ModuleList(identity_classifier(part_dim // 2, num_classes) for _ in range(parts))
        self.cross_captions: CrossCaptions | None = None

    def new_modules(self) -> list[nn.Module]:
        return [self.word_parts, self.part_projection, self.non_local, self.global_classifier,
                self.local_classifiers, self.non_local_classifiers]

    # ------------------------------------------------------------------ features
    def _levels(self, summary: torch.Tensor, parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        local = F.leaky_relu(self.part_projection(parts), LEAKY_SLOPE)
        return summary, local, self.non_local(local)

    def image_levels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global [B, D], local [B, P, F] and non-local [B, P, F/2] image features (not normalised)."""
        out = self.backbone.encode_image(images)
        return self._levels(out["global"], pool_stripes(out["tokens"][:, 1:], self.grid, self.parts))

    def text_levels(self, text: torch.Tensor, skip_padding: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global, local and non-local caption features, as ``image_levels`` (``skip_padding``: see
        Backbone.encode_text; the word parts read valid words only)."""
        out = self.backbone.encode_text(text, skip_padding=skip_padding)
        parts, _ = self.word_parts(out["tokens"], out["valid"])
        return self._levels(out["global"], parts)

    def word_part_scores(self, text: torch.Tensor) -> torch.Tensor:
        """Each token's sigmoid score for each part [B, L, P] (0 for start, end and padding)."""
        out = self.backbone.encode_text(text)
        return self.word_parts.scores(out["tokens"], out["valid"])

    def encode_image(self, images: torch.Tensor) -> Features:
        return dict(zip(LEVELS, map(flat_normalised, self.image_levels(images))))

    def encode_text(self, text: torch.Tensor) -> Features:
        return dict(zip(LEVELS, map(flat_normalised, self.text_levels(text, skip_padding=True))))

    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        return sum(dot(text_features[level], image_features[level]) for level in LEVELS)  # type: ignore[return-value]

    # ------------------------------------------------------------------ training
    def use_train_set(self, text: torch.Tensor, pids: np.ndarray, images: np.ndarray) -> None:
        """Index the train captions by identity and image for the compound ranking loss."""
        self.cross_captions = CrossCaptions(text, pids, images)

    def on_epoch_start(self, context: EpochContext) -> dict[str, float]:
        if self.cross_captions is None:
            if context.train_set is None:
                raise RuntimeError("ssan needs the train set (EpochContext.train_set) for its other-image captions")
            train = context.train_set
            self.use_train_set(train.text, train.pids.numpy(), np.asarray(train.image_rows))
        return {}

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        if self.cross_captions is None:
            raise RuntimeError("ssan: call on_epoch_start (or use_train_set) before training steps")
        pids = batch["pids"]
        cross_text, found = self.cross_captions.draw(batch["index"], context.seed, context.epoch, context.step)
        image = self.image_levels(batch["images"])
        text = self.text_levels(batch["text"])
        cross = self.text_levels(cross_text)
        state = int(np.random.SeedSequence([context.seed, context.epoch, context.step, 1]).generate_state(1)[0])
        generator = torch.Generator(pids.device).manual_seed(state)  # the semi-hard negatives, equal on every rank
        adaptive = context.epoch >= self.adaptive_margin_epoch
        ranking = [
            compound_ranking_loss(i, t, c, found, pids, adaptive, generator, self.margin, self.cross_beta, self.skip_below)
            for i, t, c in zip(image, text, cross)
        ]
        identity = [
            part_id_loss(self.global_classifier, image[0].unsqueeze(1), text[0].unsqueeze(1), pids),
            part_id_loss(self.local_classifiers, image[1], text[1], pids),
            part_id_loss(self.non_local_classifiers, image[2], text[2], pids),
        ]
        weight = self.part_weight
        return {
            "loss_ranking": self.ranking_weight * (ranking[0] + weight * (ranking[1] + ranking[2])),
            "loss_id": self.id_weight * (identity[0] + weight * (identity[1] + identity[2])),
            "cross_found": found.float().mean(),
        }

    def eval_figures(self, figures: EvalFigures) -> dict[str, str]:
        from tir.training.part_plot import plot_part_alignment

        return {"parts_plot": str(plot_part_alignment(self, figures))}
