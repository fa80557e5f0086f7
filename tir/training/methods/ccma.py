"""``ccma``: IRRA + cross-modal Differential Attention + the Integrated Modal Alignment Loss (IMAL).

Built as CCMA's paper describes it (its public code never ran these parts; README lists where tir
departs from that code). On IRRA's backbone, cross-modal MLM module and ID classifier:

- Differential Attention across modalities: image patch tokens attend to the caption's tokens
  (padding masked) and the caption's tokens to the patches; with a residual connection, mean-pooled
  (patches; caption positions up to the end token) into a text-guided image vector and an
  image-guided text vector.
- Losses, each weighted 1 as CCMA sums them: ITC (temperature 0.02) + SDM + IMAL (on the two guided
  vectors) + CMPM + ID + MLM.
- Test similarity: cosine of the CLS / end-token features (the guided vectors are pair-dependent and
  serve training only).
"""

from __future__ import annotations

import torch
from torch import nn

from tir.errors import UserError
from tir.training.heads.diff_attention import DifferentialAttention
from tir.training.losses import infonce
from tir.training.losses_ccma import INTRA_MODAL, cmpm, imal
from tir.training.methods.base import Features, StepContext, register
from tir.training.methods.irra import Irra
from tir.training.model import Backbone


@register
class Ccma(Irra):
    """Options: IRRA's (``temperature`` 0.02, ``sdm_weight`` / ``id_weight`` / ``mlm_weight`` 1.0,
    ``mlm_probability`` 0.15, ``cmt_depth`` 4, ``irra_mask_leak`` False), ``itc_weight`` / ``imal_weight``
    / ``cmpm_weight`` 1.0, ``intra_modal`` "reference" (the code's cross-modal term) or "paper" (a true
    intra-modal term; see tir.training.losses_ccma.imal), ``imal_temperature`` 0.5, ``imal_gamma`` 0.05,
    ``imal_kl_weight`` 0.005, ``diff_heads`` 4 (differential heads, each two query/key sub-heads:
    8 x 64 channels at width 512), ``lambda_init`` 0.8, ``diff_dropout`` 0.1."""

    name = "ccma"

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        temperature: float = 0.02,
        itc_weight: float = 1.0,
        sdm_weight: float = 1.0,
        imal_weight: float = 1.0,
        cmpm_weight: float = 1.0,
        id_weight: float = 1.0,
        mlm_weight: float = 1.0,
        mlm_probability: float = 0.15,
        cmt_depth: int = 4,
        irra_mask_leak: bool = False,
        intra_modal: str = "reference",
        imal_temperature: float = 0.5,
        imal_gamma: float = 0.05,
        imal_kl_weight: float = 0.005,
        diff_heads: int = 4,
        lambda_init: float = 0.8,
        diff_dropout: float = 0.1,
    ) -> None:
        super().__init__(backbone, num_classes, temperature, sdm_weight, id_weight, mlm_weight,
                         mlm_probability, cmt_depth, irra_mask_leak)
        if intra_modal not in INTRA_MODAL:
            raise UserError(f"ccma: method_options.intra_modal is {intra_modal!r}; set one of {', '.join(INTRA_MODAL)}")
        dim = backbone.embed_dim
        if diff_heads < 1 or dim % (2 * diff_heads):
            raise UserError(f"ccma: method_options.diff_heads={diff_heads} does not fit width {dim}; "
                            f"pick a number of heads h with {dim} divisible by 2h (ViT-B-16: 4)")
        self.weights.update(itc=itc_weight, imal=imal_weight, cmpm=cmpm_weight)
        self.imal_options = {"intra_modal": intra_modal, "temperature": imal_temperature,
                             "gamma": imal_gamma, "kl_weight": imal_kl_weight}
        self.text_guided_image = DifferentialAttention(dim, diff_heads, lambda_init, diff_dropout)
        self.image_guided_text = DifferentialAttention(dim, diff_heads, lambda_init, diff_dropout)

    def new_modules(self) -> list[nn.Module]:
        return [*super().new_modules(), self.text_guided_image, self.image_guided_text]

    def guided(self, image: Features, caption: Features, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The text-guided image vector and the image-guided text vector [B, D] of each pair."""
        patches, words = image["tokens"][:, 1:], caption["tokens"]
        end = (text == self.backbone.eot_id).int().argmax(dim=1)
        present = torch.arange(text.shape[1], device=text.device)[None, :] <= end[:, None]  # start .. end token
        guided_image = patches + self.text_guided_image(patches, words, present)
        guided_text = words + self.image_guided_text(words, patches)
        weights = present.to(guided_text.dtype)[..., None]
        return guided_image.mean(dim=1), (guided_text * weights).sum(dim=1) / weights.sum(dim=1)

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        image, caption, logits, labels = self.encode_pair(batch, context)
        pids = batch["pids"]
        out = self.irra_losses(image, caption, logits, labels, pids)
        guided_image, guided_text = self.guided(image, caption, batch["text"])
        out["loss_itc"] = self.weights["itc"] * infonce(image["global"], caption["global"], self.scale)
        out["loss_imal"] = self.weights["imal"] * imal(guided_image, guided_text, pids, self.scale, **self.imal_options)
        out["loss_cmpm"] = self.weights["cmpm"] * cmpm(image["global"], caption["global"], pids)
        out["lambda"] = self.text_guided_image.lambda_value().detach()
        return out
