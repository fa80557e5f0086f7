"""Datasets over the artifacts: train pairs (with mask plans and a noise file when given) and eval splits.

``TrainData.load(...)`` reads manifest.parquet (+ mask_plans.parquet, + noise/<rate>-seed<seed>.parquet),
tokenises the captions, and when the manifest has no ``val`` split (ICFG-PEDES) holds out a seeded
share of the train identities as validation (``holdout_val``). ``TrainDataset`` items are dicts:
``images`` uint8 [3, H, W] (augmented and normalised as a batch on the device by
tir.training.transforms.augment_batch), ``draws`` float [DRAWS] (train items only: the sample's
random draws for that), ``text`` long [L], ``pids``, ``index`` (position in the dataset),
``pair_index`` (the manifest's), and with plans ``word_ids``, ``level``, ``element`` long [L].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from tir.errors import UserError
from tir.pipeline import store
from tir.knowledge.mask_plans import plan_arrays, require_plan_tokenizer, rerun_command
from tir.knowledge.noise import load_noise
from tir.pipeline.layout import MANIFEST, MASK_PLANS
from tir.progress import log
from tir.training.image_cache import ImageStore, build_cache
from tir.training.transforms import sample_draws

MANIFEST_COLUMNS = ("pair_index", "split", "pid", "image_index", "image_path", "caption")


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest as a DataFrame (split as plain strings)."""
    table = store.read_table(path, stage="prepare")
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"manifest lacks columns {missing}; re-run `tir prepare --force`", path=path)
    frame = table.select(list(MANIFEST_COLUMNS)).to_pandas()
    frame["split"] = frame["split"].astype(str)
    return frame


def image_root(manifest: Path, override: str | Path | None = None) -> Path:
    """The folder the manifest's image paths are relative to: ``override``, else ``<prepare --root>/imgs``."""
    if override is not None:
        root = Path(override).expanduser()
    else:
        recorded = ((store.read_provenance(manifest) or {}).get("options") or {}).get("root")
        if recorded is None:
            raise UserError("the manifest does not record its dataset root; pass --image-root", path=manifest)
        root = Path(recorded) / "imgs"
    if not root.is_dir():
        raise UserError("image folder not found; pass the folder holding the images as --image-root", path=root)
    return root


