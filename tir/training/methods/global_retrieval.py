"""Test-time retrieval on the normalised global embedding (CLS for images, end token for text)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tir.training.methods.base import Features
from tir.training.model import Backbone


class GlobalRetrieval:
    """Mixin for methods that rank by cosine similarity of the backbone's global features."""

    backbone: Backbone

    def encode_image(self, images: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_image(images)["global"].float(), dim=-1)}

    def encode_text(self, text: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_text(text)["global"].float(), dim=-1)}

    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        return text_features["global"] @ image_features["global"].t()
