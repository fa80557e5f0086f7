"""Test-time retrieval mixins: global features alone, or global plus token-selected features."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from tir.training.dot import dot
from tir.training.heads.token_selection import TokenSelectionEmbedding
from tir.training.methods.base import Features
from tir.training.model import Backbone


class GlobalRetrieval:
    """Mixin for methods that rank by cosine similarity of the backbone's global features."""

    backbone: Backbone
    similarity_terms: ClassVar[dict[str, float] | None] = {"global": 1.0}

    def encode_image(self, images: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_image(images)["global"].float(), dim=-1)}

    def encode_text(self, text: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_text(text, skip_padding=True)["global"].float(), dim=-1)}

    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        return dot(text_features["global"], image_features["global"])


class GlobalAndSelectedRetrieval:
    """Mixin for methods that rank by the mean of two cosine similarities: global features (CLS / end
    token) and token-selection embeddings (``image_select`` / ``text_select``), as RDE and HKGR do."""

    backbone: Backbone
    similarity_terms: ClassVar[dict[str, float] | None] = {"global": 0.5, "selected": 0.5}
    image_select: TokenSelectionEmbedding
    text_select: TokenSelectionEmbedding

    @staticmethod
    def selected(select: TokenSelectionEmbedding, features: Features) -> torch.Tensor:
        """The token-selection embedding of backbone ``features`` (encoded with ``attention=True``)."""
        return select(features["tokens"], features["attention"], features["valid"])

    @classmethod
    def _both(cls, select: TokenSelectionEmbedding, features: Features) -> Features:
        return {
            "global": F.normalize(features["global"].float(), dim=-1),
            "selected": F.normalize(cls.selected(select, features).float(), dim=-1),
        }

    def encode_image(self, images: torch.Tensor) -> Features:
        return self._both(self.image_select, self.backbone.encode_image(images, attention=True))

    def encode_text(self, text: torch.Tensor) -> Features:
        # token selection pools valid words only (and k counts all L positions), so padding may be skipped
        features = self.backbone.encode_text(text, attention=True, skip_padding=True)
        return {**self._both(self.text_select, features), "token_weights": self.kept_attention(features)}

    def kept_attention(self, features: Features) -> torch.Tensor:
        """[B, L]: the end token's attention on the words token selection keeps, 0 elsewhere (the words a
        search shows as attended to)."""
        valid, scores = features["valid"], features["attention"].float()
        keep = torch.clamp((valid.sum(dim=1).float() * self.text_select.ratio).floor().long(), min=1)
        order = scores.masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True)
        ranks = torch.arange(valid.shape[1], device=valid.device).expand_as(order)
        kept = torch.zeros_like(valid).scatter_(1, order, ranks < keep[:, None])
        return torch.where(kept & valid, scores, torch.zeros_like(scores))

    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        whole = dot(text_features["global"], image_features["global"])
        selected = dot(text_features["selected"], image_features["selected"])
        return (whole + selected) / 2
