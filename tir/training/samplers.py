"""Train samplers: a seeded shuffle and an identity-balanced order, both split across ranks, and the
sharded order of per-epoch passes over the train set (RDE's division).

Both are deterministic functions of (seed, epoch) (call ``set_epoch`` before each epoch), so a
resumed run sees the same order as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for each index of ``sampler``, so a dataset item knows its epoch even
    in a DataLoader worker kept alive across epochs (``persistent_workers``)."""

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, int(index)) for index in self.sampler)


def sharded_shuffle(n: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's share of a seeded permutation of ``range(n)``: every ``world_size``-th position from ``rank``.

    The permutation is padded by wrapping so that every rank gets ``ceil(n / world_size)`` items (equal
    batch counts and sizes, as gathers need). Alone (world 1) it is the order of
    ``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))``, which draws its
    worker seed from the generator before shuffling.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # DataLoader's worker-seed draw
    order = torch.randperm(n, generator=generator)
    total = -(-n // world_size) * world_size
    order = order.repeat(-(-total // n))[:total]
    return order[rank::world_size].tolist()


def shuffle_sampler(dataset, seed: int, rank: int = 0, world_size: int = 1) -> DistributedSampler:
    """A seeded shuffle of the whole dataset, each rank taking every ``world_size``-th sample."""
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)


class IdentitySampler(Sampler[int]):
    """Groups of ``instances`` samples of one identity, groups shuffled (IRRA's ``identity`` sampler).

    Identities with fewer samples are topped up by repetition. Groups are dealt round-robin to the
    ranks, so every rank's batches (a multiple of ``instances``) stay identity-balanced.
    """

    def __init__(self, pids: np.ndarray, instances: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.pids = np.asarray(pids)
        self.instances, self.seed, self.rank, self.world_size = instances, seed, rank, world_size
        self.epoch = 0
        counts = np.unique(self.pids, return_counts=True)[1]
        groups = int(np.sum(np.maximum(counts, instances) // instances))
        self.groups_per_rank = groups // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.groups_per_rank * self.instances

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[np.ndarray] = []
        for pid in np.unique(self.pids):
            members = rng.permutation(np.flatnonzero(self.pids == pid))
            if len(members) < self.instances:
                members = np.concatenate([members, rng.choice(members, self.instances - len(members))])
            usable = len(members) // self.instances * self.instances
            groups.extend(members[:usable].reshape(-1, self.instances))
        order = rng.permutation(len(groups))[: self.groups_per_rank * self.world_size]
        mine = order[self.rank :: self.world_size]
        return iter(torch.as_tensor(np.concatenate([groups[g] for g in mine])).tolist())
