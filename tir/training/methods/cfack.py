"""``cfack``: momentum encoders, six-pair identity-aware contrast, CNN knowledge conversion, ITM re-ranking.

CFACK (AIVIETNAMResearch/Pedestrian-Matching, built on X2-VLM) ported onto tir's CLIP backbone:

- **Momentum encoders**: an EMA (0.995) of the whole backbone (both encoders and both projections),
  ``torch.optim.swa_utils.AveragedModel``, updated in ``after_optimizer_step``, never trained by
  gradients; it is a frozen submodule, so checkpoints and ``--resume`` carry it exactly.
- **Two views**: the online encoders see a strong image view (tir.training.strong_view, made here from
  the loader's batch) and an augmented caption (whole words masked / replaced at ``text_aug_rate``
  through tir's masking); the momentum encoders the loader's weak view (resize + flip) and the caption.
- **Complete feature aggregation**: identity-aware contrast with soft same-identity targets and a
  learnable temperature (0.07, clamped to [0.001, 0.5]) over the six pairs of {online, momentum} x
  {image, text}, plus ``cnn_weight`` x (online image, CNN), divided by 6 + ``cnn_weight``.
- **Cross-knowledge conversion**: a torchvision CNN (``cnn``) on the weak view, training only, its
  features L2-normalised (the reference forgets to for ConvNeXt).
- **Matching head**: a fusion encoder (tir.training.heads.fusion_encoder: X2-VLM's cross layers, which keep
  the text stream: self-attention over the caption's own tokens, cross-attention to the image tokens and a
  feed-forward block, each added to it) and X2-VLM's MLP head give 2 logits, read at the caption's end token
  (CLIP's counterpart of BERT's [CLS]), by default through a fusion of its own, not MLM's; trained on B
  positives and 2B negatives of other identities, drawn uniformly by default (``negative_hardness`` 1:
  CFACK's hard negatives, in proportion to softmax(similarity / temperature)). At test, the cosine ranking's
  top k per query is re-scored by the match logit (``rerank``; ``tir eval --rerank-k``).
- **MLM**: the caption with whole words masked (probability 0.5, at most 12 tokens, padding never
  masked) through the online text encoder and a fusion encoder (the matching head's with
  ``own_itm_fusion: false``), predicting the tokens.

Test similarity: cosine of the online global features. Total loss: ITC + ITM + MLM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tir.errors import UserError
from tir.training.distributed import get_rank
from tir.training.heads.cnn_branch import CnnBranch
from tir.training.heads.fusion_encoder import FusionEncoder, matching_head
from tir.training.losses import mlm_accuracy, mlm_loss
from tir.training.losses_cfack import LearnableTemperature, hard_negatives, matching_loss, six_pair_contrast
from tir.training.methods.base import Features, Method, StepContext, register
from tir.training.methods.global_retrieval import GlobalRetrieval
from tir.training.mlm import capped_word_mask, mlm_rows, token_words
from tir.training.model import Backbone
from tir.training.strong_view import StrongView

TEXT_AUG_STREAM = 0x7E57  # the caption augmentation's masks are drawn independently of the MLM's


def text_padding(text: torch.Tensor, eot_id: int) -> torch.Tensor:
    """[B, L] bool: the positions after each caption's end token."""
    eot = (text == eot_id).int().argmax(dim=1, keepdim=True)
    return torch.arange(text.shape[1], device=text.device).unsqueeze(0) > eot


def ema_copy(backbone: Backbone, momentum: float) -> AveragedModel:
    """A frozen EMA of ``backbone``, equal to it now: ``m <- momentum * m + (1 - momentum) * online`` per update."""
    ema = AveragedModel(backbone, multi_avg_fn=get_ema_multi_avg_fn(momentum), use_buffers=False)
    ema.update_parameters(backbone)  # the first update copies, so every later one is the EMA formula
    ema.requires_grad_(False)
    return ema


