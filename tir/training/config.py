"""Run configuration: defaults, a YAML recipe, ``--set key=value`` overrides, saved with the run.

Keys are flat except ``method_options`` (passed to the method's constructor; set one with
``--set method_options.irra_mask_leak=true``). Values given with ``--set`` are parsed as YAML
(``1e-5``, ``true``, ``[384, 128]``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tir.errors import UserError

DEFAULTS: dict[str, Any] = {
    # data
    "dataset": None,  # CUHK-PEDES / ICFG-PEDES / RSTPReid: the folder <manifests>/<dataset>
    "manifests": "data_manifests",  # artifact root (or the dataset folder itself when dataset is null)
    "image_root": None,  # folder the manifest's image paths are relative to (default: <prepare --root>/imgs)
    "noise": None,  # a `tir make-noise` file: train pairs take their caption from caption_source
    "mask_plans": "auto",  # auto: use mask_plans.parquet when present; true: require it; false: ignore it
    "image_cache": True,  # decode images once into <dataset folder>/cache (uint8 memmap), reuse after
    "text_length": 77,  # tokens per caption (start and end included)
    "img_aug": False,  # pad-and-crop and random erasing on top of the flip
    "sampler": "random",  # random | identity (groups of `instances` images per identity)
    "instances": 4,
    "val_fraction": 0.05,  # share of train identities held out as val when there is no val split (ICFG-PEDES)
    "num_workers": 4,
    # model
    "model": "ViT-B-16",  # an open_clip config name (tir-tiny, tir-micro ship with tir)
    "pretrained": None,  # local checkpoint file (OpenAI ViT-B-16.pt or an open_clip/LAION file)
    "quick_gelu": False,  # true for OpenAI checkpoints
    "grad_checkpointing": False,  # recompute transformer activations in backward: less memory (ViT-B at batch 128)
    "image_size": [384, 128],  # H, W
    # method
    "method": "irra",
    "method_options": {},
    # optimisation
    "epochs": 60,
    "batch_size": 64,  # per process
    "optimizer": "adam",  # adam | adamw
    "lr": 1e-5,
    "new_module_lr_factor": 5.0,  # the method's new modules train at lr x this (see the method's lr_rules)
    "bias_lr_factor": 2.0,  # backbone biases train at lr x this (IRRA: parameters named bias)
    "weight_decay": 4e-5,  # not applied to biases
    "betas": [0.9, 0.999],
    "eps": None,  # null: 1e-3 for adam (IRRA, RDE, HKGR, CCMA), 1e-8 for adamw
    "warmup_epochs": 5,
    "warmup_factor": 0.1,  # lr starts at lr x this and rises linearly during warm-up
    "min_lr": 0.0,  # cosine floor
    "grad_clip": 0.0,  # max gradient norm; 0 disables
    "amp": "auto",  # auto (bf16 on CUDA where native, else fp16) | bf16 | fp16 | off; CPU is always fp32
    "max_steps_per_epoch": None,  # cut epochs short (tests, benchmarks)
    "log_every": 50,  # steps between reads of the running loss to the host (progress bar, non-finite check)
    "ddp_find_unused_parameters": False,  # torchrun: set true for methods that leave parameters unused in a step
    "dist_timeout_minutes": 60,  # torchrun: how long ranks wait for each other (image cache, checkpoints) before failing
    # run
    "seed": 1,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "out": "runs",
    "name": None,  # run folder name; default <method>-<dataset>
    "eval_every": 1,  # validate every N epochs (and after the last)
    "eval_batch_size": 256,
    "best_metric": "R1",  # val metric that picks best.pt
}

METHOD_OPTIONS = "method_options"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"bad --set {text!r}; write key=value, e.g. --set lr=2e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` as a string; read such strings as numbers."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    return value


def _set(config: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    value = _coerce(value)
    head = keys[0]
    if head not in DEFAULTS:
        raise UserError(f"unknown config key {head!r} in {origin}; known keys: {', '.join(DEFAULTS)}")
    if len(keys) == 1:
        config[head] = value if head != METHOD_OPTIONS else dict(value or {})
    elif head == METHOD_OPTIONS and len(keys) == 2:
        config[head][keys[1]] = value
    else:
        raise UserError(f"config key {'.'.join(keys)!r} in {origin} is not settable; only method_options.<name> nests")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML recipe as a mapping."""
    p = Path(path)
    if not p.is_file():
        raise UserError("config file not found; pass a YAML recipe such as configs/irra-cuhk.yaml", path=p)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML ({str(error).splitlines()[0]}); fix the file", path=p) from None
    if not isinstance(data, dict):
        raise UserError("a config file must be a mapping of keys to values", path=p)
    return data


def resolve(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults <- YAML file <- explicit options (CLI flags; None means not given) <- ``--set`` overrides."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        for key, value in read_yaml(path).items():
            _set(config, [key], value, str(path))
    for key, value in (options or {}).items():
        if value is not None:
            _set(config, [key], value, "options")
    for text in overrides:
        keys, value = parse_override(text)
        _set(config, keys, value, f"--set {text}")
    return config


def save(config: Mapping[str, Any], path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from tir.pipeline.store import write_bytes_atomic

    write_bytes_atomic(path, yaml.safe_dump(dict(config), sort_keys=False).encode())
