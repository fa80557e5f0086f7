"""Captions of another image of the same identity, for SSAN's compound ranking loss.

SSAN pairs every train caption with a caption drawn uniformly among those of the *other* images of
its identity, anew for every sample. ``CrossCaptions`` lists, per train-dataset position, the
positions of those captions and draws one per batch row reproducibly from (seed, epoch, step).
"""

from __future__ import annotations

import numpy as np
import torch


class CrossCaptions:
    """``draw(index, seed, epoch, step) -> (text [B, L], found [B] bool)`` for train positions ``index``.

    Built from the train set's token ids [N, L], identities [N] and image keys [N] (equal for the
    captions of one image). A position whose identity has a single image finds no other caption:
    it gets its own caption back with ``found`` False.
    """

    def __init__(self, text: torch.Tensor, pids: np.ndarray, images: np.ndarray) -> None:
        pids, images = np.asarray(pids), np.asarray(images)
        others: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(pids)
        order = np.argsort(pids, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(pids[order])) + 1):
            for position in group:
                others[position] = group[images[group] != images[position]]
        lengths = np.array([len(o) for o in others], dtype=np.int64)
        self.text = text
        self.offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        self.candidates = torch.from_numpy(np.concatenate([*others, [0]]).astype(np.int64))  # + a sentinel

    def draw(self, index: torch.Tensor, seed: int, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Drawn on ``index``'s device, where the tables move on first use: no host round trip per step."""
        if self.text.device != index.device:
            self.text, self.offsets, self.candidates = (t.to(index.device) for t in (self.text, self.offsets, self.candidates))
        start, count = self.offsets[index], self.offsets[index + 1] - self.offsets[index]
        state = int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0])
        generator = torch.Generator(index.device).manual_seed(state)
        draw = torch.rand(len(index), generator=generator, device=index.device)
        found = count > 0
        chosen = torch.where(found, self.candidates[start + (draw * count).long()], index)
        return self.text[chosen], found
