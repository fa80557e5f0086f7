"""Train samplers: a seeded shuffle and an identity-balanced order, both split across ranks.

Both are deterministic functions of (seed, epoch) (call ``set_epoch`` before each epoch), so a
resumed run sees the same order as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


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
