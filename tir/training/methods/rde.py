"""``rde``: noisy-correspondence-robust training (RDE, CVPR 2024).

Two embeddings: BGE (the CLS / end-token features) and TSE (token selection: the 30% most attended
positions from the summary token, L2-normalised, Linear + MLP with BatchNorm to 1024-d, max-pooled;
tir.training.heads.token_selection). Both are trained with
the Triplet Alignment Loss (tir.training.losses_rde, tau 0.015, margin 0.1), summed over the batch
and weighted per pair by Confident Consensus Division (tir.training.ccd), which runs in
``on_epoch_start``: per-pair BGE and TSE losses over the un-augmented train set, without gradients,
each split clean/noisy by a 2-component GMM, consensus weights for the epoch that follows.
Test similarity: the mean of the BGE and TSE cosine similarities.

Distributed: each rank scores its shard of the pairs (``clean_batches()``), each batch gathered from
every rank as in training, so a pair's in-batch negatives are those of the combined batch; the
losses are summed over ranks by train-set position, so every rank fits the same seeded GMMs and
gets the same weights.
Published RDE leaves the model in eval mode after the CCD pass; tir trains in train mode unless
``rde_eval_mode_train`` is set (then ``train()`` keeps the method in eval mode once CCD has run, and the
token-selection BatchNorm normalises with its running statistics instead of the batch's).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tir.errors import UserError
from tir.training import ccd
from tir.training.distributed import all_gather_no_grad, get_rank, is_distributed
from tir.training.heads.token_selection import TokenSelectionEmbedding
from tir.training.losses_rde import tal_per_sample, weighted_tal
from tir.training.methods.base import EpochContext, Method, StepContext, register
from tir.training.methods.global_retrieval import GlobalAndSelectedRetrieval
from tir.training.model import Backbone
from tir.training.text_augment import augment_text
from tir.training.precision import autocast


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for (run seed, epoch): the GMM initialisation and the consensus coin flips."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@register
class Rde(GlobalAndSelectedRetrieval, Method):
    """Options: ``tau`` 0.015, ``margin`` 0.1, ``select_ratio`` 0.3, ``tse_dim`` 1024, ``bge_weight`` /
    ``tse_weight`` 1.0, ``ccd_warmup_epochs`` 0 (epochs before CCD starts; RDE: 0), ``ccd_min_noisy_fraction``
    0.01 (share called noisy when a mixture finds none; RDE: 1/100), ``gmm_max_iter`` 100,
    ``gmm_tol`` 1e-4, ``gmm_reg_covar`` 1e-6, ``gmm_fit_floor`` false (true: RDE's fit, which includes the
    pairs tied at zero loss; see tir.training.ccd), ``rde_eval_mode_train`` false (RDE's flaw, off), ``txt_aug``
    true (RDE's caption augmentation, ``--txt_aug`` in its run script: tir.training.text_augment; false: off)."""

    name = "rde"
    uses_mask_plans = False

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        tau: float = 0.015,
        margin: float = 0.1,
        select_ratio: float = 0.3,
        tse_dim: int = 1024,
        bge_weight: float = 1.0,
        tse_weight: float = 1.0,
        ccd_warmup_epochs: int = 0,
        ccd_min_noisy_fraction: float = 0.01,
        gmm_max_iter: int = 100,
        gmm_tol: float = 1e-4,
        gmm_reg_covar: float = 1e-6,
        gmm_fit_floor: bool = False,
        rde_eval_mode_train: bool = False,
        txt_aug: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tau, self.margin = tau, margin
        self.bge_weight, self.tse_weight = bge_weight, tse_weight
        self.ccd_warmup_epochs = ccd_warmup_epochs
        if not 0.0 <= ccd_min_noisy_fraction < 1.0:
            raise UserError(f"rde: method_options.ccd_min_noisy_fraction is {ccd_min_noisy_fraction}; set a share in "
                            "[0, 1) (RDE: 0.01; 0 trusts every pair when the mixtures find no noise)")
        self.ccd_min_noisy_fraction = ccd_min_noisy_fraction
        self.gmm = ccd.GmmSettings(gmm_max_iter, gmm_tol, gmm_reg_covar, gmm_fit_floor)
        self.rde_eval_mode_train = rde_eval_mode_train
        self.txt_aug = txt_aug
        self.divided = False  # whether a CCD pass has run (for rde_eval_mode_train)
        dim = backbone.embed_dim
        self.image_select = TokenSelectionEmbedding(dim, tse_dim, select_ratio)
        self.text_select = TokenSelectionEmbedding(dim, tse_dim, select_ratio, special_tokens=2)
        self.pair_weights: torch.Tensor | None = None  # per train-dataset position; None = all 1

    def new_modules(self) -> list[nn.Module]:
        return [self.image_select, self.text_select]

    def train(self, mode: bool = True) -> "Rde":
        return super().train(mode and not (self.rde_eval_mode_train and self.divided))

    # ------------------------------------------------------------------ features
    def _embed(self, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = self.backbone.encode_image(images, attention=True)
        caption = self.backbone.encode_text(text, attention=True)
        image_tse = self.selected(self.image_select, image)
        text_tse = self.selected(self.text_select, caption)
        return image["global"], caption["global"], image_tse, text_tse

    def _weights(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self.pair_weights is None:
            return torch.ones(index.shape[0], device=device)
        return self.pair_weights[index]

    def _augmented_text(self, batch: dict[str, torch.Tensor], context: StepContext) -> torch.Tensor:
        if not self.txt_aug:
            return batch["text"]
        backbone = self.backbone
        return augment_text(batch["text"], batch["pair_index"], epoch=context.epoch, seed=context.seed,
                            mask_token_id=backbone.mask_token_id, vocab_size=backbone.vocab_size,
                            special_ids=(backbone.sot_id, backbone.eot_id))

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        image_bge, text_bge, image_tse, text_tse = self._embed(batch["images"], self._augmented_text(batch, context))
        pids = batch["pids"]
        weights = self._weights(batch["index"], image_bge.device)
        loss_bge, _ = weighted_tal(image_bge, text_bge, pids, weights, self.tau, self.margin)
        loss_tse, _ = weighted_tal(image_tse, text_tse, pids, weights, self.tau, self.margin)
        return {
            "loss_bge": self.bge_weight * loss_bge,
            "loss_tse": self.tse_weight * loss_tse,
            "trusted": weights.mean(),
        }

    # ------------------------------------------------------------------ consensus division
    @torch.no_grad()
    def pair_losses(self, context: EpochContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-pair BGE and TSE losses over the train set (and which positions were scored)."""
        device = context.device
        totals = torch.zeros(3, context.num_train, dtype=torch.float64, device=device)  # bge, tse, count
        for batch in context.clean_batches():
            index = batch["index"].to(device)
            with autocast(device, context.amp):
                features = self._embed(batch["images"].to(device), batch["text"].to(device))
            image_bge, text_bge, image_tse, text_tse = (all_gather_no_grad(f.float()) for f in features)
            pids = all_gather_no_grad(batch["pids"].to(device))
            mine = slice(get_rank() * len(index), (get_rank() + 1) * len(index))  # this rank's rows of the gathered batch
            totals[0].index_add_(0, index, tal_per_sample(image_bge, text_bge, pids, self.tau, self.margin)[mine].double())
            totals[1].index_add_(0, index, tal_per_sample(image_tse, text_tse, pids, self.tau, self.margin)[mine].double())
            totals[2].index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
        if is_distributed():
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        totals = totals.cpu().numpy()
        seen = totals[2] > 0
        count = np.maximum(totals[2], 1)
        return totals[0] / count, totals[1] / count, seen

    def on_epoch_start(self, context: EpochContext) -> dict[str, float]:
        """Run CCD (after ``ccd_warmup_epochs``): set this epoch's pair weights; report detection scores."""
        if context.epoch < self.ccd_warmup_epochs:
            self.pair_weights = None
            return {}
        was_training = self.training
        self.eval()
        losses_bge, losses_tse, seen = self.pair_losses(context)
        self.divided = True
        self.train(was_training)  # stays in eval mode when rde_eval_mode_train (RDE's published behaviour)
        seed = epoch_seed(context.seed, context.epoch)
        weights, clean_bge, clean_tse = ccd.divide(
            losses_bge[seen], losses_tse[seen], seed, self.gmm, self.ccd_min_noisy_fraction
        )
        full = np.ones(context.num_train, dtype=np.float32)  # positions not scored are trusted
        full[seen] = weights
        self.pair_weights = torch.from_numpy(full).to(context.device)  # on the device: no host round trip per step
        metrics = {
            "ccd_trusted": float(weights.mean()),
            "ccd_clean_bge": float(clean_bge.mean()),
            "ccd_clean_tse": float(clean_tse.mean()),
        }
        if context.noise_truth is not None:
            truth = context.noise_truth.cpu().numpy().astype(bool)[seen]
            scores = ccd.detection_scores(weights == 0, truth)
            metrics.update(ccd_precision=scores["precision"], ccd_recall=scores["recall"])
        return metrics