def holdout_val(manifest: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A copy where ``fraction`` of the train identities (seeded choice, at least one) become split ``val``.

    Used when a dataset has no val split (ICFG-PEDES): the best checkpoint is chosen on these held-out
    identities, never on test. Train and val pids are renumbered contiguously (in pid order).
    """
    frame = manifest.copy()
    train = frame["split"] == "train"
    ids = np.unique(frame.loc[train, "pid"].to_numpy())
    count = max(1, int(round(fraction * len(ids))))
    if count >= len(ids):
        raise UserError(f"val_fraction {fraction} leaves no train identities; use a smaller value")
    held = np.random.default_rng(seed).choice(ids, size=count, replace=False)
    to_val = train & frame["pid"].isin(held)
    frame.loc[to_val, "split"] = "val"
    for split in ("train", "val"):
        rows = frame["split"] == split
        frame.loc[rows, "pid"] = np.unique(frame.loc[rows, "pid"].to_numpy(), return_inverse=True)[1].astype(frame["pid"].dtype)
    return frame


def read_train_plans(path: Path, pair_index: np.ndarray, tokenizer, length: int) -> dict[str, torch.Tensor]:
    """The train plans of ``pair_index`` rows as [N, length] long tensors (token_ids, word_ids, level, element).

    Refuses plans made with another tokenizer or context length than the model's.
    """
    require_plan_tokenizer(path, tokenizer, length)
    arrays = plan_arrays(path, "train", length)
    positions = pd.Index(arrays.pop("pair_index")).get_indexer(pair_index)
    if (positions < 0).any():
        raise UserError(f"mask plans lack {int((positions < 0).sum())} train pairs; run `{rerun_command(path, length)}`", path=path)
    return {name: torch.from_numpy(array[positions]) for name, array in arrays.items()}


class TrainDataset(Dataset):
    """Train pairs. Indexed by ``(epoch, index)`` (``EpochSampler`` yields those) or by ``index`` alone
    (epoch 0); an item's random draws come from a generator seeded by (seed, epoch, index), so a
    DataLoader worker kept across epochs still draws each epoch's own."""

    def __init__(
        self,
        pairs: pd.DataFrame,
        images: ImageStore,
        image_rows: np.ndarray,
        text: torch.Tensor,
        plans: dict[str, torch.Tensor] | None,
        augment: bool,
        seed: int,
        train: bool = True,
    ) -> None:
        self.pairs = pairs.reset_index(drop=True)
        self.pids = torch.tensor(self.pairs["pid"].to_numpy(np.int64))
        self.pair_index = torch.tensor(self.pairs["pair_index"].to_numpy(np.int64))
        self.images, self.image_rows, self.text, self.plans = images, image_rows, text, plans
        self.augment, self.seed, self.train = augment, seed, train

    def without_augmentation(self) -> "TrainDataset":
        """The same pairs without draws (test-time images, for per-epoch passes such as RDE's division)."""
        return TrainDataset(self.pairs, self.images, self.image_rows, self.text, self.plans, False, self.seed, train=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = {
            "images": self.images.load(int(self.image_rows[index])),
            "text": self.text[index],
            "pids": self.pids[index],
            "index": torch.tensor(index),
            "pair_index": self.pair_index[index],
        }
        if self.train:
            generator = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & 0x7FFFFFFFFFFFFFFF)
            item["draws"] = sample_draws(generator)
        if self.plans is not None:
            item.update({key: self.plans[key][index] for key in ("word_ids", "level", "element")})
        return item


class EvalImages:
    """``load_image(image_path) -> uint8 [3, H, W]`` for tir.training.evaluation.eval_data: pixels, a quarter
    of float32's bytes across the DataLoader's processes; ``evaluate`` normalises them on the device."""

    def __init__(self, store_: ImageStore) -> None:
        self.store = store_
        self.position = {path: i for i, path in enumerate(store_.paths)}

    def __call__(self, image_path: str) -> torch.Tensor:
        return self.store.load(self.position[image_path])


@dataclass
class TrainData:
    """Everything the engine needs from the artifacts."""

    manifest: pd.DataFrame  # after the val hold-out when there was no val split
    train: TrainDataset
    num_classes: int
    val_split: str  # "val"
    heldout_val: bool  # True when val identities were held out of train
    load_image: Callable[[str], torch.Tensor]  # uint8 val / test images for eval_data
    tokenize: Callable[[Sequence[str]], torch.Tensor]
    noise_truth: torch.Tensor | None  # is_noisy per train-dataset position


def make_tokenize(tokenizer, length: int) -> Callable[[Sequence[str]], torch.Tensor]:
    """``tokenize(captions) -> LongTensor [n, length]`` with open_clip's tokenizer."""

    def tokenize(captions: Sequence[str]) -> torch.Tensor:
        return tokenizer(list(captions), context_length=length)

    return tokenize


def load_train_data(
    folder: Path,
    *,
    tokenizer,
    image_size: tuple[int, int],
    text_length: int,
    seed: int,
    img_aug: bool = False,
    image_root_override: str | Path | None = None,
    noise: Path | None = None,
    use_plans: bool | None = None,
    val_fraction: float = 0.05,
    cache_dir: Path | None = None,
    cache_workers: int = 0,
) -> TrainData:
    """Load a dataset folder (manifest, optional plans and noise) into a TrainData.

    ``use_plans``: True requires mask_plans.parquet, False ignores it, None uses it when present.
    ``cache_dir``: build / reuse the decoded-image cache there (else decode from files every time).
    """
    manifest_path = Path(folder) / MANIFEST
    if not manifest_path.exists():
        raise UserError("manifest not found; run `tir prepare` (or `tir synth`) first, or pass --manifests", path=manifest_path)
    original = read_manifest(manifest_path)
    if not (original["split"] == "train").any():
        raise UserError("the manifest has no train pairs, so there is nothing to train on; check the split values "
                        "of the annotation file (`tir info stats.json` beside it) and re-run `tir prepare`", path=manifest_path)
    root = image_root(manifest_path, image_root_override)
    heldout = not (original["split"] == "val").any()
    manifest = holdout_val(original, val_fraction, seed) if heldout else original
    tokenize = make_tokenize(tokenizer, text_length)

    # captions (and plans) of every train pair: a noise file may give a pair a held-out pair's caption
    train_all = original[original["split"] == "train"].sort_values("pair_index", kind="stable")
    all_pairs = train_all["pair_index"].to_numpy(np.int64)
    plans_path = Path(folder) / MASK_PLANS
    if use_plans and not plans_path.exists():
        folder = Path(folder)
        raise UserError(f"mask plans not found; run `tir parse-graphs {folder.name} --manifests {folder.parent}` and "
                        f"`{rerun_command(plans_path, text_length).removesuffix(' --force')}` first", path=plans_path)
    plans = None
    if plans_path.exists() and use_plans is not False:
        store.require_built_from(plans_path, "manifest", manifest_path, rerun_command(plans_path, text_length).removesuffix(" --force"))
        try:
            plans = read_train_plans(plans_path, all_pairs, tokenizer, text_length)
        except UserError as error:
            if use_plans:
                raise
            log(f"not using the mask plans: {error}")
    if plans is not None:
        text_all = plans.pop("token_ids")
    else:
        text_all = tokenize(train_all["caption"].tolist())

    pairs = manifest[manifest["split"] == "train"].sort_values("pair_index", kind="stable")
    noise_truth = None
    source = pairs["pair_index"].to_numpy(np.int64)
    if noise is not None:
        sources, noisy = load_noise(noise, manifest_path)
        source, noise_truth = sources[source], torch.as_tensor(noisy[source])
    rows = pd.Index(all_pairs).get_indexer(source)
    text = text_all[rows]
    plans = {key: value[rows] for key, value in plans.items()} if plans is not None else None

    needed = manifest[manifest["split"].isin(["train", "val"])]
    paths = sorted(set(needed["image_path"]))
    cache = build_cache(root, paths, image_size, cache_dir, cache_workers) if cache_dir is not None else None
    images = ImageStore(root, paths, image_size, cache)
    position = {path: i for i, path in enumerate(paths)}
    image_rows = np.array([position[p] for p in pairs["image_path"]], dtype=np.int64)
    dataset = TrainDataset(pairs, images, image_rows, text, plans, img_aug, seed)
    return TrainData(
        manifest=manifest,
        train=dataset,
        num_classes=int(pairs["pid"].max()) + 1,
        val_split="val",
        heldout_val=heldout,
        load_image=EvalImages(images),
        tokenize=tokenize,
        noise_truth=noise_truth,
    )
