"""A plain-dot-product similarity computed chunk after chunk into the same memory.

For a method whose ``similarity`` is ``sum_t w_t * text[t] @ image[t].T`` (``Method.similarity_terms``),
``TermScores`` gives the same float32 matrix for one chunk of queries at a time, written by
``tir.training.dot`` (the methods' own product) into buffers kept from one chunk to the next. A fresh [chunk,
gallery] result per chunk (512 MiB in evaluation) is new memory that the kernel must map and zero page by
page: on a 2-core CPU about 15% on top of the matmul itself.

The operations and their order are the methods' own (tests/test_term_scores.py checks them bit for bit):
the terms' products summed in declaration order, and equal weights applied once to the sum (``(a + b) / 2``
and ``(a + b) * 0.5`` round alike); unequal weights scale each product before the sum.
"""

from __future__ import annotations

import torch

from tir.training.dot import dot
from tir.training.methods.base import Features


class TermScores:
    """``scores(text)`` -> [queries, gallery] similarity of a chunk of encoded queries against ``image``.

    The result is a view of a reused buffer: it is valid until the next call."""

    def __init__(self, terms: dict[str, float], image: Features) -> None:
        if not terms:
            raise ValueError("TermScores needs at least one similarity term")
        self.terms = terms
        self.gallery = {name: image[name].reshape(len(image[name]), -1) for name in terms}
        self.buffers: list[torch.Tensor] = []

    def _buffer(self, index: int, rows: int, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``index`` as [rows, gallery] of ``like``'s dtype and device, grown when too small."""
        shape = (rows, like.shape[0])
        if len(self.buffers) <= index:
            self.buffers.append(like.new_empty(shape))
        elif self.buffers[index].shape[0] < rows:
            self.buffers[index] = like.new_empty(shape)
        return self.buffers[index][:rows]

    def __call__(self, text: Features) -> torch.Tensor:
        weights = set(self.terms.values())
        shared = weights.pop() if len(weights) == 1 else None
        total: torch.Tensor | None = None
        for name, weight in self.terms.items():
            queries, gallery = text[name].reshape(len(text[name]), -1), self.gallery[name]
            product = dot(queries, gallery, out=self._buffer(0 if total is None else 1, len(queries), gallery))
            if shared is None and weight != 1:
                product.mul_(weight)
            total = product if total is None else total.add_(product)
        assert total is not None
        return total.mul_(shared) if shared is not None and shared != 1 else total
