"""Noisy correspondences for the train split, compatible with RDE's ``.npy`` files both ways.

A noise file maps each train pair to the pair whose caption it receives (``caption_source``);
``is_noisy`` is ``caption_source != pair_index`` (a shuffled pair can land on itself and stays clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tir.errors import UserError
from tir.pipeline import store
from tir.pipeline.layout import MANIFEST, noise_file, require_file

STAGE = "make-noise"


def rde_sources(n: int, rate: float, seed: int) -> np.ndarray:
    """RDE's generator: the caption source of each of ``n`` pairs when ``rate`` of them are shuffled.

    Uses (and leaves seeded) numpy's global RNG exactly as RDE does, so the result is bit-identical.
    """
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"--rate must be between 0 and 1, got {rate}")
    np.random.seed(seed)
    order = np.random.permutation(n)
    chosen = order[: int(rate * n)]
    shuffled = chosen.copy()
    np.random.shuffle(shuffled)
    sources = np.arange(n)
    sources[chosen] = shuffled
    return sources.astype(np.int64)


def read_npy(path: Path, n: int) -> np.ndarray:
    """A caption-source array from an RDE ``.npy`` file, validated against ``n`` train captions."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"not a readable .npy array ({error}); pass an RDE noise index file", path=path) from None
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"expected a 1-D integer array, found {array.ndim}-D {array.dtype}; pass an RDE noise index file", path=path)
    if len(array) != n:
        raise UserError(f"holds {len(array):,} entries but the train split has {n:,} captions; "
                        "use the file made for this dataset (or re-run `tir prepare`)", path=path)
    if (array < 0).any() or (array >= n).any() or np.bincount(array, minlength=n).max(initial=0) > 1:
        raise UserError(f"is not a permutation of 0..{n - 1}; pass an RDE noise index file", path=path)
    return array.astype(np.int64)


def noise_table(sources: np.ndarray) -> pa.Table:
    """The noise parquet table for caption sources of train pairs 0..N-1."""
    pairs = np.arange(len(sources), dtype=np.int64)
    return pa.table({"pair_index": pairs, "caption_source": sources.astype(np.int64), "is_noisy": sources != pairs})


@dataclass
class NoiseResult:
    """What ``make_noise`` did."""

    path: Path
    up_to_date: bool
    n: int = 0
    noisy: int = 0
    matches_generator: bool = True  # False when an imported .npy differs from RDE's generator at (N, rate, seed)


def train_count(manifest_path: Path) -> int:
    """Number of train pairs in a manifest (checking pair_index is 0..N-1)."""
    table = store.read_table(manifest_path, stage="prepare", columns=["split", "pair_index"])
    pairs = table.filter(pc.equal(table.column("split").cast(pa.string()), "train")).column("pair_index").to_numpy()
    if not np.array_equal(np.sort(pairs), np.arange(len(pairs))):
        raise UserError("train pair_index is not 0..N-1; re-run `tir prepare --force`", path=manifest_path)
    return len(pairs)


def make_noise(
    folder: Path, dataset: str, *, rate: float, seed: int, from_npy: Path | None = None, force: bool = False
) -> NoiseResult:
    """Write ``folder/noise/<rate>-seed<seed>.parquet`` from RDE's generator or an imported ``.npy`` (unless fresh)."""
    manifest_path = require_file(folder / MANIFEST, f"tir prepare {dataset}")
    out = noise_file(folder, rate, seed)
    options = {"rate": rate, "seed": seed, "generator": "rde" if from_npy is None else "npy"}
    inputs: dict[str, Path] = {"manifest": manifest_path}
    if from_npy is not None:
        inputs["npy"] = require_file(Path(from_npy), "the RDE noise index file")
    if not force and store.is_fresh(out, stage=STAGE, options=options, inputs=inputs):
        return NoiseResult(out, up_to_date=True)
    n = train_count(manifest_path)
    generated = rde_sources(n, rate, seed)
    sources = generated if from_npy is None else read_npy(Path(from_npy), n)
    matches = bool(np.array_equal(sources, generated))
    table = noise_table(sources)
    store.write_table(table, out, stage=STAGE, options=options, inputs=inputs, extra={"n": n, "matches_generator": matches})
    return NoiseResult(out, up_to_date=False, n=n, noisy=int(table.column("is_noisy").to_numpy().sum()), matches_generator=matches)


def write_npy(noise_path: Path, npy_path: Path) -> Path:
    """Export a noise parquet as an RDE ``.npy`` (int64 caption sources in pair order)."""
    table = store.read_table(noise_path, stage=STAGE)
    order = np.argsort(table.column("pair_index").to_numpy(), kind="stable")
    sources = table.column("caption_source").to_numpy()[order].astype(np.int64)
    with store.atomic_path(npy_path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, sources)
    return Path(npy_path)


def load_noise(path: str | Path, manifest: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(caption_source, is_noisy)`` of the train pairs, indexed by pair_index, from a noise parquet
    (refused unless built from ``manifest``) or an RDE ``.npy`` (validated against ``manifest``)."""
    p, manifest_path = Path(path), Path(manifest)
    if p.suffix == ".npy":
        sources = read_npy(require_file(p, "the RDE noise index file"), train_count(manifest_path))
    else:
        rate, _, seed = p.stem.partition("-seed")
        folder = manifest_path.parent
        store.require_built_from(p, "manifest", manifest_path,
                                 f"tir make-noise {folder.name} --manifests {folder.parent} --rate {rate} --seed {seed or 1}")
        table = store.read_table(p, stage=STAGE)
        pairs = table.column("pair_index").to_numpy()
        sources = np.empty(len(pairs), np.int64)
        sources[pairs] = table.column("caption_source").to_numpy()
    return sources, sources != np.arange(len(sources))


def summarise_noise(table: pa.Table, provenance: dict[str, Any]) -> list[str]:
    """`tir info` lines: N, noisy share, rate, seed and source of a noise file."""
    noisy = table.column("is_noisy").to_numpy(zero_copy_only=False)
    options = provenance.get("options", {})
    n = len(noisy)
    return [
        f"  train pairs: {n:,}   noisy: {int(noisy.sum()):,} ({100 * noisy.mean() if n else 0:.2f}%)",
        f"  rate {options.get('rate')}   seed {options.get('seed')}   from "
        + ("RDE's generator" if options.get("generator") == "rde" else
           f"an imported .npy ({'identical to' if provenance.get('matches_generator') else 'not'} RDE's generator at this rate and seed)"),
    ]
