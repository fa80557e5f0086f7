"""``hkgr``: knowledge-guided MLM from the mask plans + multi-granularity alignment (MGA).

MLM: per sample one strategy among random / object / attribute / relation (``mask_policy``, HKGR:
uniform); graph items of the chosen level are masked whole (tir.knowledge.masking). MGA: SDM on the
CLS / end-token features (coarse) and on token-selection embeddings (fine: the 30% most attended
positions from the summary token, L2-normalised, Linear + MLP with BatchNorm to 1024-d, max-pooled;
tir.training.heads.token_selection). ID loss as IRRA.
Test similarity: the mean of the coarse and fine cosine similarities.
"""

from __future__ import annotations

import torch
from torch import nn

from tir.errors import UserError
from tir.knowledge.masking import MaskPolicy, mask_tokens
from tir.training.heads.cross_modal import CrossModalMLM
from tir.training.heads.token_selection import TokenSelectionEmbedding
from tir.training.losses import id_loss, mlm_accuracy, mlm_loss, sdm
from tir.training.lr_rules import LrRule
from tir.training.methods.base import Method, StepContext, register
from tir.training.methods.global_retrieval import GlobalAndSelectedRetrieval
from tir.training.methods.irra import identity_classifier
from tir.training.mlm import mlm_rows
from tir.training.model import Backbone

PLAN_KEYS = ("word_ids", "level", "element")


@register
class Hkgr(GlobalAndSelectedRetrieval, Method):
    """Options: ``temperature`` 0.02, ``sdm_weight`` / ``fine_weight`` / ``id_weight`` / ``mlm_weight`` 1.0
    (``id_weight`` 0: no classifier, as HKGR's CUHK-PEDES run without ``id`` in its losses),
    ``mask_policy`` "uniform" (or e.g. "0:object,10:uniform"), ``mask_ratio`` 0.3 (share of a level's
    items), ``random_rate`` 0.15 (words, random strategy), ``select_ratio`` 0.3, ``tse_dim`` 1024,
    ``cmt_depth`` 4, ``select_lr_factor`` 10.0 (the token-selection layers, biases included, train at
    lr x this: HKGR solver/build.py; the cross-modal module and the classifier follow IRRA's rates)."""

    name = "hkgr"
    uses_mask_plans = True

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        temperature: float = 0.02,
        sdm_weight: float = 1.0,
        fine_weight: float = 1.0,
        id_weight: float = 1.0,
        mlm_weight: float = 1.0,
        mask_policy: str = "uniform",
        mask_ratio: float = 0.3,
        random_rate: float = 0.15,
        select_ratio: float = 0.3,
        tse_dim: int = 1024,
        cmt_depth: int = 4,
        select_lr_factor: float = 10.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.scale = 1.0 / temperature
        self.weights = {"sdm": sdm_weight, "fine": fine_weight, "id": id_weight, "mlm": mlm_weight}
        self.policy = MaskPolicy.parse(mask_policy)
        self.mask_ratio, self.random_rate = mask_ratio, random_rate
        self.select_lr_factor = select_lr_factor
        dim = backbone.embed_dim
        self.image_select = TokenSelectionEmbedding(dim, tse_dim, select_ratio)
        self.text_select = TokenSelectionEmbedding(dim, tse_dim, select_ratio, special_tokens=2)
        self.classifier = identity_classifier(dim, num_classes) if id_weight else None
        self.cross_modal = CrossModalMLM(dim, backbone.vocab_size, depth=cmt_depth)

    def new_modules(self) -> list[nn.Module]:
        classifier = [self.classifier] if self.classifier is not None else []
        return [self.image_select, self.text_select, *classifier, self.cross_modal]

    def lr_rules(self) -> list[LrRule]:
        selection = [LrRule(module, factor=self.select_lr_factor) for module in (self.image_select, self.text_select)]
        classifier = [LrRule(self.classifier)] if self.classifier is not None else []
        return [*selection, *classifier, *self.cross_modal.lr_rules()]

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        if any(key not in batch for key in PLAN_KEYS):
            raise UserError("method hkgr needs mask plans: run `tir plan-masks` for the dataset (mask_plans.parquet)")
        backbone, text, pids = self.backbone, batch["text"], batch["pids"]
        masked, labels = mask_tokens(
            text,
            batch["word_ids"],
            batch["level"],
            batch["element"],
            batch["pair_index"],
            epoch=context.epoch,
            seed=context.seed,
            policy=self.policy,
            mask_token_id=backbone.mask_token_id,
            vocab_size=backbone.vocab_size,
            ratio=self.mask_ratio,
            random_rate=self.random_rate,
            special_ids=(backbone.sot_id, backbone.eot_id),
        )
        image = backbone.encode_image(batch["images"], attention=True)
        clean = backbone.encode_text(text, attention=True)
        masked_text = backbone.encode_text(masked)
        image_fine = self.selected(self.image_select, image)
        text_fine = self.selected(self.text_select, clean)
        rows, labels = mlm_rows(labels, width=labels.shape[1])  # a caption may have every word masked
        logits = self.cross_modal(masked_text["tokens"], image["tokens"], rows)
        out = {
            "loss_sdm": self.weights["sdm"] * sdm(image["global"], clean["global"], pids, self.scale),
            "loss_fine": self.weights["fine"] * sdm(image_fine, text_fine, pids, self.scale),
            "loss_mlm": self.weights["mlm"] * mlm_loss(logits, labels),
        }
        if self.classifier is not None:
            classify = self.classifier
            out["loss_id"] = self.weights["id"] * id_loss(classify(image["global"]), classify(clean["global"]), pids)
        out["mlm_acc"] = mlm_accuracy(logits.detach(), labels)
        return out