@register
class Cfack(GlobalRetrieval, Method):
    """Options: ``momentum`` 0.995, ``temperature`` 0.07 (learnable, clamped to [``temperature_min`` 0.001,
    ``temperature_max`` 0.5]), ``cnn`` "resnet50" (resnet50, convnext_tiny, resnet18, mobilenet_v3_small, or
    none), ``cnn_weight`` 0.5, ``pretrained_cnn`` null (a local torchvision checkpoint; else random weights),
    ``strong_augment`` "trivial" (TrivialAugmentWide; randaugment; none), ``erase_probability`` 0.6,
    ``text_aug_rate`` 0.15, ``mlm_probability`` 0.5, ``max_masks`` 12, ``fusion_depth`` 4,
    ``own_itm_fusion`` true (the matching head's fusion is not MLM's; false: one for both, as CFACK),
    ``negative_hardness`` 0.0 (the matching head's negatives: 0 uniform among other identities, 1 CFACK's
    softmax(similarity / temperature), which keeps a randomly initialised fusion at the 1-in-3 prior),
    ``itc_weight`` / ``itm_weight`` / ``mlm_weight`` 1.0, ``rerank_batch`` 4096 (query-candidate pairs fused at once at test)."""

    name = "cfack"
    reranks = True
    rerank_only_features = frozenset({"tokens", "keep"})
    weight_file_options = frozenset({"pretrained_cnn"})

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        momentum: float = 0.995,
        temperature: float = 0.07,
        temperature_min: float = 0.001,
        temperature_max: float = 0.5,
        cnn: str | None = "resnet50",
        cnn_weight: float = 0.5,
        pretrained_cnn: str | None = None,
        strong_augment: str = "trivial",
        erase_probability: float = 0.6,
        text_aug_rate: float = 0.15,
        mlm_probability: float = 0.5,
        max_masks: int = 12,
        fusion_depth: int = 4,
        own_itm_fusion: bool = True,
        negative_hardness: float = 0.0,
        itc_weight: float = 1.0,
        itm_weight: float = 1.0,
        mlm_weight: float = 1.0,
        rerank_batch: int = 4096,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"cfack: method_options.momentum is {momentum}; use a value in [0, 1) (CFACK: 0.995)")
        if not 0.0 <= negative_hardness <= 1.0:
            raise UserError(f"cfack: method_options.negative_hardness is {negative_hardness}; use a value in [0, 1] "
                            "(0: uniform among other identities, 1: CFACK's hard negatives)")
        self.backbone = backbone
        self.momentum = ema_copy(backbone, momentum)
        self.temperature = LearnableTemperature(temperature, temperature_min, temperature_max)
        dim = backbone.embed_dim
        cnn = None if cnn in (None, "none") else cnn
        if cnn is None and pretrained_cnn is not None:
            raise UserError("cfack: --pretrained-cnn given with method_options.cnn none; choose a cnn or drop the file")
        self.cnn = CnnBranch(cnn, dim, pretrained_cnn) if cnn is not None else None
        self.cnn_weight = cnn_weight
        self.strong_view = StrongView(strong_augment, erase_probability)
        self.fusion = FusionEncoder(dim, backbone.vocab_size, depth=fusion_depth)
        # CFACK's fusion (pre-trained BERT layers) serves MLM and ITM; a randomly initialised one shared with MLM
        # learns to match far more slowly (MLM's gradients dominate its updates), so by default ITM has its own
        self.itm_fusion = FusionEncoder(dim, None, depth=fusion_depth) if own_itm_fusion else self.fusion
        self.itm_head = matching_head(dim)
        self.text_aug_rate, self.mlm_probability, self.max_masks = text_aug_rate, mlm_probability, max_masks
        self.weights = {"itc": itc_weight, "itm": itm_weight, "mlm": mlm_weight}
        self.rerank_batch = rerank_batch
        self.negative_hardness = negative_hardness

    def new_modules(self) -> list[nn.Module]:
        modules = (self.temperature, self.fusion, self.itm_fusion, self.itm_head, self.cnn)
        return list(dict.fromkeys(module for module in modules if module is not None))  # a shared fusion once

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        self.momentum.update_parameters(self.backbone)

    # ------------------------------------------------------------------ training
    def _word_masks(self, batch: dict[str, torch.Tensor], epoch: int, seed: int, probability: float, max_masks: int):
        text, backbone = batch["text"], self.backbone
        special = (backbone.sot_id, backbone.eot_id)
        words = batch["word_ids"] if "word_ids" in batch else token_words(text, special)  # plans: real words
        return capped_word_mask(text, words, batch["pair_index"], epoch=epoch, seed=seed,
                                mask_token_id=backbone.mask_token_id, vocab_size=backbone.vocab_size,
                                special_ids=special, probability=probability, max_masks=max_masks)

    def _match_logits(self, text_tokens: torch.Tensor, padding: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """[n, 2] match logits of n (text, image) token sequences, read at each caption's end token."""
        fused = self.itm_fusion.fuse(text_tokens, image_tokens, padding)
        eot = (~padding).sum(dim=1) - 1
        return self.itm_head(fused[torch.arange(fused.shape[0], device=fused.device), eot])

    def _matching(self, image: Features, caption: Features, padding: torch.Tensor, pids: torch.Tensor,
                  temperature: torch.Tensor, context: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        online_image = F.normalize(image["global"].float(), dim=-1)
        online_text = F.normalize(caption["global"].float(), dim=-1)
        generator = torch.Generator(device=pids.device).manual_seed(hash((context.seed, context.step, get_rank())) & 0x7FFFFFFF)
        image_for_text, text_for_image, text_ok, image_ok = hard_negatives(
            online_image.detach(), online_text.detach(), pids, temperature.detach(), generator,
            self.negative_hardness)
        rows = torch.arange(pids.shape[0], device=pids.device)
        texts = torch.cat([rows, rows[text_ok], text_for_image[image_ok]])
        images = torch.cat([rows, image_for_text[text_ok], rows[image_ok]])
        logits = self._match_logits(caption["tokens"][texts], padding[texts], image["tokens"][images])
        n = pids.shape[0]
        accuracy = (logits.detach().argmax(dim=1) == (torch.arange(len(texts), device=pids.device) < n).long()).float().mean()
        return matching_loss(logits[:n], logits[n:]), accuracy

    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        backbone, text, pids, weak = self.backbone, batch["text"], batch["pids"], batch["images"]
        strong = self.strong_view(weak, batch["pair_index"], context.seed, context.epoch)
        augmented, _ = self._word_masks(batch, context.epoch, context.seed ^ TEXT_AUG_STREAM, self.text_aug_rate, 0)
        masked, labels = self._word_masks(batch, context.epoch, context.seed, self.mlm_probability, self.max_masks)

        image = backbone.encode_image(strong)
        caption = backbone.encode_text(augmented)
        masked_caption = backbone.encode_text(masked)
        with torch.no_grad():
            momentum_image = self.momentum.module.encode_image(weak)["global"]
            momentum_text = self.momentum.module.encode_text(text)["global"]
        temperature = self.temperature()
        cnn = F.normalize(self.cnn(weak).float(), dim=-1) if self.cnn is not None else None
        loss_itc, terms = six_pair_contrast(
            F.normalize(image["global"].float(), dim=-1), F.normalize(caption["global"].float(), dim=-1),
            F.normalize(momentum_image.float(), dim=-1), F.normalize(momentum_text.float(), dim=-1),
            pids, temperature, cnn, self.cnn_weight)

        loss_itm, itm_acc = self._matching(image, caption, text_padding(augmented, backbone.eot_id), pids, temperature, context)

        rows, labels = mlm_rows(labels, width=self.max_masks or labels.shape[1])
        logits = self.fusion(masked_caption["tokens"], image["tokens"], rows, text_padding(masked, backbone.eot_id))
        out = {
            "loss_itc": self.weights["itc"] * loss_itc,
            "loss_itm": self.weights["itm"] * loss_itm,
            "loss_mlm": self.weights["mlm"] * mlm_loss(logits, labels),
            "mlm_acc": mlm_accuracy(logits.detach(), labels),
            "itm_acc": itm_acc,
            "temperature": temperature.detach(),
        }
        if "oi_cnn" in terms:
            out["itc_cnn"] = terms["oi_cnn"]
        return out

    # ------------------------------------------------------------------ test
    def encode_image(self, images: torch.Tensor) -> Features:
        image = self.backbone.encode_image(images)
        return {"global": F.normalize(image["global"].float(), dim=-1), "tokens": image["tokens"]}

    def encode_text(self, text: torch.Tensor) -> Features:
        caption = self.backbone.encode_text(text, skip_padding=True)  # re-ranking masks the positions after the end
        keep = ~text_padding(text, self.backbone.eot_id)
        return {"global": F.normalize(caption["global"].float(), dim=-1), "tokens": caption["tokens"], "keep": keep.float()}

    def rerank(self, text_features: Features, image_features: Features, candidates: torch.Tensor) -> torch.Tensor:
        """The match logit of each (query, candidate image) pair, fused ``rerank_batch`` pairs at a time."""
        n_queries, k = candidates.shape
        flat = candidates.reshape(-1)
        queries = torch.arange(n_queries, device=candidates.device).repeat_interleave(k)
        scores = []
        for start in range(0, flat.numel(), self.rerank_batch):
            rows, images = queries[start : start + self.rerank_batch], flat[start : start + self.rerank_batch]
            padding = text_features["keep"][rows] < 0.5
            text_tokens = text_features["tokens"][rows]
            image_tokens = image_features["tokens"][images].to(text_tokens.dtype)
            scores.append(self._match_logits(text_tokens, padding, image_tokens)[:, 1].float())
        return torch.cat(scores).view(n_queries, k)
