"""Build a configured method (backbone + heads) and its tokenizer from a run config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import open_clip

from tir.errors import UserError
from tir.training.methods.base import METHODS, Method, create_method
from tir.training.model import build_backbone, checkpoint_file, get_tokenizer


def check_config(config: Mapping[str, Any]) -> None:
    """Fail fast (before any data is read) on an unknown method or model, or a missing checkpoint file."""
    from tir.training import methods  # noqa: F401  (registers every method)
    from tir.training.config import validate

    validate(config)

    if config["method"] not in METHODS:
        raise UserError(f"unknown method {config['method']!r}; choose one of {', '.join(sorted(METHODS))}")
    if config["model"] not in open_clip.list_models():
        raise UserError(f"unknown model config {config['model']!r}; use an open_clip name such as ViT-B-16 or tir-tiny")
    if config["pretrained"]:
        checkpoint_file(config["pretrained"])


def build_method(config: Mapping[str, Any], num_classes: int, with_pretrained: bool = True) -> Method:
    """The method of ``config``; ``with_pretrained=False`` skips the checkpoint file (weights come later)."""
    backbone = build_backbone(
        config["model"],
        pretrained=config["pretrained"] if with_pretrained else None,
        image_size=tuple(config["image_size"]),
        quick_gelu=bool(config["quick_gelu"]),
    )
    backbone.grad_checkpointing = bool(config.get("grad_checkpointing", False))
    options = dict(config["method_options"] or {})
    if not with_pretrained:  # the checkpoint holds these weights
        from tir.training import methods  # noqa: F401  (registers every method)

        skipped = METHODS[config["method"]].weight_file_options if config["method"] in METHODS else frozenset()
        options = {key: value for key, value in options.items() if key not in skipped}
    return create_method(config["method"], backbone, num_classes, options)


def tokenizer_for(config: Mapping[str, Any]):
    return get_tokenizer(config["model"])
