"""Optimiser with IRRA's parameter groups, and warm-up + cosine learning rate per step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tir.errors import UserError
from tir.training.methods.base import Method


def parameter_groups(method: Method, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One group per (new module?, bias-or-norm?) combination with its lr and weight decay.

    New modules (``method.new_modules()``) train at ``lr x new_module_lr_factor``, their biases too (as
    RDE's token-selection layers and IRRA's classifier); the backbone's biases and other 1-D parameters
    at ``lr x bias_lr_factor``. Biases, norm weights and other 1-D parameters get no weight decay.
    """
    new = {id(p) for module in method.new_modules() for p in module.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in method.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias")
        groups.setdefault((id(param) in new, no_decay), []).append(param)
    out = []
    for (is_new, no_decay), params in sorted(groups.items()):
        if is_new:
            lr = config["lr"] * config["new_module_lr_factor"]
        else:
            lr = config["lr"] * (config["bias_lr_factor"] if no_decay else 1.0)
        out.append({"params": params, "lr": lr, "initial_lr": lr, "weight_decay": 0.0 if no_decay else config["weight_decay"]})
    return out


def build_optimizer(method: Method, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    groups = parameter_groups(method, config)
    kind = str(config["optimizer"]).lower()
    kwargs = {"betas": tuple(config["betas"]), "eps": config["eps"]}
    if all(param.is_cuda for group in groups for param in group["params"]):
        kwargs["fused"] = True  # one kernel per step for every parameter
    if kind == "adam":
        return torch.optim.Adam(groups, **kwargs)
    if kind == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    raise UserError(f"unknown optimizer {config['optimizer']!r}; use adam or adamw")


def lr_factor(step: int, total_steps: int, warmup_steps: int, warmup_factor: float, floor: float) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up from ``warmup_factor``, then cosine to ``floor``."""
    if step < warmup_steps:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: Mapping[str, Any], steps_per_epoch: int):
    """A LambdaLR stepped once per optimisation step (``min_lr`` is relative to ``lr``)."""
    total = config["epochs"] * steps_per_epoch
    warmup = config["warmup_epochs"] * steps_per_epoch
    floor = config["min_lr"] / config["lr"] if config["lr"] else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, config["warmup_factor"], floor)
    )
