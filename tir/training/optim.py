"""Optimiser with IRRA's parameter groups, and warm-up + cosine learning rate per step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tir.errors import UserError
from tir.training.methods.base import Method

DEFAULT_EPS = {"adam": 1e-3, "adamw": 1e-8}
"""Adam's epsilon when the config leaves ``eps`` unset: 1e-3 for Adam as IRRA, RDE, HKGR and CCMA build it
(solver/build.py), 1e-8 for AdamW as they build that."""


def is_bias(name: str) -> bool:
    """IRRA's test: a parameter whose own name contains ``bias`` (``in_proj_bias`` included)."""
    return "bias" in name.rsplit(".", 1)[-1]


def parameter_groups(method: Method, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """IRRA's parameter groups (solver/build.py), merged by (lr, weight decay).

    A parameter trains as its module's ``method.lr_rules()`` entry says (``lr x factor``; biases at the same
    rate unless the rule sends them to the backbone's bias rate); a parameter no rule covers trains as the
    backbone's: weights (LayerNorm weights and embeddings included) at ``lr`` with weight decay, biases at
    ``lr x bias_lr_factor``. Biases get no weight decay.
    """
    rule_of = {id(p): rule for rule in method.lr_rules() for p in rule.module.parameters()}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in method.named_parameters():
        if not param.requires_grad:
            continue
        bias = is_bias(name)
        rule = rule_of.get(id(param))
        if rule is not None and not (bias and rule.biases_as_backbone):
            factor = config["new_module_lr_factor"] if rule.factor is None else rule.factor
        else:
            factor = config["bias_lr_factor"] if bias else 1.0
        decay = 0.0 if bias else float(config["weight_decay"])
        groups.setdefault((config["lr"] * factor, decay), []).append(param)
    return [
        {"params": params, "lr": lr, "initial_lr": lr, "weight_decay": decay}
        for (lr, decay), params in sorted(groups.items())
    ]


def build_optimizer(method: Method, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam or AdamW over ``parameter_groups``; ``eps`` unset (None) takes ``DEFAULT_EPS`` of the optimiser."""
    groups = parameter_groups(method, config)
    kind = str(config["optimizer"]).lower()
    if kind not in DEFAULT_EPS:
        raise UserError(f"unknown optimizer {config['optimizer']!r}; use adam or adamw")
    eps = DEFAULT_EPS[kind] if config.get("eps") is None else float(config["eps"])
    optimizer = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    fused = all(param.is_cuda for group in groups for param in group["params"])  # one kernel per step
    return optimizer(groups, betas=tuple(config["betas"]), eps=eps, **({"fused": True} if fused else {}))


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
