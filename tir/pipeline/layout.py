"""Dataset names and where each stage's artifacts live under a manifests root."""

from __future__ import annotations

import re
from pathlib import Path

from tir.errors import UserError

DATASETS: tuple[str, ...] = ("CUHK-PEDES", "ICFG-PEDES", "RSTPReid")
DEFAULT_MANIFESTS = Path("data_manifests")

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
STATS = "stats.json"
GRAPHS = "graphs.parquet"
MASK_PLANS = "mask_plans.parquet"
NOISE_DIR = "noise"


def canonical_dataset(name: str) -> str:
    """The canonical spelling of a dataset name given in any case (``cuhk-pedes`` -> ``CUHK-PEDES``)."""
    for known in DATASETS:
        if name.lower() == known.lower():
            return known
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (case does not matter)")


def dataset_dir(dataset: str, manifests: str | Path | None = None) -> Path:
    """The folder holding a dataset's artifacts: ``<manifests>/<CANONICAL-NAME>``, or ``<manifests>/<NAME>``
    for a dataset prepared with ``--format custom`` (its manifest must exist there)."""
    root = Path(manifests if manifests is not None else DEFAULT_MANIFESTS)
    try:
        return root / canonical_dataset(dataset)
    except UserError:
        if is_custom_name(dataset) and (root / dataset / MANIFEST).exists():
            return root / dataset
        raise UserError(f"unknown dataset {dataset!r}: not one of {', '.join(DATASETS)} (any case), and no custom "
                        f"dataset of that name under {root} (`tir prepare {dataset} --format custom` makes one)") from None


def is_custom_name(name: str) -> bool:
    """True for a name usable as a custom dataset's folder (letters, digits, ``_ . -``, not a known dataset)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name)) and name.lower() not in {d.lower() for d in DATASETS}


def noise_file(dataset_folder: Path, rate: float, seed: int) -> Path:
    """``noise/<rate>-seed<seed>.parquet`` inside a dataset folder (rate written like ``0.2``)."""
    return dataset_folder / NOISE_DIR / f"{rate:g}-seed{seed}.parquet"


def require_file(path: Path, made_by: str) -> Path:
    """Return ``path`` if it exists, else raise a one-line error naming the command that makes it."""
    if not path.exists():
        raise UserError(f"not found; run `{made_by}` first (or pass the folder that holds it)", path=path)
    return path
