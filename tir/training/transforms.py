"""Image decoding, and IRRA's training transform applied to a whole batch on the run's device.

Decoding (Pillow, RGB, bicubic resize to the model's H x W) happens once per image (or once per
split with the image cache). Images then cross the DataLoader's process boundary as uint8 [3, H, W]
(a quarter of the bytes of float32) together with each sample's random draws (``sample_draws``:
drawn from a generator seeded per sample, so augmentation depends on neither worker nor global RNG);
``augment_batch`` flips, pads and crops, normalises and erases the batch where it is trained.
"""

from __future__ import annotations

import functools
import math
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
ERASE_TRIES = 10
DRAWS = 4 + 4 * ERASE_TRIES  # flip, crop top, crop left, erase?, then (area, aspect, top, left) per try


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


@functools.cache
def _clip_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's mean and std [3, 1, 1] on ``device``, built once per device: a tensor built from host values
    on a GPU is a copy that waits for the GPU, which a per-step call must not make."""
    return torch.tensor(CLIP_MEAN, device=device).view(3, 1, 1), torch.tensor(CLIP_STD, device=device).view(3, 1, 1)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """CLIP normalisation of uint8 images [..., 3, H, W] (float32, on their device)."""
    mean, std = _clip_stats(images.device)
    return (images.float() / 255.0 - mean) / std


def model_input(images: torch.Tensor) -> torch.Tensor:
    """What an image encoder takes: uint8 pixels normalised where they are (the run's device); float
    images, already normalised, as they are."""
    return normalise(images) if images.dtype == torch.uint8 else images


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] array -> uint8 [3, H, W] tensor."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def eval_transform(image: torch.Tensor) -> torch.Tensor:
    """Test-time transform: CLIP normalisation of a resized uint8 [3, H, W] image."""
    return normalise(image)


def sample_draws(generator: torch.Generator) -> torch.Tensor:
    """One sample's random draws [DRAWS] (float32 in [0, 1)) for ``augment_batch``."""
    return torch.rand(DRAWS, generator=generator)


def augment_batch(images: torch.Tensor, draws: torch.Tensor, augment: bool) -> torch.Tensor:
    """IRRA's training transform of uint8 images [B, 3, H, W] with their draws [B, DRAWS], on their device.

    Horizontal flip (draw 0 < 0.5); with ``augment`` also pad 10 + random crop (draws 1, 2) and random
    erasing (draw 3 < 0.5: torchvision's recipe, area 2-40%, aspect 0.3-3.3, the first of ten tries
    that fits, filled with the mean, i.e. 0 after normalisation). Returns normalised float32.
    """
    batch, _, height, width = images.shape
    draws = draws.to(images.device, torch.float64)
    images = torch.where((draws[:, 0] < 0.5).view(-1, 1, 1, 1), images.flip(-1), images)
    if augment:
        images = _pad_crop(images, draws[:, 1], draws[:, 2])
    out = normalise(images)
    if augment:
        out = out.masked_fill(_erased(draws[:, 3:], height, width).unsqueeze(1), 0.0)
    return out


def _pad_crop(images: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each image padded by PAD zeros and cropped back to H x W at offsets ``u``, ``v`` x (2 PAD + 1)."""
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    top, left = (u * (2 * PAD + 1)).long(), (v * (2 * PAD + 1)).long()
    rows = (top.unsqueeze(1) + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    cols = (left.unsqueeze(1) + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    samples = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    channels = torch.arange(3, device=images.device).view(1, 3, 1, 1)
    return padded[samples, channels, rows, cols]


def _erased(draws: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean [B, H, W]: the rectangle each image erases (none where draw 0 >= 0.5 or no try fits)."""
    batch = draws.shape[0]
    tries = draws[:, 1:].view(batch, ERASE_TRIES, 4)
    area = height * width
    target = area * (ERASE_SCALE[0] + tries[..., 0] * (ERASE_SCALE[1] - ERASE_SCALE[0]))
    log_low, log_high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = torch.exp(log_low + tries[..., 1] * (log_high - log_low))
    h, w = torch.round(torch.sqrt(target * aspect)).long(), torch.round(torch.sqrt(target / aspect)).long()
    fits = (h > 0) & (h < height) & (w > 0) & (w < width)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first try that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    chosen = tries.gather(1, first.unsqueeze(-1).expand(-1, -1, 4)).squeeze(1)
    top = (chosen[:, 2] * (height - h + 1)).long()
    left = (chosen[:, 3] * (width - w + 1)).long()
    erase = (draws[:, 0] < 0.5) & fits.any(dim=1)
    rows = torch.arange(height, device=draws.device).view(1, height, 1)
    cols = torch.arange(width, device=draws.device).view(1, 1, width)
    in_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
    in_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1))
    return in_rows & in_cols & erase.view(-1, 1, 1)
