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


RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # the shipped recipes (configs/ in the repository)


def find_recipe(path: str | Path) -> Path:
    """``path`` when it is a file, else the shipped recipe of that name (``hkgr_cuhk-pedes`` or ``.yaml``)."""
    p = Path(path)
    if p.is_file() or p.parent != Path("."):
        return p
    shipped = RECIPES / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    return shipped if shipped.is_file() else p


def recipe_names() -> list[str]:
    """The names of the recipes shipped with tir."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML recipe (a file, or the name of a shipped recipe) as a mapping."""
    p = find_recipe(path)
    if not p.is_file():
        raise UserError("config file not found; pass a YAML recipe file or the name of a shipped recipe: "
                        f"{', '.join(recipe_names())}", path=p)
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
    validate(config)
    return config


# ----------------------------------------------------------------------------- validation
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _int(low: int | None = None) -> Any:
    def check(value: Any) -> str | None:
        if not _is_int(value):
            return "is not an integer"
        return f"must be at least {low}" if low is not None and value < low else None
    return check


def _number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if not _is_number(value):
            return "is not a number"
        if low is not None and (value < low or (low_open and value == low)):
            return f"must be {'above' if low_open else 'at least'} {low:g}"
        if high is not None and (value > high or (high_open and value == high)):
            return f"must be {'below' if high_open else 'at most'} {high:g}"
        return None
    return check


def _choice(*allowed: Any) -> Any:
    def check(value: Any) -> str | None:
        return None if value in allowed and type(value) in {type(a) for a in allowed} else f"must be one of {', '.join(map(str, allowed))}"
    return check


def _of_type(kind: type, *, optional: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        return None if isinstance(value, kind) else f"is not {'a ' + kind.__name__ if kind is not bool else 'true or false'}"
    return check


def _pair(item: Any, what: str) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or len(value) != 2 or any(item(v) for v in value):
            return f"must be a list of two {what}"
        return None
    return check


def _optional(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


def _out_folder(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "is not a folder path"
    return "is an existing file, not a folder; choose another --out" if Path(value).is_file() else None


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "/" in value or value in (".", ".."):
        return "must be a folder name without /"
    return None


# key -> check(value) -> problem or None. Keys without a rule (added by a method or a later feature) pass.
RULES: dict[str, Any] = {
    "dataset": _of_type(str, optional=True),
    "manifests": _of_type(str),
    "image_root": _of_type(str, optional=True),
    "noise": _of_type(str, optional=True),
    "mask_plans": _choice("auto", True, False),
    "image_cache": _of_type(bool),
    "text_length": _int(3),
    "img_aug": _of_type(bool),
    "sampler": _choice("random", "identity"),
    "instances": _int(1),
    "val_fraction": _number(0, 1, low_open=True, high_open=True),
    "num_workers": _int(0),
    "model": _of_type(str),
    "pretrained": _of_type(str, optional=True),
    "quick_gelu": _of_type(bool),
    "image_size": _pair(_int(16), "integers of at least 16 (height, width)"),
    "method": _of_type(str),
    "method_options": _of_type(dict),
    "epochs": _int(1),
    "batch_size": _int(2),  # batch-level losses (SDM) need at least two pairs
    "optimizer": _choice("adam", "adamw"),
    "lr": _number(0, low_open=True),
    "new_module_lr_factor": _number(0, low_open=True),
    "bias_lr_factor": _number(0, low_open=True),
    "weight_decay": _number(0),
    "betas": _pair(_number(0, 1, high_open=True), "numbers in [0, 1)"),
    "eps": _optional(_number(0, low_open=True)),  # null: the optimiser's reference default
    "warmup_epochs": _number(0),
    "warmup_factor": _number(0, 1),  # 0: warm up from zero (CFACK)
    "min_lr": _number(0),
    "grad_clip": _number(0),
    "amp": _choice("auto", "bf16", "fp16", "off"),
    "max_steps_per_epoch": _optional(_int(1)),
    "ddp_find_unused_parameters": _of_type(bool),
    "seed": _int(),
    "device": _of_type(str),
    "out": _out_folder,
    "name": _name,
    "eval_every": _int(1),
    "eval_batch_size": _int(1),
    "best_metric": _choice("R1", "R5", "R10", "mAP", "mINP", "rSum"),
    "grad_checkpointing": _of_type(bool),
    "log_every": _int(1),
    "dist_timeout_minutes": _number(0, low_open=True),
}


def problems(config: Mapping[str, Any]) -> list[str]:
    """One line per bad value of a resolved config (empty when it is valid)."""
    found = []
    for key, check in RULES.items():
        if key in config:
            problem = check(config[key])
            if problem:
                found.append(f"{key}={config[key]!r} {problem}")
    if not found and config.get("min_lr", 0) > config.get("lr", 1):
        found.append(f"min_lr={config['min_lr']!r} must not exceed lr={config['lr']!r}")
    return found


def validate(config: Mapping[str, Any]) -> None:
    """Raise one UserError listing every bad value of ``config`` (fix with the recipe or --set KEY=VALUE)."""
    found = problems(config)
    if found:
        raise UserError(f"bad config value{'s' if len(found) > 1 else ''}: {'; '.join(found)}; fix the recipe or pass --set KEY=VALUE")


def save(config: Mapping[str, Any], path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from tir.pipeline.store import write_bytes_atomic

    write_bytes_atomic(path, yaml.safe_dump(dict(config), sort_keys=False).encode())
