"""The contract every method (clip, irra, hkgr, rde, ...) fulfils, and the method registry.

A method is one module that owns its heads and losses and declares its test-time similarity.
The engine only calls what is declared here, so no method-specific branch lives in the engine.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from tir.training.lr_rules import LrRule

Features = dict[str, torch.Tensor]
"""Named feature tensors of a batch, e.g. {"global": [B, D], "tokens": [B, L, D]}."""


@dataclass
class StepContext:
    """What a training step may need besides the batch."""

    epoch: int  # 0-based
    step: int  # global optimisation step, 0-based
    seed: int  # run seed, for deterministic per-(seed, epoch, pair) sampling


@dataclass
class EpochContext:
    """Handed to ``Method.on_epoch_start`` before each training epoch.

    ``clean_batches()`` iterates the train set once without augmentation (each batch carries
    ``index``: positions in the train dataset); ``noise_truth`` is the known ``is_noisy`` flag per
    train-dataset position when the run uses a noise file, else None; ``amp`` the run's autocast
    dtype (None: float32), for passes over the data (tir.training.precision.autocast); ``train_set`` the
    train dataset itself (tir.training.data.TrainDataset: its ``text``, ``pids``, ``image_rows`` by position).
    """

    epoch: int
    device: torch.device
    seed: int
    num_train: int
    clean_batches: Callable[[], Iterator[dict[str, torch.Tensor]]]
    noise_truth: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    amp: torch.dtype | None = None
    train_set: Any = None


class Method(nn.Module, abc.ABC):
    """A retrieval method: backbone + its own heads, its training losses and its test similarity.

    Batches are dicts of tensors: ``images`` [B, 3, H, W] float, ``text`` [B, L] long token ids,
    ``pids`` [B] long, ``index`` [B] long (position in the train dataset), and, when mask plans are
    loaded, ``word_ids``, ``level``, ``element`` [B, L] (see tir.knowledge), ``pair_index`` [B].
    """

    name: ClassVar[str]
    # mask_plans.parquet under `mask_plans: auto`: True needs it, False never reads it, None uses it when present
    uses_mask_plans: ClassVar[bool | None] = None
    reranks: ClassVar[bool] = False
    """Whether ``rerank`` re-scores a query's top candidates at test time (``tir eval --rerank-k``)."""
    similarity_terms: ClassVar[dict[str, float] | None] = None
    """{feature name: weight} when ``similarity`` is the sum of weight x text[name] @ image[name].T over these
    features (and nothing else): evaluation then computes the scores into memory reused from chunk to chunk
    (tir.training.term_scores), and `tir serve` ranks a large index with an int8 first pass whose top k is
    provably the exact one (tir.search.compact). None: the method's own ``similarity`` and the float32 scan."""
    rerank_only_features: ClassVar[frozenset[str]] = frozenset()
    """Feature names that only ``rerank`` reads: evaluation drops them when it does not re-rank."""
    weight_file_options: ClassVar[frozenset[str]] = frozenset()
    """Options naming weight files read at construction; left out when a checkpoint supplies the weights."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor]:
        """Training losses by name (``loss_*`` keys are summed into the objective; others are logged)."""

    @abc.abstractmethod
    def encode_image(self, images: torch.Tensor) -> Features:
        """Test-time image features."""

    @abc.abstractmethod
    def encode_text(self, text: torch.Tensor) -> Features:
        """Test-time text features; a method whose test similarity relies on some tokens more than others may
        add ``token_weights`` [B, L] (0 = not at all), which `tir search` shows as the words attended to."""

    @abc.abstractmethod
    def similarity(self, text_features: Features, image_features: Features) -> torch.Tensor:
        """Similarity [n_text, n_image] used to rank the gallery (higher is more similar); its matrix products
        go through ``tir.training.dot.dot``, as evaluation's and search's do."""

    def new_modules(self) -> Iterable[nn.Module]:
        """Modules created by the method (trained at the larger learning rate); the backbone is not one."""
        return ()

    def lr_rules(self) -> list[LrRule]:
        """Learning-rate rules of the method's modules; a parameter no rule covers trains as the backbone's
        (weights at ``lr`` with weight decay, biases at ``lr x bias_lr_factor`` without). Default: every new
        module, biases included, at ``lr x new_module_lr_factor``."""
        return [LrRule(module) for module in self.new_modules()]

    def on_epoch_start(self, context: EpochContext) -> dict[str, float]:
        """Hook run before each epoch (e.g. RDE's consensus division); returns metrics to log."""
        return {}

    def after_optimizer_step(self) -> None:
        """Hook run after each optimiser step (e.g. the EMA update of momentum encoders)."""

    def rerank(self, text_features: Features, image_features: Features, candidates: torch.Tensor) -> torch.Tensor:
        """New scores [q, k] (higher is better) of each query's ``candidates`` [q, k] (gallery indices, best
        first by ``similarity``); ``text_features`` holds the q queries' rows. Only for ``reranks`` methods."""
        raise NotImplementedError(f"method {self.name!r} does not re-rank")

    def eval_figures(self, figures: "EvalFigures") -> dict[str, str]:
        """Method-specific pictures `tir eval --plot` writes beside its retrieval picture (name -> path)."""
        return {}


@dataclass
class EvalFigures:
    """What `tir eval` hands ``Method.eval_figures``: the evaluated split and where to write.

    ``per_query`` is EvalResult.per_query, ``queries`` has pair_index / pid / image_index / caption,
    ``gallery`` image_index / image_path / pid; ``tokenizer`` the run's open_clip tokenizer.
    """

    per_query: Any
    queries: Any
    gallery: Any
    image_root: Path
    tokenizer: Any
    text_length: int
    device: torch.device
    out_stem: Path  # e.g. runs/x/eval-test: figures go to <out_stem>-<name>.png


METHODS: dict[str, type[Method]] = {}
"""Registered methods by name. A method class is constructed as ``cls(backbone, num_classes=..., **options)``:
``backbone`` a tir.training.model.Backbone, ``num_classes`` the number of train identities, ``options``
the run config's ``method_options`` (keyword arguments with defaults; unknown ones are a user error)."""


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def create_method(name: str, backbone: nn.Module, num_classes: int, options: dict[str, Any] | None = None) -> Method:
    """Instantiate the registered method ``name``; unknown names or options raise a one-line UserError."""
    from tir.errors import UserError
    from tir.training import methods as _all  # noqa: F401  (registers every method)

    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    try:
        inspect.signature(cls).bind(backbone, num_classes=num_classes, **(options or {}))
    except TypeError as error:
        raise UserError(f"bad method_options for {name!r} ({error}); see the {cls.__name__} docstring") from None
    return cls(backbone, num_classes=num_classes, **(options or {}))
