"""The backbone: an open_clip CLIP model with a mask token and exposed token features and attention.

``build_backbone(name, pretrained=..., image_size=...)`` builds any open_clip config (``ViT-B-16``,
or the small ones shipped in ``tir/training/model_configs``: ``tir-tiny``, ``tir-micro``) and, given
a local checkpoint file, loads it with the square position grid interpolated to the image size.
``Backbone.encode_image`` / ``encode_text`` return a Features dict:

- ``global`` [B, D]: projected CLS (image) / end-token (text) feature, not normalised;
- ``tokens`` [B, L, D]: every position's projected feature (CLS / start token first);
- ``valid`` [B, L] bool: positions eligible for token selection (patches; words without the
  start, end and padding tokens);
- ``attention`` [B, L] (only with ``attention=True``): the last layer's head-averaged attention
  row of the summary token (CLS for images, end token for text).
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch
import torch.utils.checkpoint
from open_clip.model import resize_pos_embed
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from tir.errors import UserError
Features = dict[str, torch.Tensor]

CONFIG_DIR = Path(__file__).with_name("model_configs")
open_clip.add_model_config(CONFIG_DIR)


def _block_with_attention(
    block: ResidualAttentionBlock, x: torch.Tensor, attn_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one open_clip residual block and also return its head-averaged attention [B, L, L]."""
    y = block.ln_1(x)
    mask = attn_mask.to(y.dtype) if attn_mask is not None else None
    out, weights = block.attn(y, y, y, need_weights=True, average_attn_weights=True, attn_mask=mask)
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, weights


