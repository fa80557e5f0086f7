"""Checkpoints: atomic writes, full training state for ``--resume``, and rebuilding a trained method.

A checkpoint is a dict saved with torch.save (loadable with ``weights_only=True``)::

    format 1; tir_version; config (the resolved run config); num_classes; epoch (epochs completed);
    step; model (the method's state_dict); best {"metric", "value", "epoch"};
    and in last.pt only: optimizer, scheduler, scaler, rng (torch, cuda, numpy, python)

``runs/<name>/last.pt`` is written after every epoch, ``best.pt`` whenever val improves.
``load_method(run_dir_or_file)`` rebuilds the method (no pretrained file needed) for ``tir eval``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tir import __version__
from tir.errors import UserError
from tir.pipeline.store import atomic_path
from tir.training.build import build_method
from tir.training.methods.base import Method

FORMAT = 1
LAST, BEST = "last.pt", "best.pt"


def capture_rng() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save ``state`` (plus format and version) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "tir_version": __version__, **state}, tmp)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file a run folder stands for (``best.pt``, else ``last.pt``), or ``path`` itself."""
    p = Path(path)
    if p.is_dir():
        return p / BEST if (p / BEST).exists() else p / LAST
    return p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file, or ``best.pt`` (else ``last.pt``) of a run folder, onto the CPU."""
    p = Path(path)
    if p.is_dir():
        p = p / BEST if (p / BEST).exists() else p / LAST
    if not p.is_file():
        raise UserError("no checkpoint here; pass a run folder (runs/<name>) or a .pt file written by `tir train`", path=p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"not a readable tir checkpoint ({type(error).__name__}); re-run `tir train`", path=p) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"not a tir checkpoint of format {FORMAT}; re-run `tir train`", path=p)
    return state


def load_method(path: str | Path, device: str | torch.device = "cpu") -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """(method in eval mode on ``device``, its run config, the checkpoint dict) from a run folder or file."""
    state = read_checkpoint(path)
    return method_from_state(state, device), state["config"], state


def method_from_state(state: dict[str, Any], device: str | torch.device = "cpu") -> Method:
    """The trained method (eval mode, on ``device``) of a checkpoint dict from ``read_checkpoint``."""
    method = build_method(state["config"], state["num_classes"], with_pretrained=False)
    method.load_state_dict(state["model"])
    return method.to(device).eval()
