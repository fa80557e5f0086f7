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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tir import __version__
from tir.errors import UserError
from tir.pipeline.store import atomic_path, fingerprint, fingerprint_matches
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


def restore_scaler(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """Load a saved GradScaler state into ``scaler`` when it holds one.

    A run without fp16 scaling (CPU, bf16) saves ``{}``; resumed with fp16 its scaler starts afresh.
    """
    if state:
        scaler.load_state_dict(state)


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


def read_checkpoint(path: str | Path, resume: bool = False) -> dict[str, Any]:
    """Load a checkpoint file, or ``best.pt`` (else ``last.pt``) of a run folder, onto the CPU.

    A file that is not a tir checkpoint or lacks what it must hold (``resume``: the training state
    too) is a one-line UserError."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise UserError("no checkpoint here; pass a run folder (runs/<name>) or a .pt file written by `tir train`", path=p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"not a readable tir checkpoint ({type(error).__name__}); re-run `tir train`", path=p) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"not a tir checkpoint of format {FORMAT}; re-run `tir train`", path=p)
    problem = _checkpoint_problem(state)
    if problem is None and resume:
        absent = [key for key in RESUME_KEYS if not isinstance(state.get(key), dict)]
        problem = f"no training state to resume from: {', '.join(absent)} missing" if absent else None
    if problem:
        raise UserError(f"damaged tir checkpoint ({problem}); use the run's other checkpoint or re-run `tir train`", path=p)
    return state


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "best")
# key -> (type, what it must be); RESUME_KEYS only in last.pt
_REQUIRED: dict[str, tuple[type | tuple[type, ...], str]] = {
    "config": (dict, "the run config"),
    "num_classes": (int, "a class count"),
    "epoch": (int, "an epoch count"),
    "step": (int, "a step count"),
    "model": (dict, "the model's state dict"),
}


def _checkpoint_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint dict's shape, or None."""
    for key, (kind, meaning) in _REQUIRED.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            return f"{key} is missing or is not {meaning}"
    if state["num_classes"] < 1 or state["epoch"] < 0 or state["step"] < 0:
        return "num_classes, epoch or step is out of range"
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "model holds values that are not tensors"
    missing = [key for key in ("method", "model", "image_size", "text_length", "method_options") if key not in state["config"]]
    if missing:
        return f"its config lacks {', '.join(missing)}"
    return None


def load_method(path: str | Path, device: str | torch.device = "cpu") -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """(method in eval mode on ``device``, its run config, the checkpoint dict) from a run folder or file."""
    from tir.training.config import DEFAULTS

    state = read_checkpoint(path)
    return method_from_state(state, device, path), {**DEFAULTS, **state["config"]}, state


def method_from_state(state: dict[str, Any], device: str | torch.device = "cpu", path: str | Path | None = None) -> Method:
    """The trained method (eval mode, on ``device``) of a checkpoint dict from ``read_checkpoint``; weights
    that do not fit the checkpoint's own config are a one-line UserError naming ``path``."""
    from tir.training.build import check_config
    from tir.training.config import DEFAULTS

    config = {**DEFAULTS, **state["config"]}
    check_config({**config, "pretrained": None})  # the weights come from the checkpoint, not the pretrained file
    method = build_method(config, state["num_classes"], with_pretrained=False)
    try:
        method.load_state_dict(state["model"])
    except RuntimeError:
        written_by = state.get("tir_version", "an unknown version")
        raise UserError(f"its weights do not fit its own config ({_weights_mismatch(method.state_dict(), state['model'])}): "
                        f"the file is damaged, or it was written by a tir ({written_by}) that built "
                        f"{config['method']}'s layers differently; re-run `tir train` with this tir ({__version__})",
                        path=path) from None
    return method.to(device).eval()


def _weights_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """How a checkpoint's weights differ from a model's: missing, unexpected and reshaped keys, with the first of each."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    reshaped = [key for key in expected if key in given and expected[key].shape != given[key].shape]
    parts = [f"{label} {len(keys)}, e.g. {keys[0]}" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if keys]
    return "; ".join(parts) or "the weights do not load"


def data_manifest_fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of the manifest a run trains on (kept in its checkpoints for `tir eval`)."""
    from tir.pipeline.layout import MANIFEST, dataset_dir

    folder = dataset_dir(config["dataset"], config["manifests"]) if config.get("dataset") else Path(config["manifests"])
    return _fingerprint_cached(folder / MANIFEST)


def _fingerprint_cached(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint(path)
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple[str, int, int], dict[str, Any]] = {}


def check_manifest(state: Mapping[str, Any], manifest: Path, allow_other: bool) -> str | None:
    """Refuse (UserError) to score a run on a manifest other than the one it was trained on.

    With ``allow_other`` the mismatch is returned as a warning line instead. Checkpoints from
    before tir recorded the manifest give a warning that it cannot be checked.
    """
    recorded = state.get("manifest")
    if not isinstance(recorded, Mapping):
        return "this checkpoint does not record the manifest it was trained on, so it cannot be checked"
    if fingerprint_matches(recorded, manifest):
        return None
    detail = (f"the run was trained on {recorded.get('path')} ({recorded.get('size', 0):,} bytes, sha256 "
              f"{(recorded.get('sha256') or '?')[:12]}), this one differs")
    if not allow_other:
        raise UserError(f"is not the manifest this run was trained on: {detail}; pass the run's --manifests, "
                        "or --allow-other-manifest to score it on this one anyway", path=manifest)
    return f"scoring on another manifest than the run's: {detail}"
