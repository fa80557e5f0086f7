"""Build a configured method (backbone + heads) and its tokenizer from a run config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tir.training.methods.base import Method, create_method
from tir.training.model import build_backbone, get_tokenizer


def build_method(config: Mapping[str, Any], num_classes: int, with_pretrained: bool = True) -> Method:
    """The method of ``config``; ``with_pretrained=False`` skips the checkpoint file (weights come later)."""
    backbone = build_backbone(
        config["model"],
        pretrained=config["pretrained"] if with_pretrained else None,
        image_size=tuple(config["image_size"]),
        quick_gelu=bool(config["quick_gelu"]),
    )
    return create_method(config["method"], backbone, num_classes, dict(config["method_options"] or {}))


def tokenizer_for(config: Mapping[str, Any]):
    return get_tokenizer(config["model"])
