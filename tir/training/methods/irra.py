"""``irra``: IRRA = SDM + ID + implicit relation reasoning (MLM through a cross-modal transformer).

``irra_mask_leak=True`` reproduces the published code's behaviour where the masked caption also
feeds SDM and ID (its numbers depend on it); by default SDM and ID see the clean caption.
"""

from __future__ import annotations

import torch
from torch import nn

from tir.training.heads.cross_modal import CrossModalMLM
from tir.training.losses import id_loss, mlm_accuracy, mlm_loss, sdm
from tir.training.lr_rules import LrRule
from tir.training.methods.base import Features, Method, StepContext, register
from tir.training.methods.global_retrieval import GlobalRetrieval
from tir.training.mlm import mlm_rows, random_token_mask
from tir.training.model import Backbone


def identity_classifier(dim: int, num_classes: int) -> nn.Linear:
    """IRRA's classifier shared by both modalities (weights N(0, 0.001), bias 0)."""
    layer = nn.Linear(dim, num_classes)
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return layer


@register
class Irra(GlobalRetrieval, Method):
    """Options: ``temperature`` 0.02, ``sdm_weight`` / ``id_weight`` / ``mlm_weight`` 1.0,
    ``mlm_probability`` 0.15, ``cmt_depth`` 4, ``irra_mask_leak`` False."""

    name = "irra"
    uses_mask_plans = False

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        temperature: float = 0.02,
        sdm_weight: float = 1.0,
        id_weight: float = 1.0,
        mlm_weight: float = 1.0,
        mlm_probability: float = 0.15,
        cmt_depth: int = 4,
        irra_mask_leak: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.scale = 1.0 / temperature
        self.weights = {"sdm": sdm_weight, "id": id_weight, "mlm": mlm_weight}
        self.mlm_probability = mlm_probability
        self.mask_leak = irra_mask_leak
        dim = backbone.embed_dim
        self.classifier = identity_classifier(dim, num_classes)
        self.cross_modal = CrossModalMLM(dim, backbone.vocab_size, depth=cmt_depth)

    def new_modules(self) -> list[nn.Module]:
        return [self.classifier, self.cross_modal]

    def lr_rules(self) -> list[LrRule]:
        """IRRA's rates: the classifier at the new-module rate, the cross-modal module as CrossModalMLM says."""
        return [LrRule(self.classifier), *self.cross_modal.lr_rules()]

    def encode_pair(
        self, batch: dict[str, torch.Tensor], context: StepContext
    ) -> tuple[Features, Features, torch.Tensor, torch.Tensor]:
        """Image features, caption features (clean, or the masked caption's with ``irra_mask_leak``),
        and the MLM logits with their labels at the rows ``mlm_rows`` picks (-100 where none is masked)."""
        backbone, text = self.backbone, batch["text"]
        masked, labels = random_token_mask(
            text,
            batch["pair_index"],
            epoch=context.epoch,
            seed=context.seed,
            mask_token_id=backbone.mask_token_id,
            vocab_size=backbone.vocab_size,
            special_ids=(backbone.sot_id, backbone.eot_id),
            probability=self.mlm_probability,
        )
        image = backbone.encode_image(batch["images"])
        masked_text = backbone.encode_text(masked)
        caption = masked_text if self.mask_leak else backbone.encode_text(text)
        rows, labels = mlm_rows(labels, width=labels.shape[1])  # any position may be masked
        logits = self.cross_modal(masked_text["tokens"], image["tokens"], rows)
        return image, caption, logits, labels

    def irra_losses(
        self, image: Features, caption: Features, logits: torch.Tensor, labels: torch.Tensor, pids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """SDM, ID and MLM losses (weighted) and the MLM accuracy, from ``encode_pair``'s outputs."""
        out = {
            "loss_sdm": self.weights["sdm"] * sdm(image["global"], caption["global"], pids, self.scale),
            "loss_id": self.weights["id"]
            * id_loss(self.classifier(image["global"]), self.classifier(caption["global"]), pids),
            "loss_mlm": self.weights["mlm"] * mlm_loss(logits, labels),
        }
        out["mlm_acc"] = mlm_accuracy(logits.detach(), labels)
        return out

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        return self.irra_losses(*self.encode_pair(batch, context), batch["pids"])
