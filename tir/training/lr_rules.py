"""The learning-rate rule a method declares for one of its modules (see tir.training.optim)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LrRule:
    """How one of a method's modules trains (tir.training.optim.parameter_groups).

    Weights train at ``lr x factor`` (``None``: the config's ``new_module_lr_factor``). Biases train at the
    same rate, or at the backbone's bias rate (``lr x bias_lr_factor``) when ``biases_as_backbone``, as IRRA's
    optimiser treats its cross-attention and cross-modal transformer. Biases never get weight decay.
    """

    module: nn.Module
    factor: float | None = None
    biases_as_backbone: bool = False
