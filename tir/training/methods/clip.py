"""``clip``: the plain contrastive baseline (symmetric InfoNCE on CLS / end-token features)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tir.training.losses import infonce
from tir.training.methods.base import Features, Method, StepContext, register
from tir.training.model import Backbone


@register
class Clip(Method):
    """Options: ``temperature`` (0.02: logits scaled by 50)."""

    name = "clip"

    def __init__(self, backbone: Backbone, num_classes: int, temperature: float = 0.02) -> None:
        super().__init__()
        self.backbone = backbone
        self.scale = 1.0 / temperature

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        image = self.backbone.encode_image(batch["images"])["global"]
        text = self.backbone.encode_text(batch["text"])["global"]
        return {"loss_itc": infonce(image, text, self.scale)}

    def encode_image(self, images: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_image(images)["global"].float(), dim=-1)}

    def encode_text(self, text: torch.Tensor) -> Features:
        return {"global": F.normalize(self.backbone.encode_text(text)["global"].float(), dim=-1)}

    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        return text_features["global"] @ image_features["global"].t()
