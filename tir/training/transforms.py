"""Image decoding and IRRA's transforms, on uint8 tensors, with per-sample random generators.

Decoding (Pillow, RGB, bicubic resize to the model's H x W) happens once per image (or once per
split with the image cache); the random part works on the resized uint8 tensor [3, H, W] and draws
from the ``torch.Generator`` it is given, so augmentation does not depend on worker or global RNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tir.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD = 10
ERASE_SCALE = (0.02, 0.4)
ERASE_RATIO = (0.3, 3.3)


def decode_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` as RGB uint8 [H, W, 3], resized (bicubic) to ``size`` = (H, W)."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except FileNotFoundError:
        raise UserError("image not found; pass the folder that holds the manifest's image paths as --image-root", path=path) from None
    except OSError as error:
        raise UserError(f"cannot decode image ({error}); replace the file or drop it from the annotations", path=path) from None
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _normalise(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] array -> uint8 [3, H, W] tensor."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def eval_transform(image: torch.Tensor) -> torch.Tensor:
    """Test-time transform: CLIP normalisation of a resized uint8 [3, H, W] image."""
    return _normalise(image)


class TrainTransform:
    """IRRA's training transform: horizontal flip; with ``augment`` also pad 10 + random crop and
    random erasing (p 0.5, area 2-40%, filled with the mean, i.e. 0 after normalisation)."""

    def __init__(self, augment: bool = False) -> None:
        self.augment = augment

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        draws = torch.rand(8, generator=generator).tolist()
        if draws[0] < 0.5:
            image = image.flip(-1)
        if self.augment:
            image = _pad_crop(image, draws[1], draws[2])
        out = _normalise(image)
        if self.augment and draws[3] < 0.5:
            out = _erase(out, draws[4:8], generator)
        return out


def _pad_crop(image: torch.Tensor, u: float, v: float) -> torch.Tensor:
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (PAD, PAD, PAD, PAD))
    top, left = int(u * (2 * PAD + 1)), int(v * (2 * PAD + 1))
    return padded[:, top : top + height, left : left + width]


def _erase(image: torch.Tensor, draws: list[float], generator: torch.Generator) -> torch.Tensor:
    """Zero a random rectangle (torchvision's RandomErasing recipe; up to 10 tries to fit)."""
    _, height, width = image.shape
    area = height * width
    log_low, log_high = np.log(ERASE_RATIO[0]), np.log(ERASE_RATIO[1])
    for _ in range(10):
        target = area * (ERASE_SCALE[0] + draws[0] * (ERASE_SCALE[1] - ERASE_SCALE[0]))
        aspect = float(np.exp(log_low + draws[1] * (log_high - log_low)))
        h, w = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
        if 0 < h < height and 0 < w < width:
            top, left = int(draws[2] * (height - h + 1)), int(draws[3] * (width - w + 1))
            image = image.clone()
            image[:, top : top + h, left : left + w] = 0.0
            return image
        draws = torch.rand(4, generator=generator).tolist()
    return image
