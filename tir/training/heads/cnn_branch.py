"""CFACK's CNN branch: a torchvision CNN + Linear to the embedding size, used in training only.

The trunk is built with ``weights=None`` (tir never downloads weights); ``pretrained`` is a local
torchvision checkpoint file (the architecture's full ``state_dict``, classifier included, as
``torch.save(torchvision.models.resnet50(weights=...).state_dict(), path)`` writes it). The
classifier is dropped after loading. Input images arrive with CLIP's normalisation and are
re-normalised to ImageNet's statistics, which torchvision's weights expect.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from tir.errors import UserError
from tir.training.transforms import CLIP_MEAN, CLIP_STD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CNNS = ("resnet50", "convnext_tiny", "resnet18", "mobilenet_v3_small")
"""CFACK uses ConvNeXt-base; resnet50 / convnext_tiny are the full-size choices, the last two CPU-sized."""


def _trunk(name: str) -> tuple[nn.Module, int]:
    """The torchvision model ``name`` with random weights and its classifier's input width."""
    model = getattr(torchvision.models, name)(weights=None)
    if name.startswith("resnet"):
        return model, model.fc.in_features
    return model, model.classifier[-1].in_features


def _drop_classifier(name: str, model: nn.Module) -> None:
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    else:
        model.classifier[-1] = nn.Identity()


def load_torchvision_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local torchvision checkpoint into ``model``; a missing or unfitting file is a one-line UserError."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError("--pretrained-cnn is not a file; tir never downloads weights: pass a local torchvision "
                        "checkpoint (torch.save(model.state_dict(), path))", path=file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read the CNN checkpoint ({type(error).__name__}); pass a torchvision state_dict file",
                        path=file) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[0]
        raise UserError(f"CNN checkpoint does not fit the chosen cnn ({first}); pass the matching method_options.cnn",
                        path=file) from None


class CnnBranch(nn.Module):
    """``forward(images [B, 3, H, W], CLIP-normalised) -> [B, dim]`` (not normalised)."""

    def __init__(self, name: str, dim: int, pretrained: str | Path | None = None) -> None:
        super().__init__()
        if name not in CNNS:
            raise UserError(f"unknown cnn {name!r}; choose one of {', '.join(CNNS)} (or none)")
        trunk, width = _trunk(name)
        if pretrained is not None:
            load_torchvision_weights(trunk, pretrained)
        _drop_classifier(name, trunk)
        self.trunk = trunk
        self.projection = nn.Linear(width, dim)
        scale = torch.tensor(CLIP_STD) / torch.tensor(IMAGENET_STD)
        shift = (torch.tensor(CLIP_MEAN) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.trunk(images * self.scale + self.shift))