def _run_blocks(
    blocks: nn.ModuleList, x: torch.Tensor, attn_mask: torch.Tensor | None, attention: bool, checkpointed: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the blocks; ``checkpointed``: keep no activations inside them, recompute them in backward."""
    last = len(blocks) - 1
    weights = None
    for i, block in enumerate(blocks):
        if attention and i == last:
            x, weights = _block_with_attention(block, x, attn_mask)
        elif checkpointed and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(block, x, attn_mask=attn_mask, use_reentrant=False)
        else:
            x = block(x, attn_mask=attn_mask)
    return x, weights


TIR_BACKBONE_PREFIX = "backbone.clip."


_WEIGHTS_FIX = "pass a CLIP checkpoint file (an OpenAI TorchScript .pt, an open_clip state dict, or a `tir train` .pt)"


def _load_weights_file(path: Path) -> object:
    """The object saved in ``path`` (TorchScript archives as their state dict); junk is a one-line UserError."""
    if path.stat().st_size == 0:
        raise UserError(f"the file is empty; {_WEIGHTS_FIX}", path=path)
    try:
        return open_clip.factory.load_state_dict(str(path))
    except RuntimeError as error:
        if "TorchScript" not in str(error):
            raise UserError(f"cannot read the checkpoint ({str(error).splitlines()[0][:120]}); {_WEIGHTS_FIX}", path=path) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file (pickle, text, truncated) is the user's to fix
        raise UserError(f"{_what_it_holds(path, error)}; {_WEIGHTS_FIX}", path=path) from None
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as error:  # noqa: BLE001
        raise UserError(f"not a readable TorchScript archive ({type(error).__name__}); {_WEIGHTS_FIX}", path=path) from None
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return state


def _what_it_holds(path: Path, error: Exception) -> str:
    """Why open_clip could not read ``path``: what the file holds when torch can load it, else its error type."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        return f"not a readable checkpoint ({type(error).__name__})"
    if isinstance(value, dict) and not value:
        return "holds an empty mapping, not a state dict of CLIP weights"
    return f"holds a {type(value).__name__}, not a state dict of CLIP weights"


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a checkpoint file: open_clip/LAION, an OpenAI TorchScript archive, or a
    checkpoint written by `tir train` (its backbone, mask-token row included, without the method's heads).
    Anything else (an empty file, text, a bare tensor, a dict of non-tensors) is a one-line UserError."""
    state = _load_weights_file(path)
    if isinstance(state, dict) and "format" in state and isinstance(state.get("model"), dict):  # a `tir train` checkpoint
        prefix = TIR_BACKBONE_PREFIX
        state = {key[len(prefix):]: value for key, value in state["model"].items() if str(key).startswith(prefix)}
        if not state:
            raise UserError("this tir checkpoint holds no CLIP backbone; pass a run's best.pt or last.pt", path=path)
    if not isinstance(state, dict) or not state:
        kind = "an empty mapping" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise UserError(f"holds {kind}, not a state dict of CLIP weights; {_WEIGHTS_FIX}", path=path)
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise UserError(f"holds a mapping that is not names -> tensors, so no CLIP weights; {_WEIGHTS_FIX}", path=path)
    return state


def checkpoint_file(pretrained: str) -> Path:
    """``pretrained`` as an existing file path; a hub tag or missing file is a one-line UserError."""
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise UserError(
            f"--pretrained {pretrained!r} is not a file; tir never downloads weights: download the CLIP "
            "checkpoint (e.g. OpenAI ViT-B-16.pt) on a machine with internet access and pass its local path"
        )
    return path


class Backbone(nn.Module):
    """A CLIP image and text encoder with one extra vocabulary row, the mask token.

    ``grad_checkpointing``: recompute the transformer blocks' activations in backward instead of
    keeping them (less memory for a larger batch, about a third more compute).
    """

    def __init__(self, clip: open_clip.CLIP, sot_id: int, eot_id: int) -> None:
        super().__init__()
        visual = clip.visual
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise UserError("only open_clip ViT configs with CLS pooling are supported; pick e.g. ViT-B-16")
        if not isinstance(visual.transformer.resblocks[-1], ResidualAttentionBlock):
            raise UserError("only open_clip configs with standard attention blocks are supported; pick e.g. ViT-B-16")
        self.clip = clip
        clip.logit_scale.requires_grad_(False)  # methods use a fixed temperature; unused by DDP otherwise
        self.sot_id, self.eot_id = sot_id, eot_id
        self.grad_checkpointing = False
        old = clip.token_embedding
        self.mask_token_id = old.num_embeddings
        grown = nn.Embedding(old.num_embeddings + 1, old.embedding_dim)
        with torch.no_grad():
            grown.weight[:-1] = old.weight
            nn.init.normal_(grown.weight[-1:], std=0.02)
        clip.token_embedding = grown
        clip.vocab_size = grown.num_embeddings

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[-1])

    @property
    def vocab_size(self) -> int:
        """Vocabulary size including the mask token."""
        return self.clip.token_embedding.num_embeddings

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.clip.visual.image_size)  # type: ignore[return-value]

    @property
    def context_length(self) -> int:
        return int(self.clip.positional_embedding.shape[0])

    def encode_image(self, images: torch.Tensor, attention: bool = False) -> Features:
        visual = self.clip.visual
        x = visual._embeds(images)
        x, weights = _run_blocks(visual.transformer.resblocks, x, None, attention, self.grad_checkpointing)
        tokens = visual.ln_post(x) @ visual.proj
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        valid[:, 0] = False
        out: Features = {"global": tokens[:, 0], "tokens": tokens, "valid": valid}
        if weights is not None:
            out["attention"] = weights[:, 0]
        return out

    def encode_text(self, text: torch.Tensor, attention: bool = False, skip_padding: bool = False) -> Features:
        """Features of token ids ``text`` [B, L]. ``skip_padding``: run the transformer only up to the batch's
        last end token. CLIP's text attention is causal, so every position up to a caption's end token (and the
        end token's attention row) is the same as over all L positions; the positions after the batch's last
        end token get zero token features instead of the padding's. Only for consumers that never read a
        caption's positions after its end token (the test-time paths that mask them)."""
        clip = self.clip
        length = text.shape[1]
        if length > self.context_length:
            raise UserError(f"text length {length} exceeds the model's context length {self.context_length}")
        eot = (text == self.eot_id).int().argmax(dim=1)
        computed = int(eot.max()) + 1 if skip_padding and clip.attn_mask is not None and text.shape[0] else length
        x = clip.token_embedding(text[:, :computed]) + clip.positional_embedding[:computed]
        mask = clip.attn_mask[:computed, :computed] if clip.attn_mask is not None else None
        x, weights = _run_blocks(clip.transformer.resblocks, x, mask, attention, self.grad_checkpointing)
        projection = clip.text_projection
        x = clip.ln_final(x)
        tokens = _pad_positions(projection(x) if isinstance(projection, nn.Linear) else x @ projection, length)
        rows = torch.arange(text.shape[0], device=text.device)
        positions = torch.arange(length, device=text.device).unsqueeze(0)
        valid = (positions > 0) & (positions < eot.unsqueeze(1))
        out: Features = {"global": tokens[rows, eot], "tokens": tokens, "valid": valid}
        if weights is not None:
            out["attention"] = _pad_positions(weights[rows, eot], length)
        return out


def _pad_positions(values: torch.Tensor, length: int) -> torch.Tensor:
    """``values`` [B, l, ...] zero-padded along dim 1 to ``length`` positions (itself when l is ``length``)."""
    missing = length - values.shape[1]
    if missing == 0:
        return values
    return torch.cat([values, values.new_zeros(values.shape[0], missing, *values.shape[2:])], dim=1)


def build_backbone(
    name: str = "ViT-B-16",
    pretrained: str | None = None,
    image_size: tuple[int, int] | None = None,
    quick_gelu: bool = False,
) -> Backbone:
    """Build an open_clip model by config name, optionally from a local checkpoint file
    (a CLIP checkpoint, or a `tir train` checkpoint whose backbone is reused).

    ``image_size`` (H, W) overrides the config's (IRRA: 384x128); a square checkpoint grid is
    interpolated. ``quick_gelu`` is needed for OpenAI checkpoints. Hub tags are refused: this
    toolkit never downloads weights.
    """
    if name not in open_clip.list_models():
        raise UserError(f"unknown model config {name!r}; use an open_clip name such as ViT-B-16 or tir-tiny")
    path = checkpoint_file(pretrained) if pretrained else None
    size = tuple(image_size) if image_size is not None else None
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: tir loads them itself
    try:
        clip = open_clip.create_model(name, pretrained=None, force_image_size=size, force_quick_gelu=quick_gelu)
    finally:
        logger.setLevel(level)
    if not isinstance(clip, open_clip.CLIP):
        raise UserError(f"model config {name!r} is not a plain CLIP model; pick e.g. ViT-B-16")
    mask_row = None
    if path is not None:
        state = _state_dict_from_file(path)
        embedding = state.get("token_embedding.weight")
        if embedding is not None and embedding.shape[0] == clip.token_embedding.num_embeddings + 1:
            mask_row, state["token_embedding.weight"] = embedding[-1:], embedding[:-1]  # tir's mask token
        try:
            resize_pos_embed(state, clip)
            clip.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise UserError(f"checkpoint does not fit model {name!r} ({first}); pass the matching --model", path=path) from None
    tokenizer = open_clip.get_tokenizer(name)
    backbone = Backbone(clip, sot_id=tokenizer.sot_token_id, eot_id=tokenizer.eot_token_id)
    if mask_row is not None:
        with torch.no_grad():
            backbone.clip.token_embedding.weight[-1:] = mask_row
    return backbone


def get_tokenizer(name: str):
    """The open_clip tokenizer of a model config (CLIP BPE for ViT configs)."""
    return open_clip.get_tokenizer(name)
