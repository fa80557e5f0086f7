"""``clip``: the plain contrastive baseline (symmetric InfoNCE on CLS / end-token features)."""

from __future__ import annotations

import torch

from tir.training.losses import infonce
from tir.training.methods.base import Method, StepContext, register
from tir.training.methods.global_retrieval import GlobalRetrieval
from tir.training.model import Backbone


@register
class Clip(GlobalRetrieval, Method):
    """Options: ``temperature`` (0.02: logits scaled by 50)."""

    name = "clip"
    uses_mask_plans = False

    def __init__(self, backbone: Backbone, num_classes: int, temperature: float = 0.02) -> None:
        super().__init__()
        self.backbone = backbone
        self.scale = 1.0 / temperature

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        image = self.backbone.encode_image(batch["images"])["global"]
        text = self.backbone.encode_text(batch["text"])["global"]
        return {"loss_itc": infonce(image, text, self.scale)}
