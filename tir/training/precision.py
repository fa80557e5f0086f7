"""Numeric precision: which autocast dtype a run uses, and loss bodies kept in float32.

The run's ``amp`` setting picks one dtype (``amp_dtype``) that training, RDE's division pass and
evaluation all use (``autocast``). ``auto`` takes bf16 only where the GPU computes it natively
(Ampere and later); V100 and T4 emulate bf16 slowly, so they get fp16 with a gradient scaler.

Autocast runs the encoders in bf16 / fp16, but a loss scales cosine similarities by 1 / temperature
(50 to 67): a bf16 cosine error of about 0.002 becomes about 0.1 in the logits. Autocast also casts
a matmul of float32 inputs down again, so ``.float()`` alone does not help; ``float32_body`` turns
autocast off for the whole loss.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch

from tir.errors import UserError

Loss = TypeVar("Loss", bound=Callable[..., object])


def amp_dtype(spec: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the ``amp`` setting (auto, bf16, fp16, off) on ``device``: None on CPU or off."""
    if spec not in ("auto", "bf16", "fp16", "off"):
        raise UserError(f"unknown amp setting {spec!r}; use auto, bf16, fp16 or off")
    if device.type != "cuda" or spec == "off":
        return None
    if spec == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.bfloat16 if spec == "bf16" else torch.float16


def allow_tf32(device: torch.device, dtype: torch.dtype | None) -> None:
    """With amp off on CUDA, let float32 matmuls and convolutions use TF32 tensor cores (Ampere and later)."""
    if device.type == "cuda" and dtype is None:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; no autocast when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def float32_body(loss: Loss) -> Loss:
    """Decorator: run ``loss`` with autocast off on the device of its first tensor argument (where that
    device type has autocast at all: ``meta``, which tests use to trace a step without data, has none)."""

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
        device_type = tensors[0].device.type
        if not torch.amp.is_autocast_available(device_type):
            return loss(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return loss(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
