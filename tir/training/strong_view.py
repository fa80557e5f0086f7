"""CFACK's strong image view, made on the device from the loader's (weak: resize + flip) batch.

CFACK's reference applies UniformAugment, a flip and random erasing (p 0.6). torchvision ships no
UniformAugment; its closest relative, ``TrivialAugmentWide`` (one op drawn uniformly, magnitude
drawn uniformly), is the default here, ``RandAugment`` (2 ops, magnitude 9) the alternative. The
batch is CLIP-normalised float: each image is brought back to uint8, augmented, normalised again,
erased with probability ``erase_probability`` (filled with the mean colour, about 0 after normalisation, as
tir's own erasing) and normalised again. Each image draws from the default generator re-seeded by
(seed, epoch, pair_index) and restored afterwards, so a pair gets the same view in any batch or rank
and the global random state is untouched.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from tir.errors import UserError
from tir.training.transforms import CLIP_MEAN, CLIP_STD

POLICIES = ("trivial", "randaugment", "none")


def _stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(-1, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(-1, 1, 1)
    return mean, std


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised float images [..., 3, H, W] back to uint8 pixels."""
    mean, std = _stats(images)
    return ((images.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)


def to_normalised(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [..., 3, H, W] -> CLIP-normalised float."""
    mean, std = _stats(images)
    return (images.float() / 255.0 - mean) / std


def view_seed(seed: int, epoch: int, pair_index: int) -> int:
    """A 63-bit generator seed for one pair's strong view in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, pair_index, 0x5747]).generate_state(2, np.uint64)[0] >> 1)


class StrongView:
    """``view(images [B, 3, H, W] normalised, pair_index [B], seed, epoch) -> [B, 3, H, W]`` normalised."""

    def __init__(self, policy: str = "trivial", erase_probability: float = 0.6) -> None:
        if policy not in POLICIES:
            raise UserError(f"unknown strong_augment {policy!r}; choose one of {', '.join(POLICIES)}")
        if not 0.0 <= erase_probability <= 1.0:
            raise UserError(f"erase_probability {erase_probability} is not a probability; use a value in [0, 1]")
        self.augment = {"trivial": v2.TrivialAugmentWide(), "randaugment": v2.RandAugment(), "none": v2.Identity()}[policy]
        mean_colour = [round(255.0 * channel) for channel in CLIP_MEAN]
        self.erase = v2.RandomErasing(p=erase_probability, value=mean_colour)

    def __call__(self, images: torch.Tensor, pair_index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        generator = torch.default_generator  # torchvision's transforms draw from it (on the CPU)
        saved = generator.get_state()
        out = []
        try:
            for image, pair in zip(to_uint8(images), pair_index.tolist()):
                generator.manual_seed(view_seed(seed, epoch, pair))
                out.append(self.erase(self.augment(image)))
        finally:
            generator.set_state(saved)
        return to_normalised(torch.stack(out)).to(images.dtype)
