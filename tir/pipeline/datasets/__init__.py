"""One small module per raw dataset format, behind a registry keyed by the canonical dataset name.

Each module declares a :class:`DatasetSpec`: the annotation file names it accepts, the key that holds
the image path, how raw ``split`` values map to train / val / test, and the published counts that
``tir prepare`` compares its output with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tir.pipeline.layout import canonical_dataset

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What ``tir prepare`` needs to know about one raw dataset format."""

    name: str
    annotation_files: tuple[str, ...]  # looked for in this order under --root
    image_key: str  # record key holding the image path, relative to ``image_dir``
    splits: tuple[str, ...]  # raw split values taken as they are
    fallback_split: str  # where every other raw split value goes
    split_rule: str  # the rule above in words, for warnings and the README
    published: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # split -> (ids, images, captions)
    image_dir: str = "imgs"
    id_key: str = "id"
    split_key: str = "split"
    captions_key: str = "captions"

    def split_of(self, value: object) -> str:
        """The split a raw ``split`` value belongs to under this dataset's rule."""
        return value if value in self.splits else self.fallback_split  # type: ignore[return-value]


def _load() -> dict[str, DatasetSpec]:
    from tir.pipeline.datasets import cuhk_pedes, icfg_pedes, rstpreid

    return {module.SPEC.name: module.SPEC for module in (cuhk_pedes, icfg_pedes, rstpreid)}


REGISTRY: dict[str, DatasetSpec] = _load()


def custom_spec(name: str, image_key: str, id_key: str, split_key: str, captions_key: str) -> DatasetSpec:
    """A user's own dataset: train / val / test splits under key names of their choosing."""
    return DatasetSpec(
        name=name,
        annotation_files=("annotations.json", "annotations.csv"),
        image_key=image_key,
        splits=SPLITS,
        fallback_split="val",
        split_rule="custom datasets: anything not train or test is val",
        id_key=id_key,
        split_key=split_key,
        captions_key=captions_key,
    )


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset named in any case; a UserError lists the known names otherwise."""
    return REGISTRY[canonical_dataset(name)]
